"""Seconds to score one 240 x 240 x 155 brain volume with every score of Zimmerer's VAE family (issue 12's goal: 20 s).

Networks of each method's ``small`` preset architecture with untrained weights (the weights do not change the cost),
on a phantom volume in [0, 1] with an ellipsoidal brain-like mask (or ``--volume``): each score is timed over
``--slices`` axial slices (evenly spread, default all 155) through the method's own path, ``heatmap`` per slice for a
pixel score (resizing to the model input and back, gradients included) and ``image_score`` per slice for a sample
score (what ``picard-ad mood --task sample`` takes the maximum of). Scores: vae rec, rec-smoothed, elbo-grad,
kl-grad, rec-grad, combi, sampling-variance; dae rec; cevae combi, kl-grad; cradl nll-grad; pchvae rec; and each
method's sample score (vae, cevae, pchvae: KL + rec; dae: rec; cradl: the negative log-likelihood, under an
untrained 8-component mixture). With fewer than 155 slices the volume time is extrapolated from the rate, and says
so. A ``--volume`` file's slices are scored with their origin, as ``picard-ad heatmap`` and ``mood`` score them, so
the small presets' per-patient z-score uses the volume's statistics; computing those (once per volume, then cached)
is timed and printed on its own. The phantom, an array, is z-scored per slice.

    python benchmarks/bench_vae_volume.py                          # the full measurement (minutes on 2 cores)
    python benchmarks/bench_vae_volume.py --methods vae,cradl --threads 2
    python benchmarks/bench_vae_volume.py --slices 2               # a smoke run
    python benchmarks/bench_vae_volume.py --volume BRATS_FLAIR.nii.gz
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from picard_ad.io import SliceOrigin
from picard_ad.methods import AnomalyMethod, create_method
from picard_ad.methods.vae import VAE_SCORES
from picard_ad.methods.vae.cradl import ENCODER, build_networks
from picard_ad.methods.vae.data import RAW_CHAIN, Preprocessing, volume_statistics
from picard_ad.methods.vae.gmm import fit_mixture

SHAPE = (240, 240, 155)  # the volume: BraTS geometry, 1 mm voxels
GOAL_SECONDS = 20.0  # the limit for scoring such a volume with any score on the 2-core CPU
MIXTURE_COMPONENTS = 8  # the largest K CRADL selects among: the costliest negative log-likelihood
SCORES = {
    "vae": VAE_SCORES,
    "dae": ("rec",),
    "cevae": ("combi", "kl-grad"),
    "cradl": ("nll-grad",),
    "pchvae": ("rec",),
}
"""Pixel scores timed per method; each method's sample score is timed as well."""


@dataclass(frozen=True)
class Timing:
    """One score's time over the slices scored and its volume time (extrapolated when fewer slices were scored)."""

    method: str
    score: str
    seconds: float
    n_slices: int
    depth: int

    @property
    def per_volume(self) -> float:
        return self.seconds / self.n_slices * self.depth


def phantom_volume(shape: tuple[int, int, int] = SHAPE, seed: int = 0) -> np.ndarray:
    """A brain-like float32 volume in [0, 1]: an ellipsoid of smooth tissue texture (0.25-0.75) with a darker
    ventricle-like core and a brighter rim, zero outside; about 80 % of the slices hold tissue."""
    rng = np.random.default_rng(seed)
    axes = [np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in shape]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    radius = np.sqrt((x / 0.75) ** 2 + (y / 0.85) ** 2 + (z / 0.8) ** 2)
    texture = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma=3.0)
    texture = 0.5 + 0.25 * texture / max(float(np.abs(texture).max()), 1e-6)
    volume = np.where(radius < 1.0, texture, 0.0)
    volume = np.where(radius < 0.3, 0.6 * volume, volume)
    volume = np.where((radius > 0.9) & (radius < 1.0), np.minimum(volume + 0.2, 1.0), volume)
    return np.clip(volume, 0.0, 1.0).astype(np.float32)


def slice_indices(depth: int, n: int) -> list[int]:
    """``n`` distinct slice indices spread evenly over the interior of ``depth`` slices (all when n >= depth)."""
    if n >= depth:
        return list(range(depth))
    return sorted({int(round(i)) for i in np.linspace(0, depth - 1, n + 2)[1:-1]})


Slice = tuple[np.ndarray, SliceOrigin | None]
"""A slice to score, (H, W) float32 in [0, 1], and the file slice it was read from (None for the phantom)."""


def volume_slices(path: Path | None, n: int) -> tuple[list[Slice], int, str]:
    """(the slices to score with their origins; the volume's depth; what the volume is)."""
    if path is None:
        volume = phantom_volume()
        return [(volume[:, :, i], None) for i in slice_indices(SHAPE[2], n)], SHAPE[2], f"phantom {SHAPE}"
    from picard_ad.io import iter_slices, read_header

    shape = tuple(int(size) for size in read_header(path).stored_shape[:3])
    chosen = slice_indices(shape[2], n)
    slices = [(image.pixels, SliceOrigin(path, image.meta.slice_index)) for image in iter_slices(path, chosen, axis=2)]
    return slices, shape[2], f"{path} {shape}"


def statistics_seconds(path: Path) -> float:
    """Seconds to compute a volume's per-patient z-score statistics at the small presets' 64 px input (uncached)."""
    started = time.perf_counter()
    volume_statistics(SliceOrigin(path), RAW_CHAIN, Preprocessing(64, zscore="volume"))
    return time.perf_counter() - started


def untrained_method(name: str) -> AnomalyMethod:
    """The method with networks of its ``small`` preset and untrained weights, on the CPU, scoring as fitted."""
    torch.manual_seed(0)
    method = create_method(name, preset="small", settings={"device": "cpu"})
    config = method.train_config
    if name == "cradl":
        method.encoder = build_networks(config)[ENCODER].eval()
        dimensions = 8 * config.width
        samples = torch.randn(16 * MIXTURE_COMPONENTS, dimensions, generator=torch.Generator().manual_seed(0))
        method.mixture = fit_mixture(samples, MIXTURE_COMPONENTS, config.covariance, reg_covar=config.reg_covar)
    else:
        method.network = method.step_class.build(config).eval()
    method.fitted = True
    return method


def timed(run: Callable[[np.ndarray, SliceOrigin | None], object], slices: list[Slice]) -> float:
    """Seconds to run ``run`` on every slice, after one warm-up slice (not counted)."""
    run(*slices[0])
    started = time.perf_counter()
    for image, origin in slices:
        run(image, origin)
    return time.perf_counter() - started


def timings(methods: list[str], slices: list[Slice], depth: int) -> Iterator[Timing]:
    """Each method's pixel scores, then its sample score, one at a time."""
    for name in methods:
        method = untrained_method(name)
        for score in SCORES[name]:
            seconds = timed(lambda image, origin, score=score: method.heatmap(image, score, origin=origin), slices)
            yield Timing(name, score, seconds, len(slices), depth)
        sample = method.sample_score_name()
        seconds = timed(lambda image, origin: method.image_score(image, origin=origin), slices)
        yield Timing(name, f"sample: {sample}", seconds, len(slices), depth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default=",".join(SCORES), help=f"comma-separated, of {', '.join(SCORES)} [all]")
    parser.add_argument("--slices", type=int, default=SHAPE[2], help=f"slices scored per score [{SHAPE[2]}: all]")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads [torch's default]")
    parser.add_argument("--volume", type=Path, default=None, help="score this NIfTI volume instead of the phantom")
    args = parser.parse_args()
    methods = [name.strip() for name in args.methods.split(",") if name.strip()]
    unknown = [name for name in methods if name not in SCORES]
    if unknown or not methods:
        parser.error(f"unknown method {unknown[0]!r}; choose from {', '.join(SCORES)}" if unknown else "no method")
    if args.slices < 1:
        parser.error("--slices must be at least 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    slices, depth, what = volume_slices(args.volume, args.slices)
    extrapolated = len(slices) < depth
    print(f"volume: {what}; {len(slices)} of {depth} slices scored per score"
          + (", volume times extrapolated from their rate" if extrapolated else ""))
    cpu = platform.processor() or platform.machine()
    print(f"networks: each method's 'small' preset architecture, UNTRAINED weights (timing only; the scores mean "
          f"nothing); CPU ({cpu}), {torch.get_num_threads()} torch threads; torch {torch.__version__}")  # fmt: skip
    print(f"goal: at most {GOAL_SECONDS:g} s per 240 x 240 x 155 volume with any score (issue 12)"
          + ("; the verdicts below are for the volume given" if args.volume is not None else ""))
    if args.volume is not None:
        print(f"per-patient z-score statistics of the volume: {statistics_seconds(args.volume):.2f} s, once per volume "
              "(not in the times below)")  # fmt: skip
    print()
    header = f"{'method':<8} {'score':<22} {'s / slice':>10} {'s / volume':>11}  goal"
    print(header)
    print("-" * len(header))
    results = []
    for timing in timings(methods, slices, depth):
        results.append(timing)
        verdict = "meets" if timing.per_volume <= GOAL_SECONDS else "MISSES"
        print(f"{timing.method:<8} {timing.score:<22} {timing.seconds / timing.n_slices:>10.4f} "
              f"{timing.per_volume:>10.2f}{'*' if extrapolated else ' '}  {verdict}", flush=True)  # fmt: skip
    missed = [f"{t.method} {t.score}" for t in results if t.per_volume > GOAL_SECONDS]
    print()
    if extrapolated:
        print(f"* extrapolated to {depth} slices from {len(slices)}")
    print(f"{len(results) - len(missed)} of {len(results)} scores meet the {GOAL_SECONDS:g} s goal"
          + (f"; missing: {', '.join(missed)}" if missed else ""))


if __name__ == "__main__":
    main()
