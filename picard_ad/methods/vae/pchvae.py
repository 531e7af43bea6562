"""The pchVAE of Zimmerer's thesis (section 3.3), registered as method "pchvae", with its ablations as a setting.

Network (Fig. 3.16, "similar to VQ-VAE-2", every strided (transposed) convolution up- or down-samples by 2): a
shared stem of two 4x4 stride-2 convolutions gives an S/4 feature map h. The high-level encoder f1 takes h down
two more levels to q(z1 | x) at S/16 (spatial latents, ``z_dim`` channels) and the high-level decoder g1 decodes
z1 with 4 upsamplings. The low-level encoder f2 gives q(z2 | x, z1) at S/4 from h and z1 (upsampled 4x by one
transposed convolution), and the low-level decoder g2(z1, z2) adds the residual with 2 upsamplings. Reconstruction
x^ = g1(z1) + g2(z1, z2). No normalisation layers, LeakyReLU(0.2), linear outputs.

Loss (eq. 3.24), per slice in nats, each ||.|| the Gaussian or Laplace -log p summed over pixels (``losses``):

    lambda1 L_rec(x, g1(z1)) + lambda2 L_rec(x, g1(z1) + g2(z1, z2)) + lambda3 L_rec(0, g1(z_low))
    + lambda4 KL1 + lambda5 KL2,        z_low ~ q(z1 | g2(z1, z2))

The third term sends the low-level component through the high-level encoder and decoder and pushes the result to
0, which minimises the mutual information between the levels. The thesis sets lambda2 = lambda3 and gives no other
value: all five default to 1.

``variant`` (the thesis' ablations, Table 3.6): ``pchvae``; ``chvae``, the conditional hierarchical VAE without
the high-level decoder's own reconstruction and without term 3 (x^ = g2(z1, z2); the thesis: "without the dark
blue part and term 3", which we read as g1); ``high``, the high-level branch alone (f1, g1: 4 upsamplings); ``low``,
the low-level branch alone (stem, f2 without z1, g2 without z1: 2 upsamplings). The thesis scales the ablations to
the same number of latent variables; here they keep the pchVAE's layer widths.

Scores: the slice's negative ELBO with posterior means, sum of the variant's KL terms and L_rec(x, x^) (thesis:
"the approximated ELBO is used as OoD score"); pixel maps ``rec`` = |x - x^| and ``rec-smoothed``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from picard_ad.config import setting, to_dict
from picard_ad.methods.base import register_method
from picard_ad.methods.vae.config import AutoencoderTrainConfig, _small, _tiny
from picard_ad.methods.vae.losses import Likelihood, kl_divergence, reconstruction_nll
from picard_ad.methods.vae.method import _Autoencoder
from picard_ad.methods.vae.scores import GradientOptions, gaussian_smooth
from picard_ad.methods.vae.settings import DAE_SCORES, ChainedAutoencoderSettings
from picard_ad.methods.vae.training import GRID_SAMPLES, NETWORK, AutoencoderTraining
from picard_ad.training.logging import side_by_side
from picard_ad.training.step import CurvePanel, SampleGrid

Variant = Literal["pchvae", "chvae", "high", "low"]
VARIANTS = ("pchvae", "chvae", "high", "low")


def _down(channels: int, maps: int) -> list[nn.Module]:
    return [nn.Conv2d(channels, maps, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]


def _up(channels: int, maps: int, activation: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.ConvTranspose2d(channels, maps, 4, stride=2, padding=1)]
    return layers + [nn.LeakyReLU(0.2)] if activation else layers


class HierarchicalVAE(nn.Module):
    """The pchVAE network or one of its ablations; images (N, 1, S, S), S a multiple of 16.

    Args:
        variant: "pchvae", "chvae", "high" or "low" (module docstring).
        z_dim: latent channels per position of each level (z1 at S/16, z2 at S/4).
        width: feature maps of the first level; the levels have width x 1, 2, 4, 8.
    """

    def __init__(self, variant: Variant = "pchvae", z_dim: int = 16, width: int = 32):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        self.variant, self.z_dim = variant, z_dim
        m1, m2, m3, m4 = (width * f for f in (1, 2, 4, 8))
        self.high = variant != "low"
        self.low = variant != "high"
        self.conditioned = variant in ("pchvae", "chvae")
        self.stem = nn.Sequential(*_down(1, m1), *_down(m1, m2))
        if self.high:
            self.f1 = nn.Sequential(*_down(m2, m3), *_down(m3, m4), nn.Conv2d(m4, 2 * z_dim, 3, padding=1))
        if variant in ("pchvae", "high"):
            self.g1 = nn.Sequential(nn.ConvTranspose2d(z_dim, m4, 3, padding=1), nn.LeakyReLU(0.2), *_up(m4, m3),
                                    *_up(m3, m2), *_up(m2, m1), *_up(m1, 1, activation=False))  # fmt: skip
        if self.conditioned:
            self.z1_up = nn.Sequential(nn.ConvTranspose2d(z_dim, m2, 4, stride=4), nn.LeakyReLU(0.2))
        if self.low:
            condition = m2 if self.conditioned else 0
            self.f2 = nn.Conv2d(m2 + condition, 2 * z_dim, 3, padding=1)
            self.g2 = nn.Sequential(nn.Conv2d(z_dim + condition, m2, 3, padding=1), nn.LeakyReLU(0.2),
                                    *_up(m2, m1), *_up(m1, 1, activation=False))  # fmt: skip

    @staticmethod
    def _draw(mean: torch.Tensor, log_sigma: torch.Tensor, generator: torch.Generator | None,
              sample: bool) -> torch.Tensor:  # fmt: skip
        if not sample:
            return mean
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + log_sigma.exp() * noise

    def encode_high(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log sigma) of q(z1 | x), (N, z, S/16, S/16) each."""
        mean, log_sigma = self.f1(self.stem(x)).chunk(2, dim=1)
        return mean, log_sigma

    def forward(self, x: torch.Tensor, sample: bool = True,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:  # fmt: skip
        """The parts of the loss: "high" g1(z1), "low" g2(.), "zero" g1(z_low) (pchvae), "reconstruction" x^,
        "kl1" / "kl2" (N,) nats. z drawn from q (``sample``) or its mean."""
        h = self.stem(x)
        out: dict[str, torch.Tensor] = {}
        condition = None
        if self.high:
            mean, log_sigma = self.f1(h).chunk(2, dim=1)
            z1 = self._draw(mean, log_sigma, generator, sample)
            out["kl1"] = kl_divergence(mean.flatten(1).float(), log_sigma.flatten(1).float())
            if self.conditioned:
                condition = self.z1_up(z1)
            if hasattr(self, "g1"):
                out["high"] = self.g1(z1)
        if self.low:
            features = h if condition is None else torch.cat([h, condition], dim=1)
            mean, log_sigma = self.f2(features).chunk(2, dim=1)
            z2 = self._draw(mean, log_sigma, generator, sample)
            out["kl2"] = kl_divergence(mean.flatten(1).float(), log_sigma.flatten(1).float())
            out["low"] = self.g2(z2 if condition is None else torch.cat([z2, condition], dim=1))
        if self.variant == "pchvae":
            mean, log_sigma = self.encode_high(out["low"])
            out["zero"] = self.g1(self._draw(mean, log_sigma, generator, sample))
            out["reconstruction"] = out["high"] + out["low"]
        else:
            out["reconstruction"] = out["high"] if self.variant == "high" else out["low"]
        return out


def hierarchical_loss_terms(parts: dict[str, torch.Tensor], x: torch.Tensor, variant: Variant,
                            lambdas: tuple[float, float, float, float, float], likelihood: Likelihood,
                            scale: float) -> dict[str, torch.Tensor]:  # fmt: skip
    """Eq. 3.24 for the variant: {"loss", "rec", "kl", and for pchvae "rec_high", "zero"}, (N,) float32 nats each.

    "rec" is L_rec(x, x^) (term 2 for pchvae), "kl" the sum of the variant's KL terms (unweighted)."""
    l1, l2, l3, l4, l5 = lambdas
    x = x.float()

    def nll(target: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        return reconstruction_nll(target, output.float(), likelihood, scale)

    rec = nll(x, parts["reconstruction"])
    kl1, kl2 = parts.get("kl1", torch.zeros_like(rec)), parts.get("kl2", torch.zeros_like(rec))
    terms = {"rec": rec, "kl": kl1 + kl2}
    if variant == "pchvae":
        terms["rec_high"] = nll(x, parts["high"])
        terms["zero"] = nll(torch.zeros_like(x), parts["zero"])
        terms["loss"] = l1 * terms["rec_high"] + l2 * rec + l3 * terms["zero"] + l4 * kl1 + l5 * kl2
    elif variant == "high":
        terms["loss"] = l1 * rec + l4 * kl1
    else:  # chvae: term 2 and both KLs; low: term 2 and KL2
        terms["loss"] = l2 * rec + l4 * kl1 + l5 * kl2
    return terms


@dataclass(frozen=True)
class PCHVAETrainConfig(AutoencoderTrainConfig):
    """A pchVAE run (thesis section 3.3: Adam 1e-4, batch 64, 10 epochs of 800 HCP scans; weights lambda1-5)."""

    z_dim: int = setting(16, "latent channels per position of each level (z1 at S/16, z2 at S/4)", ge=1)
    width: int = setting(32, "feature maps of the first level (levels: x1, 2, 4, 8)", ge=1)
    variant: Variant = setting("pchvae", "pchvae; or the ablations chvae (no high-level reconstruction, no term 3), "
                               "high (high-level VAE, 4 upsamplings), low (low-level VAE, 2 upsamplings)")  # fmt: skip
    lambda1: float = setting(1.0, "weight of the high-level reconstruction term (not given in the thesis)", ge=0.0)
    lambda2: float = setting(1.0, "weight of the full reconstruction term (thesis: lambda2 = lambda3)", ge=0.0)
    lambda3: float = setting(1.0, "weight of the residual-suppression term 3 (thesis: = lambda2)", ge=0.0)
    lambda4: float = setting(1.0, "weight of KL(q(z1|x) || N(0, I)) (not given)", ge=0.0)
    lambda5: float = setting(1.0, "weight of KL(q(z2|x, z1) || N(0, I)) (not given)", ge=0.0)

    @property
    def lambdas(self) -> tuple[float, float, float, float, float]:
        return self.lambda1, self.lambda2, self.lambda3, self.lambda4, self.lambda5


PCHVAE_PRESETS: dict[str, PCHVAETrainConfig] = {
    "thesis": PCHVAETrainConfig(zscore="volume"),
    # the VAE's small and tiny runs with a narrower network and fewer latent channels per position
    "small": dataclasses.replace(_small(PCHVAETrainConfig, width=16), z_dim=8),
    "tiny": dataclasses.replace(_tiny(PCHVAETrainConfig, width=4), z_dim=2),
}


class PCHVAETraining(AutoencoderTraining):
    """The pchVAE or an ablation: eq. 3.24 with one reparameterised sample of each latent."""

    variational = True
    loss_names = ("loss", "kl", "rec")
    curve_panels = (
        CurvePanel("loss (eq. 3.24)", (("loss", "loss (train)"),), log_scale=True, with_validation=True),
        CurvePanel("terms", (("kl", "KL1 + KL2"), ("rec", "L_rec(x, x^)"))),
    )

    @classmethod
    def build(cls, config: PCHVAETrainConfig) -> HierarchicalVAE:
        return HierarchicalVAE(config.variant, config.z_dim, config.width)

    def loss_terms(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        config = self.config
        with self.autocast():
            parts = self.networks[NETWORK](x, sample=True, generator=generator)
        terms = hierarchical_loss_terms(parts, x, config.variant, config.lambdas, config.likelihood, config.scale)
        return {name: terms[name] for name in self.loss_names}

    def sample_grid(self) -> SampleGrid:
        """Held-out inputs, their reconstructions x^ (posterior means) and |error|."""
        network = self.networks[NETWORK]
        outputs = self._held_out(lambda x, _: network(x, sample=False)["reconstruction"].float().cpu())
        inputs, reconstructions = self.validation_inputs[:GRID_SAMPLES], torch.cat(outputs)[:GRID_SAMPLES]
        clip = self.config.clip
        shown = [((images[:, 0] + clip) / (2 * clip)).clamp(0, 1).numpy() for images in (inputs, reconstructions)]
        error = ((inputs - reconstructions).abs()[:, 0] / clip).clamp(0, 1).numpy()
        return SampleGrid(side_by_side(*shown, error), ("input", "reconstruction", "|error|"))

    def describe(self) -> dict[str, object]:
        config = self.config
        return {"architecture": f"zimmerer-{config.variant}", "input_size": config.input_size, "z_dim": config.z_dim,
                "width": config.width, "likelihood": config.likelihood, "scale": config.scale,
                "intensity_normalisation": f"z-score inside the tissue, clipped to +-{config.clip}",
                "preprocessing": to_dict(self.chain)}  # fmt: skip


class HierarchicalScores:
    """The reconstruction maps and the negative ELBO of a trained ``HierarchicalVAE`` (posterior means)."""

    def __init__(self, network: HierarchicalVAE, likelihood: Likelihood, scale: float):
        self.network, self.likelihood, self.scale = network, likelihood, scale

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """x^ with posterior means, (N, 1, S, S) float32."""
        return self.network(x, sample=False)["reconstruction"].float()

    @torch.no_grad()
    def terms(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(KL1 + KL2, L_rec(x, x^)) per sample, (N,) nats each."""
        parts = self.network(x, sample=False)
        kl = parts.get("kl1", 0) + parts.get("kl2", 0)
        return kl, reconstruction_nll(x, parts["reconstruction"].float(), self.likelihood, self.scale)

    @torch.no_grad()
    def maps(self, x: torch.Tensor, names: Iterable[str], options: GradientOptions, n_samples: int = 0,
             seed: int = 0) -> dict[str, torch.Tensor]:  # fmt: skip
        error = (x - self.network(x, sample=False)["reconstruction"]).abs()[:, 0]
        out = {"rec": error}
        if "rec-smoothed" in names:
            out["rec-smoothed"] = gaussian_smooth(error, options.taps, options.sigma)
        return {name: out[name].float() for name in names}


@dataclass(frozen=True)
class PCHVAESettings(ChainedAutoencoderSettings):
    """How the pchVAE scores an image: its reconstruction error; image score the negative ELBO (thesis 3.3.4)."""

    score: str = setting("rec", "score of the heatmap: rec (|x - x^|) or rec-smoothed", choices=DAE_SCORES)


@register_method("pchvae")
class PCHVAE(_Autoencoder):
    """Zimmerer's pchVAE (thesis section 3.3), two-level hierarchical VAE; ablations chvae, high, low by variant."""

    settings_class = PCHVAESettings
    train_config_class = PCHVAETrainConfig
    step_class = PCHVAETraining
    score_names = DAE_SCORES
    presets = PCHVAE_PRESETS
    default_preset = "thesis"

    @classmethod
    def describe_architecture(cls, train: PCHVAETrainConfig) -> list[str]:
        network = PCHVAETraining.build(train)
        millions = sum(p.numel() for p in network.parameters()) / 1e6
        return [f"{train.variant}: stem 2 x (4x4 conv, stride 2) to S/4; z1 ({train.z_dim} channels) at S/16, "
                f"z2 ({train.z_dim} channels) at S/4; width {train.width}",
                f"{train.input_size} x {train.input_size} px input: {millions:.2f} M parameters"]  # fmt: skip

    def _scores(self) -> HierarchicalScores:
        return HierarchicalScores(self.network, self.train_config.likelihood, self.train_config.scale)
