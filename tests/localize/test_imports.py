"""The generic localization code stands alone: importing it imports no method."""

import subprocess
import sys


def test_importing_the_window_code_imports_no_method():
    code = (
        "import sys, picard_ad.localize, picard_ad.localize.windows, picard_ad.localize.executor; "
        "print(sorted(name for name in sys.modules if name.startswith('picard_ad.methods')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
