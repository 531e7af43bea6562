"""The ceVAE: the context-encoding squares, its loss against a hand computation, fit and heatmap through the command
line, the slice-max volume score and exact resume."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from method_checks import assert_resume_is_exact, picard_ad

from picard_ad.methods import load_method
from picard_ad.methods.vae import (
    CEVAE_PRESETS,
    CEVAE_SCORES,
    CEVAETraining,
    ConvAutoencoder,
    cevae_loss_terms,
    context_squares,
)
from picard_ad.training import Trainer


def test_context_squares_paste_one_to_three_squares_of_a_random_fill_inside_the_image():
    x = torch.linspace(-1.5, 1.5, 8 * 32 * 32).reshape(8, 1, 32, 32)
    generator = torch.Generator().manual_seed(0)
    counts, values = [], []
    for _ in range(20):
        masked, squares = context_squares(x, 3, 0.5, generator)
        assert masked.shape == x.shape and len(squares) == len(x)
        expected = x.clone()
        for i, placed in enumerate(squares):
            counts.append(len(placed))
            for square in placed:
                assert 1 <= square.side <= 16 and square.top >= 0 and square.left >= 0
                assert square.top + square.side <= 32 and square.left + square.side <= 32
                assert float(x[i].min()) <= square.value <= float(x[i].max())
                values.append(square.value)
                expected[i, :, square.top : square.top + square.side, square.left : square.left + square.side] = (
                    square.value)  # fmt: skip
        assert torch.equal(masked, expected)
    assert set(counts) == {1, 2, 3}
    assert len(set(np.round(values, 4))) > len(values) // 2  # random fills, not a constant such as 0
    again, _ = context_squares(x, 3, 0.5, torch.Generator().manual_seed(0))
    first, _ = context_squares(x, 3, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(again, first)


def test_the_loss_is_the_vae_loss_plus_the_factor_times_a_hand_computed_context_term():
    torch.manual_seed(0)
    network = ConvAutoencoder(16, 2)
    x = torch.randn(3, 1, 16, 16)
    masked, _ = context_squares(x, 3, 0.5, torch.Generator().manual_seed(1))
    noise = torch.randn(3, 2)
    terms = cevae_loss_terms(network, x, masked, noise, "laplace", 0.5, 0.3)
    with torch.no_grad():
        code = network.encoder(x)
        mean, log_sigma = code[:, :2], code[:, 2:]
        kl = 0.5 * (mean**2 + torch.exp(2 * log_sigma) - 1 - 2 * log_sigma).sum(1)
        rec = ((x - network.decoder(mean + log_sigma.exp() * noise)).abs() / 0.5 + math.log(1.0)).sum((1, 2, 3))
        ce = ((x - network.decoder(network.encoder(masked)[:, :2])).abs() / 0.5 + math.log(1.0)).sum((1, 2, 3))
    for name, value in (("kl", kl), ("rec", rec), ("ce", ce), ("loss", kl + rec + 0.3 * ce)):
        assert torch.allclose(terms[name], value, rtol=1e-5, atol=1e-4), name
    assert not torch.allclose(terms["ce"], terms["rec"])
    plain = cevae_loss_terms(network, x, masked, noise, "laplace", 0.5, 0.0)
    assert torch.allclose(plain["loss"], kl + rec, rtol=1e-5)


def test_fit_heatmap_and_the_slice_max_volume_score(data, tmp_path):
    from picard_ad.io import read_image

    run = tmp_path / "cevae"
    picard_ad("fit", "--method", "cevae", "--preset", "tiny", "--data", data / "normal", "--out", run, "--quiet")
    assert "cevae " in picard_ad("methods") and "--ce-factor" in picard_ad("fit", "--method", "cevae", "--help")
    for path in ("method.json", "best/autoencoder.safetensors", "validation.csv"):
        assert (run / path).is_file(), path
    record = json.loads((run / "method.json").read_text())
    assert record["name"] == "cevae" and record["train"]["likelihood"] == "laplace"
    abnormal = sorted((data / "images").iterdir())[0]
    for score in CEVAE_SCORES:
        out = tmp_path / score
        picard_ad("heatmap", abnormal, "--model", run, "--out", out, "--score", score, "--quiet")
        heatmap = np.load(out / f"{abnormal.stem}_heatmap.npy")
        assert heatmap.shape == (160, 128) and np.isfinite(heatmap).all() and heatmap.std() > 0
    method = load_method(run)
    image = read_image(abnormal).pixels
    terms = method.sample_terms(image)
    assert method.image_score(image) == pytest.approx(terms["kl"] + terms["rec"])
    assert method.volume_score(abnormal) == pytest.approx(method.image_score(image))


def test_a_resumed_run_equals_an_uninterrupted_one(data, tmp_path):
    config = dataclasses.replace(CEVAE_PRESETS["tiny"], steps=4, checkpoint_every=2, validate_every=1,
                                 plateau_patience=1, device="cpu")  # fmt: skip

    def trainer(folder, **options):
        return Trainer("cevae", config, CEVAETraining, data / "normal", folder, progress=False, **options)

    assert_resume_is_exact(trainer, ("autoencoder",), tmp_path)
    history = [(tmp_path / folder / "validation.csv").read_text() for folder in ("whole", "killed")]
    assert history[0] == history[1]
