"""Window anomaly scores: completion distances (PICARD) and Swiecicki et al.'s single-completion scores.

PICARD (Konz et al. 2023, eq. 1, 21, 22) compares a window's ground-truth hole with M pluralistic completions
and reduces the M distances by their minimum (MCD), mean or median; distances are taken in image space or in
the feature space phi of the local critic. Two reductions between the minimum and the mean are added for the
study of issue 17 (docs/picard-study.md): a low quantile, and a soft minimum with a temperature; each of them also
comes calibrated on normal windows ("calibrated-" + its name, ``picard_ad.methods.picard.calibration``). Swiecicki
et al. 2021 score one deterministic completion by its mean squared error over the hole, by the critic, and by the
product of the two (DMSE).

All distances are in the network's [-1, 1] intensity units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from picard_ad.errors import ConfigError

Reduction = Literal["mcd", "mean", "median", "quantile", "softmin"]
Space = Literal["image", "feature"]

PLURALISTIC_SCORES: tuple[str, ...] = (
    "mcd-image", "mcd-feature", "mean-image", "mean-feature", "median-image", "median-feature",
    "quantile-image", "quantile-feature", "softmin-image", "softmin-feature",
)  # fmt: skip
"""Scores computed from the M dropout completions of a window."""

CALIBRATED_PREFIX = "calibrated-"
CALIBRATED_SCORES: tuple[str, ...] = tuple(CALIBRATED_PREFIX + name for name in PLURALISTIC_SCORES)
"""A completion-distance score as a z-score among normal windows of similar context
(``picard_ad.methods.picard.calibration``)."""

DETERMINISTIC_SCORES: tuple[str, ...] = ("mse", "critic", "dmse")
"""Swiecicki et al.'s scores of the single completion of the network without dropout."""

RAW_SCORES: tuple[str, ...] = PLURALISTIC_SCORES + DETERMINISTIC_SCORES
"""The scores the completion engine computes from a window alone."""

SCORE_NAMES: tuple[str, ...] = PLURALISTIC_SCORES + CALIBRATED_SCORES + DETERMINISTIC_SCORES
"""Every score name, as used by ``--score``, ``PicardSettings.score`` and ``Heatmap.score_name``."""


@dataclass(frozen=True)
class ScoreNeeds:
    """What a set of scores needs from the networks.

    pluralistic: the M dropout completions; deterministic: one completion without dropout; critic_features:
    phi of the ground truth and of the completions; critic_output: the critic's score of the deterministic
    completion.
    """

    pluralistic: bool
    deterministic: bool
    critic_features: bool
    critic_output: bool


def check_score_names(names: tuple[str, ...] | list[str], valid: tuple[str, ...] = SCORE_NAMES) -> tuple[str, ...]:
    """Return ``names`` as a tuple without duplicates (order kept); ConfigError names one not in ``valid``."""
    if isinstance(names, str):
        names = (names,)
    unknown = [name for name in names if name not in valid]
    if unknown:
        raise ConfigError(f"unknown score {unknown[0]!r}; valid scores: {', '.join(valid)}")
    if not names:
        raise ConfigError(f"no score requested; valid scores: {', '.join(valid)}")
    return tuple(dict.fromkeys(names))


def uncalibrated(name: str) -> str:
    """The raw score a calibrated score z-scores ("calibrated-mcd-image" -> "mcd-image"); other names unchanged."""
    return name.removeprefix(CALIBRATED_PREFIX)


def score_needs(names: tuple[str, ...]) -> ScoreNeeds:
    """Which network passes the scores ``names`` need."""
    names = tuple(uncalibrated(name) for name in check_score_names(names))
    return ScoreNeeds(
        pluralistic=any(name in PLURALISTIC_SCORES for name in names),
        deterministic=any(name in DETERMINISTIC_SCORES for name in names),
        critic_features=any(name.endswith("-feature") for name in names),
        critic_output=any(name in ("critic", "dmse") for name in names),
    )


def parse_pluralistic(name: str) -> tuple[Reduction, Space]:
    """("mcd" | "mean" | "median", "image" | "feature") of a pluralistic score name such as "mcd-image"."""
    if name not in PLURALISTIC_SCORES:
        raise ConfigError(f"{name!r} is not a completion-distance score; those are {', '.join(PLURALISTIC_SCORES)}")
    reduction, space = name.split("-")
    return reduction, space  # type: ignore[return-value]


def image_distances(ground_truth: torch.Tensor, completions: torch.Tensor) -> torch.Tensor:
    """L2 distance between each window's hole and each of its completions, over all C x m x m values.

    ground_truth: (K, C, m, m) hole contents in [-1, 1]. completions: (K, M, C, m, m) completed holes.
    Returns (K, M) float32: ||gt - c||_2, not squared and not divided by the pixel count.
    """
    if completions.ndim != 5 or ground_truth.shape != completions.shape[:1] + completions.shape[2:]:
        raise ValueError(
            f"need ground truth (K, C, m, m) and completions (K, M, C, m, m), got {tuple(ground_truth.shape)} "
            f"and {tuple(completions.shape)}"
        )
    difference = completions.float() - ground_truth.float().unsqueeze(1)
    return torch.linalg.vector_norm(difference.flatten(start_dim=2), dim=2)


def feature_distances(ground_truth_features: torch.Tensor, completion_features: torch.Tensor) -> torch.Tensor:
    """L2 distance in the critic's feature space: ||phi(gt) - phi(c)||_2.

    ground_truth_features: (K, F). completion_features: (K, M, F). Returns (K, M) float32.
    """
    if completion_features.ndim != 3 or ground_truth_features.shape != (
        completion_features.shape[0],
        completion_features.shape[2],
    ):
        raise ValueError(
            f"need features (K, F) and (K, M, F), got {tuple(ground_truth_features.shape)} and "
            f"{tuple(completion_features.shape)}"
        )
    difference = completion_features.float() - ground_truth_features.float().unsqueeze(1)
    return torch.linalg.vector_norm(difference, dim=2)


def reduce_distances(distances: torch.Tensor, reduction: Reduction, quantile: float = 0.1,
                     temperature: float = 0.1) -> torch.Tensor:  # fmt: skip
    """One score per window from its M completion distances.

    distances: (K, M). reduction: "mcd" (minimum, eq. 1), "mean" (eq. 21), "median" (eq. 22; the lower of the two
    middle values for even M, as ``torch.median``), "quantile" (the ``quantile`` quantile, linear interpolation
    between order statistics: 0 is the minimum) or "softmin" (-t log mean exp(-d / t), with t = ``temperature``
    times the window's mean distance, so it does not depend on the distances' units: towards 0 the minimum, large
    the mean). Returns (K,) in the units of ``distances``.
    """
    if distances.ndim != 2 or distances.shape[1] < 1:
        raise ValueError(f"distances must be (K, M) with M >= 1, got {tuple(distances.shape)}")
    if distances.shape[0] == 0:  # torch.quantile refuses an empty input
        return distances.new_zeros(0, dtype=torch.float32)
    if reduction == "mcd":
        return distances.min(dim=1).values
    if reduction == "mean":
        return distances.mean(dim=1)
    if reduction == "median":
        return distances.median(dim=1).values
    if reduction == "quantile":
        return torch.quantile(distances.float(), quantile, dim=1)
    if reduction == "softmin":
        distances = distances.double()
        nearest = distances.min(dim=1, keepdim=True).values
        scale = (temperature * distances.mean(dim=1, keepdim=True)).clamp_min(torch.finfo(torch.float64).tiny)
        # shifted by the minimum, so exp never underflows to a log of zero
        spread = -scale * torch.log(torch.exp(-(distances - nearest) / scale).mean(dim=1, keepdim=True))
        return (nearest + spread).squeeze(1).float()
    raise ValueError(f"reduction must be one of mcd, mean, median, quantile, softmin, got {reduction!r}")


def hole_mse(ground_truth: torch.Tensor, completion: torch.Tensor) -> torch.Tensor:
    """Swiecicki et al.'s MSE: mean of (gt - c)^2 over the C x m x m hole values.

    ground_truth, completion: (K, C, m, m) in [-1, 1]. Returns (K,) float32 in squared [-1, 1] units.
    """
    if ground_truth.shape != completion.shape or ground_truth.ndim != 4:
        raise ValueError(
            f"need two (K, C, m, m) tensors, got {tuple(ground_truth.shape)} and {tuple(completion.shape)}"
        )
    return (completion.float() - ground_truth.float()).square().flatten(start_dim=1).mean(dim=1)


def critic_loss(critic_output: torch.Tensor) -> torch.Tensor:
    """A positive critic loss of a completion: softplus(-D(c)) = log(1 + exp(-D(c))).

    critic_output: (K,) or (K, 1) raw WGAN critic outputs D(c) of the completed holes; unbounded and signed,
    higher meaning "more like the normal training data". Returns (K,) float32 > 0.

    Swiecicki et al. score a completion by the discriminator's loss on it and multiply that by the MSE (DMSE),
    which needs a positive factor that grows as the completion looks less real. A WGAN critic has no such loss:
    its generator term is -D(c), which is signed. softplus(-D) is the smooth positive version of it: it tends
    to -D(c) where the critic rejects the completion (D << 0), to 0 where it accepts it (D >> 0), is
    monotone in D (so it ranks windows exactly as -D does), and equals the standard GAN generator loss
    -log(sigmoid(D)) that Swiecicki's discriminator loss is, had D been a logit.
    """
    return F.softplus(-critic_output.float().reshape(-1))


def dmse(mse: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
    """Swiecicki et al.'s DMSE: MSE x critic loss, both (K,). Returns (K,)."""
    return mse * loss


def critic_input(holes: torch.Tensor, input_size: int) -> torch.Tensor:
    """Holes resized (nearest) to the critic's input side, as the reference does when mask_size != 128.

    holes: (N, C, m, m). Returns (N, C, input_size, input_size); ``holes`` itself when m == input_size.
    """
    if holes.shape[-1] == input_size and holes.shape[-2] == input_size:
        return holes
    return F.interpolate(holes, size=(input_size, input_size), mode="nearest")
