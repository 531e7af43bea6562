"""Inference time per 256 px patch and per full DBT slice of PICARD, CutPaste and PatchSVDD, side by side.

The speed column of the PICARD paper's Table 2 (Konz et al. 2023), measured in one run on this machine, each method
at the paper's settings with its default execution options and random weights (weights do not change the cost):

- PICARD: M = 10 completions of a 128 px hole per 256 px window (cnum 32 generator, the "reference" dropout layers,
  MCD score), on tissue windows of the slice.
- CutPaste: the ResNet-18 embedding of a 256 px window and its Mahalanobis distance (``cutpaste.speed``), with the
  default execution (bf16, fused) and, on the CPU, with the encoder in int8 (``int8: true``).
- PatchSVDD: the hierarchical encoder on a 256 px window and its centred 128 px half, and the exact search of both
  features among ``--bank-size`` normal features per scale (``patchsvdd.speed``: a synthetic but clustered bank; a
  brute-force search of one window is timed too, what the paper's 4.13 s measured).

The slice is a 2457 x 1996 phantom (0.1 mm pixels, the size of a BCS-DBT slice); its time is its tissue windows (256
px, stride 32, background skipped) times the seconds per window. Window cutting and heatmap assembly, the same for
every method and a few seconds per slice, are left out. For CutPaste, whose time is its convolutions, the achieved
TFLOP/s is printed beside a bf16 convolution peak measured in the same run (``bench_heatmap.conv_peak_tflops``).

    python benchmarks/bench_comparators.py                     # about 4 minutes on a 2-core CPU
    python benchmarks/bench_comparators.py --device cuda
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch
from bench_heatmap import conv_peak_tflops  # this folder's heatmap benchmark

from picard_ad.data.phantoms import PhantomConfig, generate_phantom
from picard_ad.data.tissue import tissue_mask
from picard_ad.localize import reuse_freed_memory
from picard_ad.localize.windows import WindowGrid, extract_windows, tissue_windows
from picard_ad.methods.cutpaste import speed as cutpaste_speed
from picard_ad.methods.cutpaste.config import PRESETS as CUTPASTE_PRESETS
from picard_ad.methods.cutpaste.encoder import ResNet18Encoder, multiply_adds
from picard_ad.methods.cutpaste.settings import CutPasteSettings
from picard_ad.methods.patchsvdd import speed as patchsvdd_speed
from picard_ad.methods.picard import InpaintingGenerator, resolve_dropout_layers
from picard_ad.methods.picard.engine import CompletionEngine

PATCH, MASK, STRIDE, CNUM, M = 256, 128, 32, 32, 10
SLICE_SHAPE = (2457, 1996)
PAPER_SECONDS_PER_PATCH = {"PICARD": 0.062, "CutPaste": 0.087, "PatchSVDD": 4.13}  # Table 2, on the authors' GPU


def picard_seconds_per_window(image: np.ndarray, grid: WindowGrid, tissue: np.ndarray, windows: int,
                              device: torch.device) -> float:  # fmt: skip
    """Wall seconds per window of PICARD's M completions and MCD score over ``windows`` tissue windows spread over
    the slice, after one untimed window (kernel building and batch sizing happen once per run)."""
    engine = CompletionEngine(
        InpaintingGenerator(1, CNUM), None, mask_size=MASK, n_completions=M,
        dropout_layers=resolve_dropout_layers("reference"), seed=1337, device=device, bf16=True, channels_last=True,
    )  # fmt: skip
    scorer = engine.scorer(["mcd-image"])
    chosen = tissue[np.linspace(0, len(tissue) - 1, min(windows, len(tissue))).round().astype(int)]
    scorer(extract_windows(image, grid, chosen[:1]), chosen[:1])
    chunk = engine.preferred_chunk(PATCH, ["mcd-image"])
    started = time.perf_counter()
    for start in range(0, len(chosen), chunk):
        part = chosen[start : start + chunk]
        scorer(extract_windows(image, grid, part), part)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - started) / len(chosen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda [cpu]")
    parser.add_argument("--picard-windows", type=int, default=12, help="tissue windows PICARD is timed on [12]")
    parser.add_argument("--windows", type=int, default=256, help="windows CutPaste and PatchSVDD are timed on [256]")
    parser.add_argument("--bank-size", type=int, default=1_000_000, help="PatchSVDD features per scale [1000000]")
    parser.add_argument("--seed", type=int, default=0, help="phantom and weight seed [0]")
    args = parser.parse_args()

    device = torch.device(args.device)
    reuse_freed_memory()
    torch.manual_seed(args.seed)
    threads = torch.get_num_threads()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, {threads} threads, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))  # fmt: skip
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    image = generate_phantom(PhantomConfig(size=SLICE_SHAPE, pixel_spacing_mm=0.1), seed=args.seed).image
    grid = WindowGrid.cover(image.shape, PATCH, MASK, STRIDE)
    tissue = np.flatnonzero(tissue_windows(grid, tissue_mask(image, 0.02)).ravel())
    print(f"slice {SLICE_SHAPE[0]} x {SLICE_SHAPE[1]}: {grid.n_windows} windows of {PATCH} px at stride {STRIDE}, "
          f"{len(tissue)} with tissue (the rest skipped as background)")

    seconds: dict[str, float] = {}
    notes: dict[str, str] = {}
    seconds["PICARD"] = picard_seconds_per_window(image, grid, tissue, args.picard_windows, device)
    notes["PICARD"] = f"M = {M} completions, bf16, {args.picard_windows} windows timed"
    timing = cutpaste_speed.seconds_per_window(
        CUTPASTE_PRESETS["paper"], CutPasteSettings(device=args.device), windows=args.windows, seed=args.seed
    )
    seconds["CutPaste"] = timing.seconds_per_window
    cutpaste_flops = 2 * multiply_adds(ResNet18Encoder(timing.width), PATCH)
    notes["CutPaste"] = (f"ResNet-18 width {timing.width}, bf16 {timing.bf16}, fused {timing.fused}, "
                         f"{timing.windows} windows timed")  # fmt: skip
    if device.type == "cpu":
        quantized = cutpaste_speed.seconds_per_window(
            CUTPASTE_PRESETS["paper"], CutPasteSettings(device=args.device, int8=True), windows=args.windows,
            seed=args.seed,
        )  # fmt: skip
        seconds["CutPaste int8"] = quantized.seconds_per_window
        notes["CutPaste int8"] = f"the same encoder in int8 (int8: true), {quantized.windows} windows timed"
    report = patchsvdd_speed.measure_speed(bank_size=args.bank_size, windows=args.windows, device=args.device,
                                           brute_force_windows=1, seed=args.seed)  # fmt: skip
    seconds["PatchSVDD"] = report.seconds_per_window
    notes["PatchSVDD"] = (f"exact search of {report.bank_windows:,} features per scale (encoder "
                          f"{report.encoder_s_per_window:.4f} s, search {report.search_s_per_window:.4f} s; brute "
                          f"force {report.brute_force_s_per_window:.2f} s per window), float32")  # fmt: skip

    print(f"\n{'method':<13} {'paper s/patch':>13} {'ours s/patch':>12} {'faster':>7} {'slice (min)':>11}  how")
    for method, per_window in seconds.items():
        paper = PAPER_SECONDS_PER_PATCH[method.split()[0]]
        print(f"{method:<13} {paper:>13.3f} {per_window:>12.4f} {paper / per_window:>6.1f}x "
              f"{per_window * len(tissue) / 60:>11.1f}  {notes[method]}")  # fmt: skip
    print("(paper: Konz et al. 2023, Table 2, on their GPU; slice: the tissue windows above times s/patch)")
    torch.set_num_threads(threads)  # the executors leave one thread per process; the peak uses every core
    peak, shape = conv_peak_tflops(device)
    achieved = cutpaste_flops / seconds["CutPaste"] / 1e12
    print(f"CutPaste: {cutpaste_flops / 1e9:.2f} GFLOP per window (convolutions), {achieved:.3f} TFLOP/s achieved, "
          f"{achieved / peak:.0%} of the measured bf16 convolution peak {peak:.3f} TFLOP/s (3x3, {shape})")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
