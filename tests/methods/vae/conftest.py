"""The phantoms every test module of the VAE family trains and scores on."""

import pytest
from method_checks import picard_ad


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Tiny phantoms from ``picard-ad phantoms``: 4 normal (in ``normal/``), 2 with lesions (``images/``, masks)."""
    root = tmp_path_factory.mktemp("phantoms")
    picard_ad("phantoms", "--out", root, "--normal", 4, "--abnormal", 2, "--size", 160, 128, "--pixel-spacing", 1.0,
              "--seed", 3)  # fmt: skip
    normal = root / "normal"
    normal.mkdir()
    for path in sorted((root / "images").iterdir()):
        if path.name.startswith("normal"):
            path.rename(normal / path.name)
    return root
