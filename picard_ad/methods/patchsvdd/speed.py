"""Seconds per 256 px window of PatchSVDD at the paper's geometry on this machine, nearest-neighbour search included,
and a whole DBT slice extrapolated from them.

    python -m picard_ad.methods.patchsvdd.speed                          # about 2 minutes on 2 CPU cores
    python -m picard_ad.methods.patchsvdd.speed --bank-size 4000000 --bf16

The encoder is the paper preset's, untrained (its weights do not change the cost): 256 px windows, each encoded with
its centred 128 px half, then both features searched in a bank of ``bank_size`` features per scale for their nearest
neighbour. Encoding a million real windows would take hours here, so the bank is synthetic but clustered like real
features: the features of ``BASE_WINDOWS`` real phantom windows, each row one of them plus Gaussian noise a quarter
of their typical nearest-neighbour distance, so every query has many close rows and the exact search many
candidates to check. Windows are tissue windows of a 2457 x 1996 phantom slice (0.1 mm pixels, the size of a
BCS-DBT slice) at stride 32; the slice's time is its tissue windows times the measured seconds per window.
``measure_speed`` returns the numbers for a combined benchmark.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from picard_ad.data.phantoms import PhantomConfig, generate_phantom
from picard_ad.device import resolve_device
from picard_ad.localize.windows import extract_windows
from picard_ad.methods.patchsvdd.bank import BankGeometry, FeatureBank
from picard_ad.methods.patchsvdd.config import PRESETS
from picard_ad.methods.patchsvdd.features import WindowFeatures
from picard_ad.methods.patchsvdd.method import PatchSVDD
from picard_ad.methods.patchsvdd.search import brute_force_neighbours
from picard_ad.methods.patchsvdd.settings import PatchSVDDSettings
from picard_ad.methods.patchsvdd.training import build_networks

PAPER_SECONDS_PER_WINDOW = 4.13  # Konz et al. 2023, Table 2: PatchSVDD, per 256 px patch
SLICE_SHAPE = (2457, 1996)  # a BCS-DBT slice, px
BASE_WINDOWS = 512  # real windows whose features seed the synthetic bank


@dataclass(frozen=True)
class SpeedReport:
    """Measured seconds per window (encoder, search of both scales, their sum) and a whole slice extrapolated.

    brute_force_s_per_window: the two brute-force searches of one window over the same bank (``search``'s
    ``brute_force_neighbours``, float64 like the exact search's check), for comparison; None when not measured.
    """

    device: str
    threads: int
    bf16: bool
    search: str
    bank_windows: int
    measured_windows: int
    encoder_s_per_window: float
    search_s_per_window: float
    seconds_per_window: float
    brute_force_s_per_window: float | None
    slice_windows: int
    slice_tissue_windows: int
    slice_seconds: float
    speedup_over_paper: float


def synthetic_bank(features: WindowFeatures, windows: np.ndarray, size: int, seed: int) -> FeatureBank:
    """A clustered bank of ``size`` features per scale grown from the features of real ``windows`` (N, K, K)."""
    rng = np.random.default_rng(seed)
    base = dict(zip(("window", "centre"), (values.numpy() for values in features(windows))))
    rows = rng.integers(len(windows), size=size)
    bank = {}
    for scale, values in base.items():
        squared = ((values[:, None] - values[None]) ** 2).sum(-1) + np.diag(np.full(len(values), np.inf))
        spread = 0.25 * np.median(np.sqrt(squared.min(axis=1))) / np.sqrt(values.shape[1])
        bank[scale] = (values[rows] + rng.normal(scale=spread, size=(size, values.shape[1]))).astype(np.float32)
    return FeatureBank(bank, {"patch_size": features.patch_size, "synthetic": True})


def measure_speed(
    *,
    bank_size: int = 1_000_000,
    windows: int = 256,
    bf16: bool = False,
    search: str = "exact",
    device: str = "cpu",
    brute_force_windows: int = 2,
    slice_shape: tuple[int, int] = SLICE_SHAPE,
    base_windows: int = BASE_WINDOWS,
    seed: int = 0,
) -> SpeedReport:
    """Time PatchSVDD's paper geometry on ``windows`` tissue windows of a phantom slice (see the module's doc).

    bank_size: features per scale; search: "exact" or "approximate" (with the settings' defaults); device: where
    the encoder and the exact search run; brute_force_windows: windows also searched by brute force (0: none);
    slice_shape: (H, W) px of the phantom slice (0.1 mm pixels at the default); base_windows: real windows whose
    features seed the synthetic bank.
    """
    train = PRESETS["paper"]
    torch.manual_seed(seed)
    encoder = build_networks(train)["encoder"]
    settings = PatchSVDDSettings(device=device, bf16=bf16, search=search)
    geometry = BankGeometry(train.patch_size, train.bank_stride, settings.tissue_threshold, 0.0)
    image, grid, tissue = geometry.windows(generate_phantom(PhantomConfig().resized(slice_shape), seed=seed).image)
    if len(tissue) < windows + base_windows:
        raise ValueError(f"the slice has {len(tissue)} tissue windows, fewer than {windows} + {base_windows} asked for")
    chosen = np.random.default_rng(seed).permutation(tissue)[: windows + base_windows]
    timed, base = np.sort(chosen[:windows]), np.sort(chosen[windows:])
    base_features = WindowFeatures(encoder, device=resolve_device(device), bf16=bf16, batch_size=None)
    bank = synthetic_bank(base_features, extract_windows(image, grid, base), bank_size, seed)
    method = PatchSVDD.from_parts(encoder, bank, train, settings)
    features = method.window_features()
    cut = extract_windows(image, grid, timed)
    warm = cut[: features.batch_size()]
    for scale, values in zip(("window", "centre"), features(warm)):  # sizes the batches, builds the indexes
        method.index(scale).search(values)
    encoder_s = search_s = 0.0
    chunk = features.preferred_chunk()
    for start in range(0, len(cut), chunk):
        started = time.perf_counter()
        both = features(cut[start : start + chunk])
        encoded = time.perf_counter()
        for scale, values in zip(("window", "centre"), both):
            method.index(scale).search(values, settings.n_neighbours)
        encoder_s += encoded - started
        search_s += time.perf_counter() - encoded
    brute_s = None
    if brute_force_windows:
        started = time.perf_counter()
        for scale, values in zip(("window", "centre"), features(cut[:brute_force_windows])):
            brute_force_neighbours(values.numpy(), bank.features[scale], settings.n_neighbours)
        brute_s = (time.perf_counter() - started) / brute_force_windows
    per_window = (encoder_s + search_s) / len(cut)
    return SpeedReport(
        device=str(features.device),
        threads=torch.get_num_threads(),
        bf16=bf16,
        search=search,
        bank_windows=bank_size,
        measured_windows=len(cut),
        encoder_s_per_window=round(encoder_s / len(cut), 5),
        search_s_per_window=round(search_s / len(cut), 5),
        seconds_per_window=round(per_window, 5),
        brute_force_s_per_window=None if brute_s is None else round(brute_s, 3),
        slice_windows=grid.n_windows,
        slice_tissue_windows=len(tissue),
        slice_seconds=round(per_window * len(tissue), 1),
        speedup_over_paper=round(PAPER_SECONDS_PER_WINDOW / per_window, 1),
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bank-size", type=int, default=1_000_000, help="features per scale in the bank")
    parser.add_argument("--windows", type=int, default=256, help="tissue windows timed")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast of the encoder")
    parser.add_argument("--search", choices=("exact", "approximate"), default="exact")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--brute-force-windows", type=int, default=2, help="windows searched by brute force too")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    report = measure_speed(bank_size=args.bank_size, windows=args.windows, bf16=args.bf16, search=args.search,
                           device=args.device, brute_force_windows=args.brute_force_windows,
                           seed=args.seed)  # fmt: skip
    print(json.dumps(dataclasses.asdict(report), indent=1))


if __name__ == "__main__":
    main()
