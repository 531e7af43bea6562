"""Speed of PICARD heatmapping on one full-size DBT-like slice at the paper's settings.

One 2457 x 1996 phantom (0.1 mm pixels, about half background), a randomly initialised cnum-32 generator
(weights do not change the cost), M = 10 completions per 256 px window with a 128 px hole, stride 32.

Prints the window counts, completions per second, achieved TFLOP/s (effective: the full generator's FLOPs
counted analytically, attention included; executed: the FLOPs the engine really runs, with the decoders and
attention restricted to the hole's receptive field), a bf16 convolution peak measured on the same machine in the
same run, the fraction of that peak, and the time of a whole slice with and without background skipping. By
default a subset of the tissue windows is run and the whole slice extrapolated from its rate (and says so);
--full runs all of them.

    python benchmarks/bench_heatmap.py                 # a few minutes on a 2-core CPU
    python benchmarks/bench_heatmap.py --full          # the whole slice (about 10 minutes on 2 cores)
    python benchmarks/bench_heatmap.py --device cuda --windows 400
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from picard_ad.data.phantoms import PhantomConfig, generate_phantom
from picard_ad.data.tissue import tissue_mask
from picard_ad.layers import ChannelDropout, ConvBlock
from picard_ad.localize import reuse_freed_memory
from picard_ad.localize.heatmap import sliding_window_heatmap
from picard_ad.localize.windows import WindowGrid, extract_windows, tissue_windows
from picard_ad.methods.picard import InpaintingGenerator, resolve_dropout_layers
from picard_ad.methods.picard.engine import CompletionEngine
from picard_ad.methods.picard.summary import generator_flops

PATCH, MASK, STRIDE, CNUM = 256, 128, 32, 32
PEAK_SHAPES = ((32, 128, 64), (16, 256, 64))  # (batch, channels in = out, side): the generator's widest layers


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def conv_peak_tflops(device: torch.device, repeats: int = 5) -> tuple[float, str]:
    """Best TFLOP/s of large 3x3 bf16 channels_last convolutions (bf16 weights and inputs, inference mode)."""
    best, best_shape = 0.0, ""
    for batch, channels, side in PEAK_SHAPES:
        conv = torch.nn.Conv2d(channels, channels, 3, padding=1).to(device, torch.bfloat16)
        conv = conv.to(memory_format=torch.channels_last).requires_grad_(False)
        x = torch.randn(batch, channels, side, side, device=device, dtype=torch.bfloat16)
        x = x.contiguous(memory_format=torch.channels_last)
        flops = 2 * batch * channels * channels * 9 * side * side
        with torch.inference_mode():
            for _ in range(2):
                conv(x)
            _sync(device)
            for _ in range(repeats):
                started = time.perf_counter()
                conv(x)
                _sync(device)
                rate = flops / (time.perf_counter() - started) / 1e12
                if rate > best:
                    best, best_shape = rate, f"{batch} x {channels} -> {channels} x {side}^2"
    return best, best_shape


def executed_generator_flops(
    generator: InpaintingGenerator, patch: int, mask: int, n_completions: int, fused: bool
) -> float:
    """FLOPs one completion really executes in the engine (decoders and attention on the hole's receptive
    field only, what the M completions of a window share once per window), counted by torch's FlopCounterMode
    (convolutions and matrix products) on one window's M completions. fused: the engine runs each convolution
    after upsampling as four 2 x 2 phase convolutions of the map (``picard_ad.layers.fused``), counted as such."""
    image = torch.zeros(1, generator.in_channels, patch, patch)
    hole = torch.zeros(1, 1, patch, patch)
    offset = (patch - mask) // 2
    hole[..., offset : offset + mask, offset : offset + mask] = 1.0
    dropout = ChannelDropout(0.5, resolve_dropout_layers("reference"), torch.arange(n_completions))
    upsampled: list[tuple[int, int]] = []  # (FLOPs as counted, FLOPs of the phase convolutions)

    def record(block, args, kwargs):
        if kwargs.get("upsample"):
            batch, channels, height, width = args[0].shape
            macs = batch * block.conv.out_channels * channels
            upsampled.append((2 * macs * 4 * height * width * 9, 2 * macs * 4 * (height + 1) * (width + 1) * 4))

    blocks = [module for module in generator.modules() if isinstance(module, ConvBlock)]
    hooks = [block.register_forward_pre_hook(record, with_kwargs=True) for block in blocks] if fused else []
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        generator.complete_region(image, hole, (offset, offset, offset + mask, offset + mask), dropout, n_completions)
    for hook in hooks:
        hook.remove()
    saved = sum(counted - phases for counted, phases in upsampled)
    return (counter.get_total_flops() - saved) / n_completions


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=24, help="tissue windows to run when not --full [24]")
    parser.add_argument("--full", action="store_true", help="run every tissue window of the slice")
    parser.add_argument("--device", default="cpu", help="cpu or cuda [cpu]")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads [all cores]")
    parser.add_argument("--batch-size", type=int, default=None, help="completions per forward [auto]")
    parser.add_argument("--workers", type=int, default=None, help="forwards run at once on the CPU [one per thread]")
    parser.add_argument("--no-bf16", action="store_true", help="float32 instead of bf16 autocast")
    parser.add_argument("--M", type=int, default=10, help="completions per window [10]")
    parser.add_argument("--seed", type=int, default=0, help="phantom and weight seed [0]")
    args = parser.parse_args()

    device = torch.device(args.device)
    reuse_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    print(f"load average at start: {os.getloadavg()[0]:.2f}")

    phantom = generate_phantom(PhantomConfig(size=(2457, 1996), pixel_spacing_mm=0.1), seed=args.seed)
    grid = WindowGrid.cover(phantom.image.shape, PATCH, MASK, STRIDE)
    keep = tissue_windows(grid, tissue_mask(phantom.image, 0.02))
    n_tissue = int(keep.sum())
    print(f"image {phantom.image.shape[0]} x {phantom.image.shape[1]}, tissue {phantom.tissue_mask.mean():.0%} of "
          f"pixels; windows {grid.n_windows} ({grid.shape[0]} x {grid.shape[1]}), with tissue {n_tissue}, "
          f"skipped as background {grid.n_windows - n_tissue}")

    flops_per_completion = generator_flops(CNUM, 1, PATCH, PATCH).total
    peak_before, peak_shape = conv_peak_tflops(device)
    engine = CompletionEngine(
        InpaintingGenerator(1, CNUM), None, mask_size=MASK, n_completions=args.M,
        dropout_layers=resolve_dropout_layers("reference"), seed=1337, device=device,
        bf16=not args.no_bf16, channels_last=True, batch_size=args.batch_size, workers=args.workers,
    )  # fmt: skip
    executed_per_completion = executed_generator_flops(
        InpaintingGenerator(1, CNUM).eval(), PATCH, MASK, args.M, engine.fused
    )
    started = time.perf_counter()
    batch = engine.batch_size(PATCH)
    setup_s = time.perf_counter() - started
    print(f"batch size {batch} completions per forward, {engine.workers} forward(s) at once (per-sample footprint "
          f"{(engine.timings.per_sample_bytes or 0) / 2**20:.0f} MiB, measured in {setup_s:.1f} s)")

    scorer = engine.scorer(["mcd-image"])
    indices = np.flatnonzero(keep.ravel())
    if args.full:
        cpu_started = _cpu_seconds()
        started = time.perf_counter()
        heatmap = sliding_window_heatmap(phantom.image, scorer, patch_size=PATCH, mask_size=MASK, stride=STRIDE,
                                         chunk_size=engine.preferred_chunk(PATCH, ["mcd-image"]), progress=True)
        elapsed = time.perf_counter() - started
        run_windows = n_tissue
        compute_s = engine.timings.generator_s / engine.workers
        overhead_s = heatmap["mcd-image"].timings["tissue_s"] + heatmap["mcd-image"].timings["assembly_s"]
    else:
        chosen = indices[np.linspace(0, len(indices) - 1, min(args.windows, len(indices))).round().astype(int)]
        scorer(extract_windows(phantom.image, grid, chosen[:1]), chosen[:1])  # warm-up (oneDNN primitives)
        engine.reset_timings()
        cpu_started = _cpu_seconds()
        started = time.perf_counter()
        chunk = engine.preferred_chunk(PATCH, ["mcd-image"])
        for start in range(0, len(chosen), chunk):
            part = chosen[start : start + chunk]
            scorer(extract_windows(phantom.image, grid, part), part)
        elapsed = time.perf_counter() - started
        run_windows = len(chosen)
        compute_s = engine.timings.generator_s / engine.workers
        overhead_s = 0.0
    cores_used = (_cpu_seconds() - cpu_started) / elapsed
    completions = run_windows * args.M
    rate = completions / elapsed
    tflops = rate * flops_per_completion / 1e12
    executed_tflops = rate * executed_per_completion / 1e12
    peak_after, _ = conv_peak_tflops(device)
    peak = max(peak_before, peak_after)

    print(f"generator: {flops_per_completion / 1e9:.1f} GFLOP per completion (analytic, full network, attention "
          f"included: 'effective'); {executed_per_completion / 1e9:.1f} GFLOP executed (decoders and attention "
          "on the hole's receptive field only, what a window's completions share once: 'executed')")
    print(f"ran {run_windows} windows x {args.M} = {completions} completions in {elapsed:.1f} s "
          f"({compute_s / elapsed:.0%} inside the generator)")
    if device.type == "cpu":
        print(f"CPU time / wall time: {cores_used:.2f} of {torch.get_num_threads()} threads (less means other jobs "
              "took cores during the run)")
    print(f"completions per second: {rate:.2f}")
    print(f"achieved: {tflops:.3f} TFLOP/s effective, {executed_tflops:.3f} TFLOP/s executed")
    print(f"measured bf16 conv peak: {peak:.3f} TFLOP/s (3x3, {peak_shape}; {peak_before:.3f} before, "
          f"{peak_after:.3f} after the run)")
    print(f"fraction of peak: {tflops / peak:.0%} effective, {executed_tflops / peak:.0%} executed")
    with_skip = n_tissue * args.M / rate + overhead_s
    without_skip = grid.n_windows * args.M / rate + overhead_s
    label = "measured" if args.full else f"extrapolated from {run_windows} windows"
    print(f"full slice with background skipping ({n_tissue} windows): {with_skip / 60:.1f} min ({label})")
    print(f"full slice without skipping ({grid.n_windows} windows): {without_skip / 60:.1f} min (extrapolated)")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
