"""A method defined in this file alone goes through the whole command set: fit, heatmap, mood and a benchmark.

``toy-mean`` learns the mean and spread of the window means of normal images and scores a window by how far its
mean lies from them (sliding windows, run by the generic batched executor), or an image resized to 32 x 32 pixel
by pixel (the whole-image path). Nothing outside this file knows it: it registers itself like a plugin would.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import nibabel
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from method_checks import picard_ad

from picard_ad.config import setting
from picard_ad.data.datasets import phantom_dataset
from picard_ad.data.phantoms import PhantomConfig
from picard_ad.io.writers import atomic_write_text, write_mask_png, write_png
from picard_ad.localize import BatchedExecutor, Heatmap, WindowSettings, resized_heatmap, sliding_window_heatmap
from picard_ad.methods import AnomalyMethod, MethodSettings, register_method

STATE_FILE = "normal_statistics.json"


@dataclass(frozen=True)
class ToyTrain:
    windows_per_image: int = setting(20, "random windows per normal image whose means are collected", ge=1)
    window: int = setting(16, "side of those windows, px", ge=2)
    seed: int = setting(0, "seed of the window positions", ge=0)


@dataclass(frozen=True)
class ToySettings(WindowSettings, MethodSettings):
    score: str = setting("window-deviation", "how far from normal: window means, or pixels of the resized image",
                         choices=("window-deviation", "resized-deviation"))  # fmt: skip
    stride: int = setting(8, "step between windows in pixels", ge=1)


@register_method("toy-mean")
class ToyMean(AnomalyMethod):
    """A toy: distance of a window's mean intensity from the normal windows' mean, in normal standard deviations."""

    settings_class = ToySettings
    train_config_class = ToyTrain
    score_names = ("window-deviation", "resized-deviation")

    def learn(self, images, run_dir, *, resume, progress, context) -> None:
        rng = np.random.default_rng(self.train_config.seed)
        side = self.train_config.window
        means = []
        for sample in images.samples():
            pixels = sample.load_image()
            for _ in range(self.train_config.windows_per_image):
                row, col = (int(rng.integers(0, n - side + 1)) for n in pixels.shape)
                means.append(float(pixels[row : row + side, col : col + side].mean()))
        self.mean, self.spread = float(np.mean(means)), float(np.std(means) + 1e-6)

    def write_state(self, directory: Path) -> None:
        atomic_write_text(directory / STATE_FILE, json.dumps({"mean": self.mean, "spread": self.spread}))

    def read_state(self, directory: Path) -> None:
        state = json.loads((directory / STATE_FILE).read_text())
        self.mean, self.spread = state["mean"], state["spread"]

    def state_files(self) -> list[Path]:
        return [self.run_dir / STATE_FILE]

    def _window_scores(self, windows: np.ndarray, indices: np.ndarray) -> dict[str, np.ndarray]:
        executor = BatchedExecutor("cpu", bf16=False, workers=1)
        batch = executor.batch_size(windows.shape[-1], lambda n: lambda: torch.zeros(n, windows[0].size).mean())
        scores = np.empty(len(windows))

        def run(start: int) -> None:
            chunk = torch.from_numpy(windows[start : start + batch])
            means = F.adaptive_avg_pool2d(chunk[:, None], 1).flatten().numpy()
            scores[start : start + batch] = np.abs(means - self.mean) / self.spread

        executor.run(list(range(0, len(windows), batch)), run)
        return {"window-deviation": scores}

    def compute_heatmaps(self, image, scores, *, progress, path, origin) -> dict[str, Heatmap]:
        heatmaps = {}
        if "window-deviation" in scores:
            settings = self.settings
            heatmaps.update(sliding_window_heatmap(
                image, self._window_scores, patch_size=settings.patch_size or self.train_config.window,
                mask_size=settings.mask_size or self.train_config.window // 2, stride=settings.stride,
                tissue_threshold=settings.tissue_threshold if settings.skip_background else None,
                mode=settings.assembly, path=path,
            ))  # fmt: skip
        if "resized-deviation" in scores:
            deviation = lambda small: {"resized-deviation": np.abs(small - self.mean) / self.spread}  # noqa: E731
            heatmaps.update(resized_heatmap(image, deviation, input_size=32))
        return heatmaps


PHANTOM = PhantomConfig(size=(144, 128), pixel_spacing_mm=1.0)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Normal phantoms as PNGs, two abnormal ones with masks, and a NIfTI volume of two slices."""
    root = tmp_path_factory.mktemp("toy")
    samples = phantom_dataset(4, 2, PHANTOM, seed=4)
    for sample in samples:
        loaded = sample.load()
        folder = "normal" if sample.is_normal else "abnormal"
        write_png(root / folder / f"{sample.name}.png", loaded.image)
        if not sample.is_normal:
            write_mask_png(root / "masks" / f"{sample.name}.png", loaded.lesion_mask)
    volume = np.stack([s.load().image for s in samples if not s.is_normal], axis=-1)
    (root / "mood").mkdir()
    nibabel.save(nibabel.Nifti1Image((volume * 1000).astype(np.int16), np.eye(4)), root / "mood" / "case.nii.gz")
    return root


def test_the_toy_is_listed_fitted_and_heatmapped(data, tmp_path):
    assert "toy-mean " in picard_ad("methods") and "window-deviation*, resized-deviation" in picard_ad("methods")
    assert "--windows-per-image INTEGER" in picard_ad("fit", "--method", "toy-mean", "--help")
    picard_ad("fit", "--method", "toy-mean", "--data", data / "normal", "--out", tmp_path / "run",
              "--windows-per-image", 30)  # fmt: skip
    record = json.loads((tmp_path / "run" / "method.json").read_text())
    assert record["name"] == "toy-mean" and record["train"]["windows_per_image"] == 30
    assert "--stride INTEGER" in picard_ad("heatmap", "--model", tmp_path / "run", "--help")

    for score in ("window-deviation", "resized-deviation"):
        out = tmp_path / score
        picard_ad("heatmap", data / "abnormal", "--model", tmp_path / "run", "--out", out, "--score", score,
                  "--annotations", data / "masks", "--quiet")  # fmt: skip
        sidecar = json.loads((out / "abnormal_0000.json").read_text())
        assert sidecar["method"] == "toy-mean" and sidecar["score"] == score
        assert len(sidecar["key"]["method"]["state_sha256"]) == 64  # the fitted statistics' file
        heatmap = np.load(out / "abnormal_0000_heatmap.npy")
        assert heatmap.shape == (144, 128) and np.isfinite(heatmap).all()
        mask = phantom_dataset(4, 2, PHANTOM, seed=4)[4].load().lesion_mask
        assert heatmap[mask].mean() > np.median(heatmap)  # the bright lesion deviates from normal tissue
        evaluated = picard_ad("evaluate", "--heatmaps", out, "--annotations", data / "masks", "--out", out / "ev")
        assert "2 images (2 with lesions)" in evaluated
    windows = json.loads((tmp_path / "window-deviation" / "abnormal_0000.json").read_text())["slices"][0]
    assert windows["heatmap"]["stride"] == 8 and windows["heatmap"]["n_windows"] > 100
    resized = json.loads((tmp_path / "resized-deviation" / "abnormal_0000.json").read_text())["slices"][0]
    assert resized["heatmap"]["settings"]["input_size"] == 32 and "grid_shape" not in resized["heatmap"]


def test_the_toy_writes_mood_predictions_and_is_benchmarked_with_an_ablation(data, tmp_path):
    picard_ad("fit", "--method", "toy-mean", "--data", data / "normal", "--out", tmp_path / "run")
    picard_ad("mood", data / "mood", tmp_path / "mood", "--model", tmp_path / "run", "--task", "sample",
              "--stride", 16)  # fmt: skip
    assert 0.0 < float((tmp_path / "mood" / "case.nii.gz.txt").read_text()) <= 1.0

    config = tmp_path / "bench.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"kind": "phantoms", "n_normal": 4, "n_abnormal": 2, "size": [144, 128], "pixel_spacing_mm": 1.0,
                 "test_normal_patients": 1},
        "methods": [{"name": "toy-mean", "train": {"windows_per_image": 10}, "settings": {"stride": 16}}],
        "ablations": [{"method": "toy-mean", "setting": "score", "values": ["window-deviation", "resized-deviation"]}],
        "seed": 2,
    }))  # fmt: skip
    output = picard_ad("benchmark", "--config", config, "--out", tmp_path / "bench")
    assert "toy-mean: fitted in" in output and "toy-mean score=resized-deviation: 3 score maps computed" in output
    metrics = json.loads((tmp_path / "bench" / "metrics.json").read_text())
    toy = metrics["methods"]["toy-mean"]
    assert 0.0 <= toy["tissue_pixel_auroc_pooled"] <= 1.0 and toy["beats_references"] in (True, False)
    assert toy["config"]["train"]["windows_per_image"] == 10
    assert [row["value"] for row in metrics["ablations"]] == ["window-deviation", "resized-deviation"]
    assert "toy-mean" in (tmp_path / "bench" / "report.html").read_text()
