"""The VAE family with Davletshina et al.'s preprocessing chain and image scores: the default chain is the data path
from before it (to the bit), crop gives the deskewed carrier and maps back to the image, mse and l1 by hand, the
chain recorded at fit time and a resume with another refused, the benchmark's ablation over the image scores."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from click.testing import CliRunner
from vae_networks import SIZE, captured_inputs, untrained_vae

from picard_ad.cli.benchmark import command
from picard_ad.config import to_dict
from picard_ad.data.preprocessing import PreprocessingSettings, network_mask, prepare, resize_with_padding
from picard_ad.data.tissue import tissue_mask
from picard_ad.errors import ConfigError
from picard_ad.io import read_image
from picard_ad.jobs.mood import slice_sample_score
from picard_ad.methods import create_method
from picard_ad.methods.vae import VAE, Preprocessing, VAESettings, normalise
from picard_ad.methods.vae.data import RAW_CHAIN, model_input
from picard_ad.training.checkpoint import INFO_FILE, check_resumed_preprocessing, read_checkpoint_info


def _before_the_chain(image: np.ndarray) -> np.ndarray:
    """The network input as the VAE built it before the chain: fit_to_input's resize (aspect kept, bilinear,
    antialiased when shrinking, top-left, padded with 0), then the z-score over the thresholded tissue, clipped."""
    rows, cols = (SIZE, round(image.shape[1] * SIZE / image.shape[0]))  # a portrait image: rows fill the input
    tensor = torch.from_numpy(image)[None, None]
    canvas = np.zeros((SIZE, SIZE), np.float32)
    canvas[:rows, :cols] = F.interpolate(tensor, size=(rows, cols), mode="bilinear", align_corners=False,
                                         antialias=True)[0, 0].numpy()  # fmt: skip
    tissue = tissue_mask(canvas, 0.02)
    values = canvas[tissue]
    mean, std = float(values.mean()), max(float(values.std()), 0.01)
    return np.clip((canvas - mean) / std, -1.5, 1.5).astype(np.float32)


def carrier(angle: float = 12.0, shape: tuple[int, int] = (120, 150)) -> np.ndarray:
    """A bright textured rectangle (70 x 100 px) turned by ``angle`` degrees on a dark background."""
    rng = np.random.default_rng(7)
    rows, cols = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    radians = np.deg2rad(angle)
    x, y = cols - shape[1] / 2, rows - shape[0] / 2
    along, across = x * np.cos(radians) + y * np.sin(radians), -x * np.sin(radians) + y * np.cos(radians)
    inside = (np.abs(along) <= 50) & (np.abs(across) <= 35)
    image = np.where(inside, 0.5 + 0.2 * np.sin(along / 6) + 0.05 * rng.random(shape), 0.03 * rng.random(shape))
    return image.astype(np.float32)


def test_the_default_chain_is_the_data_path_from_before_it():
    assert VAESettings().preprocessing_settings() == RAW_CHAIN
    image = np.zeros((90, 60), np.float32)
    image[10:80, 8:50] = np.random.default_rng(0).random((70, 42), dtype=np.float32) * 0.8 + 0.1
    expected = _before_the_chain(image)
    model, _ = model_input(image, RAW_CHAIN, SIZE)
    assert model.mask is None
    assert np.array_equal(normalise(model.image, Preprocessing(SIZE)), expected)
    method = untrained_vae()
    seen = captured_inputs(method)
    method.heatmaps(image, ("rec", "kl-grad"))
    method.sample_terms(image)
    assert len(seen) == 2 and all(np.array_equal(x[0, 0].numpy(), expected) for x in seen)


def test_crop_gives_the_network_the_deskewed_carrier_and_maps_back_to_the_image():
    image = carrier()
    chain = PreprocessingSettings(preprocessing="crop", equalization="none")
    prepared = prepare(image, chain)
    assert prepared.box is not None and prepared.box.angle == pytest.approx(12.0, abs=2.0)
    assert prepared.image.shape == pytest.approx((70, 100), abs=3)  # upright: the carrier's own rows and columns
    canvas, placement = resize_with_padding(prepared.image, SIZE)
    mask = network_mask(prepared, placement)
    expected = normalise(canvas, Preprocessing(SIZE), mask)  # z-scored over the crop, not the thresholded tissue
    method = untrained_vae(preprocessing="crop", equalization="none")
    seen = captured_inputs(method)
    heatmaps = method.heatmaps(image, ("rec", "kl-grad"))
    assert np.array_equal(seen[0][0, 0].numpy(), expected)
    for heatmap in heatmaps.values():
        assert heatmap.array.shape == image.shape and heatmap.array.dtype == np.float32
        assert np.all(heatmap.array[:5] == 0) and np.all(heatmap.array[:, :5] == 0)  # outside the carrier box
        assert heatmap.settings["preprocessing"] == "crop" and heatmap.settings["carrier_box"] is not None
    # the full chain z-scores over the foreground mask and scores there too
    full = untrained_vae(preprocessing="full", equalization="global")
    assert full.heatmap(image, "rec").array.shape == image.shape
    assert np.isfinite(list(full.sample_terms(image).values())).all()


def test_mse_and_l1_are_the_reconstruction_errors_over_the_tissue_by_hand():
    image = np.zeros((SIZE, SIZE), np.float32)
    image[4:28, 6:30] = np.random.default_rng(2).random((24, 24), dtype=np.float32) * 0.7 + 0.2
    method = untrained_vae()
    x = normalise(image, Preprocessing(SIZE))  # 32 px: no resize
    with torch.no_grad():
        network = method.network
        reconstruction = network.decode(network.encode(torch.from_numpy(x)[None, None])[0])[0, 0].numpy()
    tissue = tissue_mask(image, 0.02)
    assert 0 < tissue.sum() < image.size
    error = (x.astype(np.float64) - reconstruction)[tissue]
    terms = method.sample_terms(image)
    assert terms["mse"] == pytest.approx(float(np.mean(error**2)), rel=1e-5)
    assert terms["l1"] == pytest.approx(float(np.mean(np.abs(error))), rel=1e-5)
    for name in ("mse", "l1", "kl", "rec", "kl+rec"):
        scorer = untrained_vae(sample_score=name)
        assert scorer.sample_score_name() == name
        assert scorer.image_score(image) == pytest.approx(sum(terms[part] for part in name.split("+")))
        assert slice_sample_score(scorer, "sample") == scorer.image_score  # MOOD's sample task takes it


def test_the_chain_is_recorded_at_fit_time_and_a_resume_with_another_is_refused(data, tmp_path):
    run = tmp_path / "run"
    method = create_method("vae", preset="tiny", settings={"preprocessing": "full", "device": "cpu"})
    method.fit(data / "normal", run_dir=run)
    full = to_dict(method.settings.preprocessing_settings())
    assert read_checkpoint_info(run)["preprocessing"] == full and method.model["trained_preprocessing"] == full
    abnormal = read_image(sorted((data / "images").iterdir())[0]).pixels
    assert method.heatmap(abnormal, "rec").array.shape == abnormal.shape
    other = create_method("vae", preset="tiny", settings={"device": "cpu"})
    with pytest.raises(ConfigError, match="resume with the preprocessing settings it started with"):
        other.fit(data / "normal", run_dir=run, resume=True)
    # a checkpoint from before the chain records none: it was trained on the raw slices
    info_path = run / "last" / INFO_FILE
    info = json.loads(info_path.read_text())
    del info["preprocessing"]
    info_path.write_text(json.dumps(info))
    check_resumed_preprocessing(run, to_dict(RAW_CHAIN), unrecorded=to_dict(RAW_CHAIN))
    with pytest.raises(ConfigError, match="resume with the preprocessing settings"):
        check_resumed_preprocessing(run, full, unrecorded=to_dict(RAW_CHAIN))


def test_benchmark_ablation_rows_score_with_mse_and_l1(tmp_path, monkeypatch):
    data = {"kind": "phantoms", "n_normal": 3, "n_abnormal": 2, "size": [128, 128], "pixel_spacing_mm": 1.0,
            "test_normal_patients": 1}  # fmt: skip
    config = tmp_path / "bench.yaml"
    config.write_text(yaml.safe_dump({
        "data": data, "seed": 3,
        "methods": [{"name": "vae", "label": "vae-crop", "preset": "tiny", "train": {"device": "cpu"},
                     "settings": {"preprocessing": "crop", "score": "rec"}}],
        "ablations": [{"method": "vae-crop", "setting": "sample_score", "values": ["mse", "l1"]}],
    }))  # fmt: skip
    scored = []
    image_score = VAE.image_score

    def recording(self, image, score_map=None, tissue=None, origin=None):
        scored.append((self.settings.sample_score, self.settings.preprocessing))
        return image_score(self, image, score_map, tissue, origin)

    monkeypatch.setattr(VAE, "image_score", recording)
    result = CliRunner().invoke(command, ["--config", str(config), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert {"mse", "l1"} <= {name for name, _ in scored} and {chain for _, chain in scored} == {"crop"}
    rows = json.loads((tmp_path / "out" / "metrics.json").read_text())["ablations"]
    assert [(row["setting"], row["value"]) for row in rows] == [("sample_score", "mse"), ("sample_score", "l1")]
