"""PatchSVDD as a registered method: a planted anomaly stands out, the bank and checkpoint round-trip, and the
command line fits and heatmaps it."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SMALL_PHANTOM
from method_checks import picard_ad

from picard_ad.data.datasets import phantom_dataset
from picard_ad.data.phantoms import generate_phantom
from picard_ad.data.samples import Sample
from picard_ad.errors import ConfigError, CorruptFileError, InputError
from picard_ad.methods import create_method, load_method
from picard_ad.methods.patchsvdd import (
    BANK_FILE,
    PRESETS,
    BankGeometry,
    FeatureBank,
    PatchSVDD,
    PatchSVDDSettings,
    WindowFeatures,
    build_bank,
    build_networks,
    read_bank,
    write_bank,
)
from picard_ad.methods.patchsvdd.bank import draw_windows
from picard_ad.training import checkpoint_dir, network_file

TINY = PRESETS["tiny"]


@functools.cache
def _normal_samples() -> tuple[Sample, ...]:
    """Six normal phantoms (192 x 160 px) in memory."""
    return tuple(Sample(f"normal_{i}", f"p{i}", "normal", generate_phantom(SMALL_PHANTOM, seed=100 + i).image)
                 for i in range(6))  # fmt: skip


def _planted() -> tuple[np.ndarray, np.ndarray]:
    """The first normal phantom of ``_normal_samples`` with a bright disc of radius 8 px in its tissue, and the
    disc's mask."""
    image = _normal_samples()[0].load_image()
    rows, cols = np.nonzero(image[40:-40, 40:-40] > 0.02)
    centre = rows[len(rows) // 2] + 40, cols[len(cols) // 2] + 40
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    disc = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= 8**2
    return np.clip(image + 0.4 * disc, 0, 1).astype(np.float32), disc


@functools.cache
def _parts(stride: int) -> tuple[torch.nn.Module, FeatureBank]:
    torch.manual_seed(0)
    encoder = build_networks(TINY)["encoder"]
    geometry = BankGeometry(64, stride, PatchSVDDSettings().tissue_threshold, 0.0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return encoder, build_bank(_normal_samples(), _features(encoder), geometry, bank_size=10_000, seed=0)
    finally:
        torch.set_num_threads(threads)


def _features(encoder: torch.nn.Module) -> WindowFeatures:
    return WindowFeatures(encoder, device=torch.device("cpu"), bf16=False, batch_size=None)


def _untrained(stride: int = 8, **settings) -> PatchSVDD:
    """A PatchSVDD of a freshly initialised tiny encoder and the bank of the six normal phantoms at ``stride``."""
    encoder, bank = _parts(stride)
    return PatchSVDD.from_parts(encoder, bank, TINY, PatchSVDDSettings(stride=stride, device="cpu", **settings))


def test_a_planted_anomaly_is_all_that_differs_from_the_bank(one_torch_thread):
    # The bank holds every tissue window of the image the disc is planted in: a window away from the disc is its
    # own nearest neighbour (distance exactly 0), a window or centred half around the disc's centre is not,
    # whatever the weights. (The encoder, as the reference's, never sees the last row and column of a 32 px
    # sub-patch, so a window that only grazes the disc may still score 0.)
    image, disc = _planted()
    centre = np.zeros_like(disc)
    centre[tuple(np.rint(np.argwhere(disc).mean(axis=0)).astype(int))] = True
    method = _untrained()
    heatmaps = method.heatmaps(image, method.score_names)
    grid = heatmaps["nn-distance"].grid
    for name, footprint in (("nn-distance-window", "patch"), ("nn-distance-centre", "mask")):
        rows, cols = grid.coverage(footprint)
        over_disc, over_centre = ((rows.T.astype(float) @ m @ cols.astype(float)) > 0 for m in (disc, centre))
        scores, scored = heatmaps[name].window_scores, ~heatmaps[name].skipped
        assert np.all(scores[scored & over_centre] > 0) and np.all(scores[scored & ~over_disc] == 0), name
    product = heatmaps["nn-distance"]
    assert np.array_equal(product.array, heatmaps["nn-distance-window"].array * heatmaps["nn-distance-centre"].array)
    peak = np.unravel_index(np.argmax(product.array), image.shape)
    assert disc[peak[0] - 8 : peak[0] + 9, peak[1] - 8 : peak[1] + 9].any()
    assert product.timings["scored_windows"] > 100 and product.settings["bank_windows"] == len(method.bank)


def test_the_approximate_search_gives_close_maps(one_torch_thread):
    pytest.importorskip("faiss")
    image, _ = _planted()
    exact = _untrained()
    approximate = _untrained(search="approximate", ivf_lists=8, ivf_probes=8)
    assert np.array_equal(approximate.score_map(image), exact.score_map(image))  # every cell probed: exact
    assert approximate.index("window").n_lists == 8


def test_the_bank_draws_uniformly_and_round_trips(tmp_path):
    drawn = draw_windows([5, 0, 7], bank_size=100, seed=0)
    assert [d.tolist() for d in drawn] == [list(range(5)), [], list(range(7))]
    drawn = draw_windows([50, 0, 70], bank_size=30, seed=0)
    assert sum(len(d) for d in drawn) == 30 and all(np.all(np.diff(d) > 0) for d in drawn)
    assert drawn[0].max() < 50 and drawn[2].max() < 70 and len(drawn[1]) == 0
    method = _untrained(stride=16)
    write_bank(method.bank, tmp_path / BANK_FILE, encoder_step=3)
    loaded = read_bank(tmp_path / BANK_FILE)
    assert all(np.array_equal(loaded.features[s], method.bank.features[s]) for s in ("window", "centre"))
    assert loaded.facts == {**method.bank.facts, "encoder_step": 3} and loaded.facts["stride"] == 16
    (tmp_path / "bad.safetensors").write_bytes(b"not a bank")
    with pytest.raises(CorruptFileError, match="not a readable safetensors file"):
        read_bank(tmp_path / "bad.safetensors")
    with pytest.raises(InputError, match="did not finish its feature bank"):
        read_bank(tmp_path / "absent.safetensors")


def test_a_subsampled_bank_keeps_both_scales_of_the_same_windows(one_torch_thread):
    encoder, full = _parts(16)
    small = build_bank(_normal_samples(), _features(encoder), BankGeometry(64, 16, 0.02, 0.0), bank_size=20, seed=1)
    assert len(small) == 20 and small.facts["tissue_windows"] == len(full) == full.facts["windows"]
    # batches of other sizes may round differently: rows are matched to within float32 rounding
    gaps = np.abs(small.features["window"][:, None] - full.features["window"][None]).max(axis=2)
    rows = gaps.argmin(axis=1)
    assert gaps.min(axis=1).max() < 1e-5 and len(set(rows.tolist())) == 20
    np.testing.assert_allclose(full.features["centre"][rows], small.features["centre"], atol=1e-5)


def test_saving_and_loading_give_identical_maps(tmp_path, one_torch_thread):
    image, _ = _planted()
    method = _untrained()
    expected = method.heatmaps(image, method.score_names)
    with pytest.raises(ConfigError, match="save\\(\\) it"):
        method.identity()
    method.save(tmp_path / "saved")
    loaded = load_method(tmp_path / "saved")
    assert loaded.identity() == method.identity() and len(loaded.bank) == len(method.bank)
    for name, heatmap in loaded.heatmaps(image, loaded.score_names).items():
        assert np.array_equal(heatmap.array, expected[name].array)
    with pytest.raises(ConfigError, match="patch_size must be 64 px for this model"):
        load_method(tmp_path / "saved", patch_size=128).score_map(image)


def test_training_resumes_exactly(tmp_path, one_torch_thread):
    normals = phantom_dataset(3, 0, SMALL_PHANTOM, seed=2)
    create_method("patchsvdd", preset="tiny").fit(normals, run_dir=tmp_path / "straight")
    create_method("patchsvdd", preset="tiny", train={"steps": 2}).fit(normals, run_dir=tmp_path / "resumed")
    create_method("patchsvdd", preset="tiny").fit(normals, run_dir=tmp_path / "resumed", resume=True)
    weights = [checkpoint_dir(tmp_path / run) / network_file(name) for run in ("straight", "resumed")
               for name in ("encoder", "position_classifier")]  # fmt: skip
    assert weights[0].read_bytes() == weights[2].read_bytes() and weights[1].read_bytes() == weights[3].read_bytes()
    assert (tmp_path / "straight" / BANK_FILE).read_bytes() == (tmp_path / "resumed" / BANK_FILE).read_bytes()


def test_fit_and_heatmap_from_the_command_line(phantom_folder, tmp_path, one_torch_thread):
    assert "patchsvdd " in picard_ad("methods") and "nn-distance*" in picard_ad("methods")
    assert "--svdd-lambda" in picard_ad("fit", "--method", "patchsvdd", "--help")
    output = picard_ad("fit", "--method", "patchsvdd", "--preset", "tiny", "--data", phantom_folder, "--out",
                       tmp_path / "run", "--quiet")  # fmt: skip
    assert "feature bank:" in output and (tmp_path / "run" / "samples").is_dir()
    run = tmp_path / "run"
    assert "--n-neighbours" in picard_ad("heatmap", "--model", run, "--help")
    image = tmp_path / "planted.png"
    from picard_ad.io.writers import write_png

    write_png(image, _planted()[0])
    for score in ("nn-distance", "nn-distance-centre"):
        out = tmp_path / score
        picard_ad("heatmap", image, "--model", run, "--out", out, "--score", score, "--n-neighbours", 2, "--quiet")
        sidecar = json.loads((out / "planted.json").read_text())
        assert sidecar["method"] == "patchsvdd" and sidecar["score"] == score
        heatmap = np.load(out / "planted_heatmap.npy")
        assert heatmap.shape == SMALL_PHANTOM.size and np.isfinite(heatmap).all() and heatmap.max() > 0
        settings = sidecar["slices"][0]["heatmap"]["settings"]
        assert settings["stride"] == TINY.bank_stride and settings["n_neighbours"] == 2
    assert "encoder: 7,328 parameters" in picard_ad("describe", run)


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="search must be one of exact, approximate"):
        PatchSVDDSettings(search="kd-tree")
    with pytest.raises(ConfigError, match="patch_size: patch sides are 32 px times a power of two, got 96"):
        create_method("patchsvdd", train={"patch_size": 96})
    with pytest.raises(ConfigError, match="method 'patchsvdd' trains a network: give fit a run folder"):
        create_method("patchsvdd", preset="tiny").fit(_normal_samples()[:1])
    assert Path(PatchSVDD.describe_architecture(PRESETS["paper"])[0]).name.startswith("PatchSVDD hierarchical")
