"""End-to-end checks of the ``picard-ad`` commands through click's runner."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from picard_ad.cli import main
from picard_ad.io.writers import write_dicom, write_png


@pytest.fixture()
def run():
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)

    return invoke


@pytest.mark.parametrize(
    "command",
    [[], ["info"], ["phantoms"], ["methods"], ["fit"], ["train"], ["describe"], ["heatmap"], ["evaluate"],
     ["benchmark"], ["mood"], ["demo"], ["view"]],
)
def test_every_command_has_help(run, command):
    result = run(*command, "--help")
    assert result.exit_code == 0
    assert "Usage:" in result.output and "--help" in result.output


def test_methods_lists_every_registered_method_with_its_scores(run):
    result = run("methods")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    names = [line.split()[0] for line in lines]
    assert {"brightness", "local-contrast", "picard"} <= set(names) and names == sorted(names)
    picard = lines[names.index("picard")]
    assert "scores: mcd-image, mcd-feature, mean-image" in picard and "calibrated-quantile-feature*" in picard
    assert "dmse" in picard
    assert run("methods", "local-*").output.split()[0] == "local-contrast"
    missing = run("methods", "no-such*")
    assert missing.exit_code == 2 and "no registered method matches 'no-such*'" in missing.output


def test_info_reports_each_file_and_fails_on_a_bad_one(run, tmp_path):
    write_png(tmp_path / "a.png", np.linspace(0, 1, 40 * 30).reshape(40, 30), bit_depth=16)
    write_dicom(tmp_path / "v.dcm", np.random.default_rng(0).random((3, 20, 10)), bits_stored=12)
    (tmp_path / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00")
    good = run("info", tmp_path / "a.png", tmp_path / "v.dcm")
    assert good.exit_code == 0, good.output
    assert "40 rows x 30 cols, 1 slice" in good.output
    assert "20 rows x 10 cols, 3 slice" in good.output
    assert "MG" in good.output
    bad = run("info", tmp_path / "a.png", tmp_path / "broken.dcm")
    assert bad.exit_code == 2
    assert "broken.dcm" in bad.output and "1 of 2 file(s) could not be read" in bad.output


def test_info_json_is_one_object_per_file(run, tmp_path):
    write_png(tmp_path / "a.png", np.zeros((16, 12)), bit_depth=8)
    result = run("info", "--json", tmp_path / "a.png")
    record = json.loads(result.output)
    assert (record["rows"], record["cols"], record["format"]) == (16, 12, "png")


def test_missing_file_is_a_one_line_error(run, tmp_path):
    result = run("info", tmp_path / "nope.png")
    assert result.exit_code == 2
    assert "nope.png" in result.output and "Traceback" not in result.output


def test_phantoms_writes_a_readable_dataset(run, tmp_path):
    out = tmp_path / "ph"
    result = run("phantoms", "--out", out, "--normal", 1, "--abnormal", 2, "--size", 256, 192, "--seed", 3)
    assert result.exit_code == 0, result.output
    n_boxes = len((out / "boxes.csv").read_text().splitlines()) - 1
    assert f"wrote 3 phantoms (1 normal, 2 abnormal, {n_boxes} lesions)" in result.output
    images = sorted(p.name for p in (out / "images").iterdir())
    assert images == ["abnormal_0000.png", "abnormal_0001.png", "normal_0000.png"]
    assert np.array(Image.open(out / "images" / "abnormal_0000.png")).shape == (256, 192)
    rows = (out / "boxes.csv").read_text().splitlines()
    assert rows[0].startswith("image,x,y,width,height")
    assert len(rows) >= 3 and all(r.startswith("abnormal_") for r in rows[1:])
    assert "size:\n  - 256\n  - 192" in (out / "config.yaml").read_text()


def test_phantoms_config_typo_is_rejected(run, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("normal: 1\nabnormall: 2\n")
    result = run("phantoms", "--out", tmp_path / "ph", "--config", cfg)
    assert result.exit_code == 2
    assert "unknown key 'abnormall'" in result.output and "did you mean 'abnormal'" in result.output
    assert not (tmp_path / "ph").exists()


@pytest.mark.slow
def test_demo_runs_end_to_end_and_resumes(run, tmp_path):
    args = ("demo", "--out", tmp_path / "demo", "--normal", 3, "--abnormal", 1, "--size", 256, 192,
            "--steps", 4, "--stride", 32)
    first = run(*args)
    assert first.exit_code == 0, first.output
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert set(summary) == {"PICARD default: calibrated-quantile-feature, M = 10",
                            "PICARD MCD image, M = 10 (the paper's)", "PICARD M = 1, no dropout",
                            "brightness reference", "local-contrast reference"}  # fmt: skip
    assert "heatmaps-default" in {path.name for path in (tmp_path / "demo").iterdir()}
    for metrics in summary.values():
        assert 0.0 <= metrics["tissue_pixel_auroc_mean"] <= 1.0
        assert 0.0 <= metrics["pixel_ap_mean"] <= 1.0
    overlays = list((tmp_path / "demo" / "heatmaps-M10").glob("*_overlay.png"))
    assert len(overlays) == 1
    heatmap = np.load(next((tmp_path / "demo" / "heatmaps-M10").glob("*_heatmap.npy")))
    assert heatmap.shape == (256, 192) and np.isfinite(heatmap).all()
    second = run(*args)
    assert second.exit_code == 0, second.output
    assert "skipped 1 finished" in second.output
