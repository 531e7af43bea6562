"""The heatmap job on inputs and failures that used to lose work: overlays in bounded memory, an overlay failure
that keeps the heatmap, outputs verified by size and SHA-256 before a unit is skipped, stale temporaries of killed
runs, strict JSON sidecars, huge and unusual inputs."""

from __future__ import annotations

import hashlib
import json
import os
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from dicom_sources import pydicom_file

import picard_ad.jobs.heatmap as heatmap_job
from picard_ad.cli import main
from picard_ad.io import base, read_image
from picard_ad.io.writers import atomic_path, remove_stale_temporaries, write_png
from picard_ad.jobs.heatmap import HeatmapJob, HeatmapRunner
from picard_ad.localize.heatmap import sliding_window_heatmap
from picard_ad.methods import create_method
from picard_ad.report.montage import MAX_PANEL_PIXELS, preview_factor, reduce_blocks, save_montage


def _refuse_constants(text: str) -> None:
    raise ValueError(f"not strict JSON: {text}")


def strict_load(path: Path):
    """json.loads that refuses NaN and Infinity, as strict JSON readers do."""
    return json.loads(path.read_text(), parse_constant=_refuse_constants)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    run = tmp_path_factory.mktemp("brightness")
    create_method("brightness", settings={"sigma": 2.0}).save(run)
    return run


@pytest.fixture
def image(tmp_path):
    pixels = np.zeros((48, 40))
    pixels[10:30, 5:25] = 0.6
    pixels[15:20, 10:15] = 0.9
    write_png(tmp_path / "scan.png", pixels, bit_depth=8)
    return tmp_path / "scan.png"


def heatmap(*args):
    return CliRunner().invoke(main, ["heatmap", *[str(a) for a in args], "--quiet"], catch_exceptions=False)


# --- overlays ----------------------------------------------------------------------------------------------------


def _overlay_peak(path: Path, side: int) -> int:
    """Peak bytes that NumPy and Python allocate while drawing the overlay of a side x side image."""
    ramp = np.linspace(0, 1, side, dtype=np.float32)
    pixels = np.add.outer(ramp, ramp) / 2
    mask = np.zeros((side, side), dtype=bool)
    mask[side // 3 : side // 2, side // 3 : side // 2] = True
    tracemalloc.start()
    try:
        save_montage(path, [pixels], overlays=[pixels], masks=[mask], titles=["x"], panel_inches=8.0)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_overlay_memory_does_not_grow_with_the_image(tmp_path):
    save_montage(tmp_path / "warm.png", [np.zeros((8, 8))])  # matplotlib's imports and caches are not the overlay's
    small = _overlay_peak(tmp_path / "small.png", 2400)  # 5.8 megapixels
    large = _overlay_peak(tmp_path / "large.png", 4800)  # 23 megapixels
    # Drawn at full size, matplotlib's peak grew by ~76 bytes a pixel: ~1.7 GB at 4800 x 4800.
    assert large < 300 * 2**20
    assert large < 1.3 * small
    assert (tmp_path / "large.png").stat().st_size > 10_000


def test_preview_reduction_is_exact_block_means_and_keeps_small_lesions():
    values = np.arange(35, dtype=np.float32).reshape(5, 7)
    reduced = reduce_blocks(values, 3)
    assert reduced.shape == (2, 3)
    np.testing.assert_allclose(reduced[0, 0], values[:3, :3].mean())
    np.testing.assert_allclose(reduced[1, 2], values[3:, 6:].mean())  # a partial edge block
    with_nan = values.copy()
    with_nan[:3, :3] = np.nan
    with_nan[0, 3] = np.nan
    reduced = reduce_blocks(with_nan, 3)
    assert np.isnan(reduced[0, 0])  # transparent where nothing is known
    np.testing.assert_allclose(reduced[0, 1], np.nanmean(with_nan[:3, 3:6]))
    mask = np.zeros((3000, 3000), dtype=bool)
    mask[1500, 1500] = True  # one pixel
    assert reduce_blocks(mask, 3, "any").sum() == 1 and reduce_blocks(mask, 3, "any").dtype == bool
    assert preview_factor((12000, 12000)) == 9 and 12000**2 / 81 <= MAX_PANEL_PIXELS
    assert preview_factor((100, 100)) == 1 and reduce_blocks(values, 1) is values


def test_a_failing_overlay_keeps_the_heatmap_and_the_sidecar_says_so(model, image, tmp_path, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 10.7 GiB")

    monkeypatch.setattr(heatmap_job, "_write_overlay", out_of_memory)
    out = tmp_path / "out"
    result = heatmap(image, "--model", model, "--out", out)
    assert result.exit_code == 0, result.output
    warning = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warning == [
        (
            f"picard-ad: warning: {image}: overlay {out / 'scan_overlay.png'} not written (MemoryError: Unable to "
            "allocate 10.7 GiB); the heatmap and scan.json are written (delete scan.json to compute the unit again)"
        )
    ]
    assert sorted(p.name for p in out.iterdir()) == ["scan.json", "scan_heatmap.npy"]
    sidecar = strict_load(out / "scan.json")
    assert sidecar["outputs"] == {"heatmap": "scan_heatmap.npy"}
    assert sidecar["missing_outputs"] == {
        "overlay_0": "scan_overlay.png not written (MemoryError: Unable to allocate 10.7 GiB)"
    }
    expected = create_method("brightness", settings={"sigma": 2.0}).heatmap(read_image(image)).array
    np.testing.assert_array_equal(np.load(out / "scan_heatmap.npy"), expected)


# --- resume: outputs verified, stale temporaries removed ----------------------------------------------------------


def test_a_truncated_output_is_computed_again(model, image, tmp_path):
    out = tmp_path / "out"
    assert heatmap(image, "--model", model, "--out", out).exit_code == 0
    good = (out / "scan_heatmap.npy").read_bytes()
    assert "skipped 1 finished" in heatmap(image, "--model", model, "--out", out).output
    (out / "scan_heatmap.npy").write_bytes(good[: len(good) // 2])  # a killed copy, say
    assert "wrote 1 heatmap output(s), skipped 0" in heatmap(image, "--model", model, "--out", out).output
    assert (out / "scan_heatmap.npy").read_bytes() == good
    files = strict_load(out / "scan.json")["files"]
    assert files["scan_heatmap.npy"] == {"bytes": len(good), "sha256": hashlib.sha256(good).hexdigest()}
    assert set(files) == {"scan_heatmap.npy", "scan_overlay.png"}
    flipped = bytearray(good)
    flipped[-1] ^= 0xFF  # same size, other content
    (out / "scan_heatmap.npy").write_bytes(bytes(flipped))
    assert "wrote 1 heatmap output(s), skipped 0" in heatmap(image, "--model", model, "--out", out).output
    assert (out / "scan_heatmap.npy").read_bytes() == good


def test_stale_temporaries_of_killed_runs_are_removed_and_live_ones_kept(model, image, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    an_hour_ago = time.time() - 3600
    stale = [out / ".scan_overlay.png.k3j_x9a2.part.png", out / ".scan_heatmap.npy.abcdefgh.part.npy"]
    for path in stale:
        path.write_bytes(b"")  # what a killed writer leaves
        os.utime(path, (an_hour_ago, an_hour_ago))
    unrelated = out / ".scan_overlay.png.keep"
    unrelated.write_bytes(b"x")
    os.utime(unrelated, (an_hour_ago, an_hour_ago))
    with atomic_path(out / "other.npy") as live:  # another process writing; old mtime, but it holds the lock
        live.write_bytes(b"half")
        os.utime(live, (an_hour_ago, an_hour_ago))
        assert heatmap(image, "--model", model, "--out", out).exit_code == 0
        assert live.exists()
    assert sorted(p.name for p in out.iterdir()) == [
        ".scan_overlay.png.keep", "other.npy", "scan.json", "scan_heatmap.npy", "scan_overlay.png"
    ]


def test_temporaries_younger_than_the_run_are_kept(tmp_path):
    started = time.time()
    young = tmp_path / ".a.png.abcdefgh.part.png"
    young.write_bytes(b"")
    os.utime(young, (started + 1, started + 1))
    old = tmp_path / ".b.png.abcdefgh.part.png"
    old.write_bytes(b"")
    os.utime(old, (started - 1, started - 1))
    assert remove_stale_temporaries(tmp_path, started) == [old]
    assert young.exists() and not old.exists()


# --- strict JSON ------------------------------------------------------------------------------------------------


def test_sidecar_of_an_all_background_image_is_strict_json(model, tmp_path):
    write_png(tmp_path / "empty.png", np.zeros((40, 32)), bit_depth=8)
    out = tmp_path / "out"
    assert heatmap(tmp_path / "empty.png", "--model", model, "--out", out).exit_code == 0
    sidecar = strict_load(out / "empty.json")
    assert sidecar["slices"][0]["heatmap"]["image_shape"] == [40, 32]


@dataclass(frozen=True)
class _Settings:
    score: str = "nan-score"


class _DivergedMethod:
    """A method whose network diverged: every window scores NaN."""

    name = "diverged"
    settings = _Settings()

    def identity(self):
        return {"method": self.name}

    def model_record(self):
        return {"loss": float("nan")}

    def heatmap(self, image, progress=False, origin=None):
        def scorer(windows, indices):
            return {"nan-score": np.full(len(indices), np.nan)}

        return sliding_window_heatmap(image.pixels, scorer, patch_size=16, mask_size=8, stride=8)["nan-score"]


def test_non_finite_values_are_written_as_null(image, tmp_path):
    runner = HeatmapRunner(_DivergedMethod(), HeatmapJob(), tmp_path / "out", progress=False, inputs=[image])
    runner.run(image, Path("scan"))
    sidecar = strict_load(tmp_path / "out" / "scan.json")
    assert sidecar["model"] == {"loss": None}
    assert sidecar["slices"][0]["heatmap"]["window_score_range"] == [None, None]
    assert runner.written == 1


# --- inputs -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["image_dfl.dcm", "SC_rgb_jpeg.dcm"])
def test_deflated_and_mis_encoded_dicoms_get_heatmaps(model, tmp_path, name):
    path = pydicom_file(name)
    out = tmp_path / "out"
    result = heatmap(path, "--model", model, "--out", out)
    assert result.exit_code == 0, result.output
    stem = Path(name).stem
    stored = np.load(out / f"{stem}_heatmap.npy")
    expected = create_method("brightness", settings={"sigma": 2.0}).heatmap(read_image(path)).array
    np.testing.assert_array_equal(stored, expected)
    assert (out / f"{stem}_overlay.png").is_file()
    warnings = result.stderr.splitlines()
    if name == "SC_rgb_jpeg.dcm":  # pydicom's multi-line warning, once per file, as one line naming the file
        expected = f"picard-ad: warning: {path}: Expected explicit VR, but found implicit VR - using implicit VR for "
        expected += "reading"
        assert warnings == [expected]
    else:
        assert warnings == []


def test_an_image_over_the_pixel_limit_is_one_line_and_the_batch_goes_on(model, image, tmp_path, monkeypatch):
    from PIL import Image

    folder = tmp_path / "in"
    folder.mkdir()
    Image.new("1", (3000, 2000)).save(folder / "huge.png")  # 6 megapixels
    write_png(folder / "small.png", read_image(image).pixels, bit_depth=8)
    monkeypatch.setattr(base, "available_memory", lambda: 1_000_000 * base.BYTES_PER_PIXEL)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)  # Pillow's own limit, scaled down likewise
    out = tmp_path / "out"
    result = heatmap(folder, "--model", model, "--out", out)
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith(
        f"picard-ad: error: {folder / 'huge.png'}: image of 3000 x 2000 pixels (6 megapixels) is too large"
    )
    assert sorted(p.name for p in out.iterdir()) == ["small.json", "small_heatmap.npy", "small_overlay.png"]
    monkeypatch.setattr(base, "available_memory", lambda: 7_000_000 * base.BYTES_PER_PIXEL)
    assert heatmap(folder, "--model", model, "--out", out).exit_code == 0  # over Pillow's limit, under ours
    assert np.load(out / "huge_heatmap.npy").shape == (2000, 3000)
