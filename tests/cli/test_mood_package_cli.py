"""``picard-ad mood-package`` through click's runner: the folder it writes and its one-line errors."""

import pytest
from click.testing import CliRunner

from picard_ad.cli import main
from picard_ad.methods import create_method


def package(*args):
    return CliRunner().invoke(main, ["mood-package", *map(str, args)])


@pytest.fixture()
def run_dir(tmp_path):
    return create_method("brightness").save(tmp_path / "run")


def test_writes_the_package(run_dir, tmp_path):
    result = package(run_dir, "--out", tmp_path / "package")
    assert result.exit_code == 0, result.output
    assert "4 run scripts, 1 model file(s)" in result.output
    assert (tmp_path / "package" / "Dockerfile").is_file()
    assert (tmp_path / "package" / "run_sample_abdom.sh").is_file()


@pytest.mark.parametrize("case, message", [
    ("unfitted", "not a fitted run (method.json not found"),
    ("missing", "not a fitted run"),
    ("not empty", "exists and is not empty"),
    ("bad calibration", "--calibration takes REGION=FILE with REGION one of brain, abdom, got 'liver=x.json'"),
    ("unreadable calibration", "calibration.json: MOOD calibration not found"),
])  # fmt: skip
def test_errors_are_one_line_with_exit_code_2(run_dir, tmp_path, case, message):
    out = tmp_path / "package"
    run = {"unfitted": tmp_path / "empty", "missing": tmp_path / "missing"}.get(case, run_dir)
    (tmp_path / "empty").mkdir()
    if case == "not empty":
        out.mkdir()
        (out / "file").write_text("x")
    extra = {"bad calibration": ["--calibration", "liver=x.json"],
             "unreadable calibration": ["--calibration", f"brain={tmp_path / 'calibration.json'}"]}.get(case, [])
    result = package(run, "--out", out, *extra)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("picard-ad: error:") and message in lines[0], result.output


def test_help_shows_the_docker_command_unwrapped():
    result = package("--help")
    assert result.exit_code == 0
    assert "sh /workspace/run_pixel_brain.sh /mnt/data /mnt/pred" in result.output
