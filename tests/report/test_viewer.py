"""What ``picard-ad view`` gathers: quantized heatmaps, reduced images, outlines, metrics, settings; the page."""

import json
import re

import nibabel
import numpy as np
import pytest
from click.testing import CliRunner

from picard_ad.cli import main
from picard_ad.errors import InputError
from picard_ad.io import iter_slices, read_image
from picard_ad.report.montage import reduce_blocks
from picard_ad.report.viewer import (
    ViewerConfig,
    collect_view,
    dequantize,
    display_factor,
    outline_of,
    quantize,
    viewer_data,
    write_viewer,
)


def view(*args):
    return CliRunner().invoke(main, ["view", *[str(a) for a in args]], catch_exceptions=False)


def test_quantization_round_trip_is_within_half_a_code():
    values = np.random.default_rng(0).normal(3.0, 2.0, (50, 40))
    low, high = float(values.min()), float(values.max())
    codes = quantize(values, low, high)
    assert codes.dtype == np.uint8 and codes.min() == 0 and codes.max() == 255
    assert np.abs(dequantize(codes, low, high) - values).max() <= (high - low) / 510 * (1 + 1e-9)
    assert not quantize(np.full((3, 3), 2.0), 2.0, 2.0).any()


def test_outline_is_the_masks_boundary():
    mask = np.zeros((20, 20), dtype=bool)
    mask[5:15, 4:12] = True
    mask[0:3, 0:3] = True  # at the image border: the border counts as outside
    outline = outline_of(mask)
    inner = np.zeros_like(mask)
    inner[6:14, 5:11] = True
    inner[1, 1] = True  # the corner square's centre: its neighbours are all inside
    assert np.array_equal(outline, mask & ~inner)
    assert outline.sum() == (10 * 8 - 8 * 6) + (9 - 1)


def test_display_factor():
    assert display_factor((96, 80), 1024) == 1
    assert display_factor((2457, 1996), 1024) == 3
    assert display_factor((130, 64), 64) == 3


def test_collected_items_hold_images_heatmaps_outlines_metrics_and_settings(heatmap_folder, spot_disk):
    out, images, masks, volume = heatmap_folder
    viewer = collect_view(out)
    assert [item.name for item in viewer.items] == ["plain", "spot", "vol"] and viewer.notes == ()
    plain, spot, vol = viewer.items

    heatmap = np.load(out / "spot_heatmap.npy").astype(np.float64)
    assert (spot.low, spot.high) == (heatmap.min(), heatmap.max()) and spot.factor == 1
    codes = spot.slices[0].heatmap
    assert codes.shape == (96, 80) and np.abs(dequantize(codes, spot.low, spot.high) - heatmap).max() <= (
        spot.high - spot.low) / 510 * (1 + 1e-6)
    assert np.array_equal(spot.slices[0].image, np.rint(read_image(images / "spot.png").pixels * 255))

    outline = spot.slices[0].outline
    mask = read_image(masks / "spot.png").pixels > 0.5
    assert np.array_equal(outline, outline_of(mask)) and outline.any() and plain.slices[0].outline is None
    row, col, radius = spot_disk
    assert outline[row - radius, col] and not outline[row, col]

    assert spot.sidecar["method"] == "brightness" and spot.sidecar["settings"]["sigma"] == 2.0
    assert spot.slices[0].metrics["pixel_auroc"] > 0.9 and spot.slices[0].metrics["abnormal"] == 1
    assert viewer.evaluation["matched"] == 5 and viewer.evaluation["summary"]["n_images"] == 5

    # A volume is one item whose slices share one score range, so the threshold means the same on each.
    data = nibabel.load(volume_heatmap := out / "vol_heatmap.nii.gz").get_fdata()
    assert [s.slice_index for s in vol.slices] == [0, 1, 2] and vol.shape == (64, 48)
    assert np.isclose(vol.low, data.min()) and np.isclose(vol.high, data.max()), volume_heatmap
    for index, piece in enumerate(vol.slices):
        assert np.abs(dequantize(piece.heatmap, vol.low, vol.high) - data[:, :, index]).max() <= (
            vol.high - vol.low) / 510 * (1 + 1e-6)
    assert not np.array_equal(vol.slices[0].image, vol.slices[2].image)
    assert [s.name for s in vol.slices] == ["vol_s0000", "vol_s0001", "vol_s0002"]
    assert [s.metrics["slice_index"] for s in vol.slices] == [0, 1, 2]  # each slice its own evaluation row


def test_large_images_are_reduced_by_blocks(heatmap_folder):
    out, images, masks, _ = heatmap_folder
    viewer = collect_view(out, ViewerConfig(max_side=64))
    spot = viewer.items[1]
    assert spot.factor == 2 and spot.slices[0].image.shape == (48, 40) and spot.slices[0].heatmap.shape == (48, 40)
    pixels = next(iter_slices(images / "spot.png")).pixels
    assert np.array_equal(spot.slices[0].image, np.rint(reduce_blocks(pixels, 2) * 255).astype(np.uint8))
    reduced_mask = reduce_blocks(read_image(masks / "spot.png").pixels > 0.5, 2, "any")
    assert np.array_equal(spot.slices[0].outline, outline_of(reduced_mask))
    assert viewer.items[2].factor == 1  # 64 x 48 fits as it is


def test_the_pixel_budget_reduces_every_image_with_a_note_or_refuses(heatmap_folder):
    out = heatmap_folder[0]
    viewer = collect_view(out, ViewerConfig(max_side=1024, max_pixels=14_000))
    assert viewer.max_side < 96 and "at most" in viewer.notes[0]
    assert sum(s.image.size for item in viewer.items for s in item.slices) <= 14_000
    with pytest.raises(InputError, match="raise --max-pixels"):
        collect_view(out, ViewerConfig(max_pixels=13_000))


def test_the_page_is_one_file_that_fetches_nothing(heatmap_folder, tmp_path):
    out = heatmap_folder[0]
    result = view(out, "--out", tmp_path / "page.html")
    assert result.exit_code == 0, result.output
    assert "3 image(s), 5 slice(s)" in result.output
    text = (tmp_path / "page.html").read_text()
    assert "http://" not in text and "https://" not in text and "src=" not in text.replace('src="data:', "")
    assert "Content-Security-Policy" in text and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    data = json.loads(re.search(r'id="viewer-data">(.*?)</script>', text, re.S).group(1))
    assert [item["name"] for item in data["items"]] == ["plain", "spot", "vol"] and len(data["colormap"]) == 256
    assert data["items"][1]["slices"][0]["outline"] and data["items"][0]["slices"][0]["outline"] is None


def test_text_that_looks_like_markup_cannot_end_the_script(heatmap_folder, tmp_path):
    viewer = collect_view(heatmap_folder[0])
    data = viewer_data(viewer)
    data["notes"] = ["</script><script>alert(1)</script>"]
    from picard_ad.report.viewer_page import page_html

    page = page_html(data, "t")
    assert page.count("</script>") == 2 and "\\u003c/script>" in page
    written = write_viewer(viewer, tmp_path / "sub" / "v.html")
    assert written.is_file()


def test_an_evaluation_is_given_explicitly_or_refused(heatmap_folder, tmp_path):
    out = heatmap_folder[0]
    given = collect_view(out, ViewerConfig(evaluation=str(out / "eval" / "per_image.csv")))
    assert given.evaluation["matched"] == 5
    missing = view(out, "--evaluation", tmp_path, "--out", tmp_path / "v.html")
    assert missing.exit_code == 2 and "no per_image.csv of picard-ad evaluate here" in missing.output


def test_a_folder_without_heatmaps_is_one_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    empty = view(tmp_path / "empty")
    assert empty.exit_code == 2 and "no heatmaps (*_heatmap.npy or *_heatmap.nii.gz) in the folder" in empty.output
    assert not (tmp_path / "empty" / "viewer.html").exists()
    absent = view(tmp_path / "nowhere")
    assert absent.exit_code == 2 and "nowhere: no such folder" in absent.output


def test_unreadable_recorded_annotations_are_a_note_given_ones_an_error(heatmap_folder, tmp_path):
    import shutil

    out = tmp_path / "hm"
    shutil.copytree(heatmap_folder[0], out, ignore=shutil.ignore_patterns("eval"))
    sidecar = out / "spot.json"
    sidecar.write_text(sidecar.read_text().replace(str(heatmap_folder[2]), "elsewhere/masks"))
    viewer = collect_view(out)
    assert viewer.items[1].slices[0].outline is None and viewer.evaluation is None
    assert any("annotations elsewhere/masks not readable here" in note for note in viewer.notes)
    assert collect_view(out, ViewerConfig(annotations=str(heatmap_folder[2]))).items[1].slices[0].outline.any()
    given = view(out, "--annotations", tmp_path / "nowhere")
    assert given.exit_code == 2 and "nowhere: annotation file or folder not found" in given.output
