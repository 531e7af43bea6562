"""``picard-ad evaluate`` through click's runner: the output files, and exit code 2 on user errors."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from picard_ad.cli import main
from picard_ad.io.writers import write_png


@pytest.fixture()
def dataset(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "heatmaps").mkdir()
    for name, has_lesion in (("p1", True), ("p2", False)):
        image = np.zeros((32, 40))
        image[:, 12:] = rng.uniform(0.3, 0.7, (32, 28))
        write_png(tmp_path / f"{name}.png", image)
        heatmap = (image * rng.uniform(0.5, 1.0, image.shape)).astype(np.float32)
        if has_lesion:
            heatmap[8:14, 20:26] += 0.5
        np.save(tmp_path / "heatmaps" / f"{name}_heatmap.npy", heatmap)
        sidecar = {"input": str(tmp_path / f"{name}.png"), "slices": [{"slice_index": 0}]}
        (tmp_path / "heatmaps" / f"{name}.json").write_text(json.dumps(sidecar))
    (tmp_path / "boxes.csv").write_text("image,x,y,width,height\np1.png,20,8,6,6\n")
    return tmp_path


def _run(*args):
    return CliRunner().invoke(main, ["evaluate", *map(str, args)], catch_exceptions=False)


def test_writes_metrics_files(dataset):
    out = dataset / "out"
    result = _run("--heatmaps", dataset / "heatmaps", "--annotations", dataset / "boxes.csv", "--out", out,
                  "--tissue-threshold", "0.05", "--quiet")
    assert result.exit_code == 0, result.output
    assert "2 images (1 with lesions)" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("pixel_auroc_mean", "pixel_ap_mean", "tissue_pixel_auroc_mean", "tissue_pixel_ap_mean",
                "pixel_auroc_pooled", "pixel_ap_pooled", "tissue_pixel_auroc_pooled", "tissue_pixel_ap_pooled"):
        assert 0.5 < metrics[key] <= 1.0
    assert metrics["n_images"] == 2 and metrics["pooled_stride"] == 1
    assert len((out / "per_image.csv").read_text().splitlines()) == 3
    markdown = (out / "metrics.md").read_text()
    assert "Tissue only" in markdown and "| Pixel AUROC, pooled over images |" in markdown
    assert "tissue_threshold: 0.05" in (out / "config.yaml").read_text()


def test_missing_annotation_file_exits_2_naming_it(dataset):
    missing = dataset / "no_such_boxes.csv"
    result = _run("--heatmaps", dataset / "heatmaps", "--annotations", missing, "--out", dataset / "out")
    assert result.exit_code == 2
    assert f"{missing}: annotation file or folder not found" in result.output
    assert not (dataset / "out").exists()


def test_config_file_and_conflicting_tissue_options(dataset):
    config = dataset / "evaluate.yaml"
    config.write_text(f"heatmaps: {dataset / 'heatmaps'}\nannotations: {dataset / 'boxes.csv'}\npeak_radius: 5\n"
                      "pooled_max_pixels: 1000\n")
    result = _run("--config", config, "--out", dataset / "out", "--quiet")
    assert result.exit_code == 0, result.output
    assert "peak_radius: 5.0" in (dataset / "out" / "config.yaml").read_text()
    metrics = json.loads((dataset / "out" / "metrics.json").read_text())
    assert metrics["pooled_stride"] == 3  # 2 images of 32 x 40 pixels over a limit of 1000
    assert any(note.startswith("pooled pixel AUROC/AP took 1 pixel in 3") for note in metrics["notes"])
    both = _run("--config", config, "--out", dataset / "out", "--tissue-threshold", "0.1", "--tissue-masks", dataset)
    assert both.exit_code == 2 and "not both" in both.output
    typo = dataset / "typo.yaml"
    typo.write_text("peak_radios: 5\n")
    bad = _run("--config", typo, "--out", dataset / "out")
    assert bad.exit_code == 2 and "did you mean 'peak_radius'" in bad.output


def test_unmatched_heatmaps_and_annotations_are_printed_and_written(dataset):
    (dataset / "boxes.csv").write_text("image,x,y,width,height\np1.png,20,8,6,6\np3.png,1,1,2,2\n")
    out = dataset / "out"
    result = _run("--heatmaps", dataset / "heatmaps", "--annotations", dataset / "boxes.csv", "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    assert "heatmaps without annotation, evaluated as normal images: 1 (p2)" in result.output
    assert "annotated images without heatmap, not evaluated: 1 (p3)" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["unannotated_heatmaps"], metrics["annotations_without_heatmap"]) == (["p2"], ["p3"])
    assert "heatmaps without annotation" in (out / "metrics.md").read_text()


def test_a_near_miss_of_an_annotation_name_exits_2(dataset):
    (dataset / "boxes.csv").write_text("image,x,y,width,height\np1.png,20,8,6,6\nP_02.png,1,1,2,2\n")
    result = _run("--heatmaps", dataset / "heatmaps", "--annotations", dataset / "boxes.csv", "--out",
                  dataset / "out", "--quiet")
    assert result.exit_code == 2
    assert f"no annotation names heatmap source {dataset / 'p2.png'}" in result.output
    assert "did you mean 'P_02'?" in result.output
    assert not (dataset / "out").exists()
