"""The pchVAE and its ablations: eq. 3.24 against a hand computation, fit and heatmap through the command line, the
negative-ELBO slice score and exact resume."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from method_checks import assert_resume_is_exact, picard_ad

from picard_ad.methods import load_method
from picard_ad.methods.vae import PCHVAE_PRESETS, HierarchicalVAE, PCHVAETraining, hierarchical_loss_terms
from picard_ad.training import Trainer


def _kl(mean, log_sigma):
    return 0.5 * (mean**2 + torch.exp(2 * log_sigma) - 1 - 2 * log_sigma).flatten(1).sum(1)


def test_the_pchvae_loss_is_eq_3_24_by_hand():
    torch.manual_seed(0)
    network = HierarchicalVAE("pchvae", z_dim=2, width=2)
    x = torch.randn(2, 1, 16, 16)
    parts = network(x, sample=True, generator=torch.Generator().manual_seed(5))
    lambdas = (0.5, 2.0, 3.0, 0.7, 1.3)
    terms = hierarchical_loss_terms(parts, x, "pchvae", lambdas, "laplace", 1.0)
    # the same draws in the same order: z1, z2, z_low
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        h = network.stem(x)
        mean1, log_sigma1 = network.f1(h).chunk(2, dim=1)
        z1 = mean1 + log_sigma1.exp() * torch.randn(mean1.shape, generator=generator)
        condition = network.z1_up(z1)
        mean2, log_sigma2 = network.f2(torch.cat([h, condition], 1)).chunk(2, dim=1)
        z2 = mean2 + log_sigma2.exp() * torch.randn(mean2.shape, generator=generator)
        high, low = network.g1(z1), network.g2(torch.cat([z2, condition], 1))
        mean_low, log_sigma_low = network.f1(network.stem(low)).chunk(2, dim=1)
        zero = network.g1(mean_low + log_sigma_low.exp() * torch.randn(mean_low.shape, generator=generator))
        l1 = (x - high).abs().sum((1, 2, 3)) + x[0].numel() * np.log(2)
        l2 = (x - (high + low)).abs().sum((1, 2, 3)) + x[0].numel() * np.log(2)
        l3 = zero.abs().sum((1, 2, 3)) + x[0].numel() * np.log(2)
        expected = 0.5 * l1 + 2.0 * l2 + 3.0 * l3 + 0.7 * _kl(mean1, log_sigma1) + 1.3 * _kl(mean2, log_sigma2)
    assert torch.allclose(terms["loss"], expected, rtol=1e-5)
    assert torch.allclose(terms["rec"], l2, rtol=1e-5) and torch.allclose(terms["zero"], l3, rtol=1e-5)


@pytest.mark.parametrize("variant, present", [("chvae", {"kl1", "kl2", "low"}), ("high", {"kl1", "high"}),
                                              ("low", {"kl2", "low"})])  # fmt: skip
def test_the_ablations_drop_their_parts(variant, present):
    network = HierarchicalVAE(variant, z_dim=2, width=2)
    x = torch.randn(2, 1, 16, 16)
    parts = network(x, sample=False)
    assert set(parts) == present | {"reconstruction"}
    assert not hasattr(network, "g1") or variant == "high"
    terms = hierarchical_loss_terms(parts, x, variant, (1.0,) * 5, "gaussian", 1.0)
    kl = sum(parts[name] for name in ("kl1", "kl2") if name in parts)
    assert torch.allclose(terms["loss"], terms["rec"] + kl) and "zero" not in terms


def test_fit_heatmap_and_the_negative_elbo(data, tmp_path):
    from picard_ad.io import read_image

    run = tmp_path / "pchvae"
    picard_ad("fit", "--method", "pchvae", "--preset", "tiny", "--data", data / "normal", "--out", run, "--quiet")
    assert "pchvae " in picard_ad("methods") and "--variant [pchvae|chvae|high|low]" in picard_ad(
        "fit", "--method", "pchvae", "--help")  # fmt: skip
    assert json.loads((run / "method.json").read_text())["train"]["variant"] == "pchvae"
    abnormal = sorted((data / "images").iterdir())[0]
    picard_ad("heatmap", abnormal, "--model", run, "--out", tmp_path / "maps", "--score", "rec", "--quiet")
    heatmap = np.load(tmp_path / "maps" / f"{abnormal.stem}_heatmap.npy")
    assert heatmap.shape == (160, 128) and np.isfinite(heatmap).all() and heatmap.std() > 0
    method = load_method(run)
    image = read_image(abnormal).pixels
    terms = method.sample_terms(image)
    assert terms["kl"] >= 0 and method.image_score(image) == pytest.approx(terms["kl"] + terms["rec"])
    assert "z1" in picard_ad("describe", run)


def test_an_ablation_fits_and_scores(data, tmp_path):
    from picard_ad.io import read_image

    run = tmp_path / "low"
    picard_ad("fit", "--method", "pchvae", "--preset", "tiny", "--variant", "low", "--data", data / "normal", "--out",
              run, "--quiet")  # fmt: skip
    image = read_image(sorted((data / "images").iterdir())[0]).pixels
    method = load_method(run)
    assert method.train_config.variant == "low" and np.isfinite(method.score_map(image)).all()


def test_a_resumed_run_equals_an_uninterrupted_one(data, tmp_path):
    config = dataclasses.replace(PCHVAE_PRESETS["tiny"], steps=4, checkpoint_every=2, validate_every=1,
                                 plateau_patience=1, device="cpu")  # fmt: skip

    def trainer(folder, **options):
        return Trainer("pchvae", config, PCHVAETraining, data / "normal", folder, progress=False, **options)

    assert_resume_is_exact(trainer, ("autoencoder",), tmp_path)
