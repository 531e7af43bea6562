"""bf16 against float32 PICARD heatmaps of a trained model on abnormal phantoms: do they localize the same?

Heatmaps every test phantom twice, with bf16 autocast (the default: AMX on recent x86 CPUs, tensor cores on
GPUs) and in float32, with the same dropout masks, and prints per image and on average the pixel AUROC and AP of
both (whole image and breast tissue only), their differences, the largest heatmap difference relative to the
heatmap's range, and the time of each. The check: mean tissue pixel AUROC within 0.002.

    python benchmarks/bench_bf16.py --model runs/bench-phantoms/methods/picard
    python benchmarks/bench_bf16.py --model RUN_DIR --images 8 --size 1024 768 --stride 32
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from picard_ad.data.phantoms import PhantomConfig, generate_phantom
from picard_ad.localize import reuse_freed_memory
from picard_ad.methods.picard import Picard
from picard_ad.metrics import pixel_metrics

TOLERANCE = 0.002  # mean tissue pixel AUROC, bf16 against float32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="training run (or checkpoint) folder of a trained model")
    parser.add_argument("--images", type=int, default=6, help="abnormal test phantoms [6]")
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=(512, 384),
        metavar=("H", "W"),
        help="phantom size in pixels; the breast keeps its physical size [512 384]",
    )
    parser.add_argument("--seed", type=int, default=90_000, help="seed of the first test phantom [90000]")
    parser.add_argument("--stride", type=int, default=16, help="window stride [16]")
    parser.add_argument("--M", type=int, default=10, help="completions per window [10]")
    parser.add_argument("--score", default="mcd-image", help="PICARD score [mcd-image]")
    parser.add_argument("--checkpoint", default="best", choices=["best", "last"], help="[best]")
    args = parser.parse_args()  # fmt: skip

    reuse_freed_memory()
    config = PhantomConfig().resized(tuple(args.size))
    models = {
        precision: Picard.load(args.model, stride=args.stride, n_completions=args.M, score=args.score,
                               checkpoint=args.checkpoint, bf16=precision == "bf16")
        for precision in ("float32", "bf16")
    }  # fmt: skip
    print(f"model {args.model} ({args.checkpoint}), score {args.score}, M {args.M}, stride {args.stride}, "
          f"{args.images} abnormal phantoms of {args.size[0]} x {args.size[1]} px")  # fmt: skip
    header = ("image", "AUROC fp32", "AUROC bf16", "diff", "tissue fp32", "tissue bf16", "diff", "AP diff",
              "max |diff| / range", "s fp32", "s bf16")  # fmt: skip
    print(" | ".join(header))
    rows = []
    for index in range(args.images):
        phantom = generate_phantom(config, seed=args.seed + index, n_lesions=2)
        maps, seconds = {}, {}
        for precision, model in models.items():
            started = time.perf_counter()
            maps[precision] = model.heatmap(phantom.image).array
            seconds[precision] = time.perf_counter() - started
        whole = {p: pixel_metrics(m, phantom.lesion_mask) for p, m in maps.items()}
        tissue = {p: pixel_metrics(m, phantom.lesion_mask, region=phantom.tissue_mask) for p, m in maps.items()}
        spread = float(np.ptp(maps["float32"])) or 1.0
        row = (
            whole["float32"].pixel_auroc, whole["bf16"].pixel_auroc,
            tissue["float32"].pixel_auroc, tissue["bf16"].pixel_auroc,
            tissue["bf16"].pixel_ap - tissue["float32"].pixel_ap,
            float(np.abs(maps["bf16"] - maps["float32"]).max()) / spread, seconds["float32"], seconds["bf16"],
        )  # fmt: skip
        rows.append(row)
        print(
            f"phantom {args.seed + index} | {row[0]:.4f} | {row[1]:.4f} | {row[1] - row[0]:+.4f} | {row[2]:.4f} | "
            f"{row[3]:.4f} | {row[3] - row[2]:+.4f} | {row[4]:+.4f} | {row[5]:.4f} | {row[6]:.1f} | {row[7]:.1f}"
        )
    mean = np.mean(np.asarray(rows), axis=0)
    tissue_difference = mean[3] - mean[2]
    print(
        f"mean | {mean[0]:.4f} | {mean[1]:.4f} | {mean[1] - mean[0]:+.4f} | {mean[2]:.4f} | {mean[3]:.4f} | "
        f"{tissue_difference:+.4f} | {mean[4]:+.4f} | {mean[5]:.4f} | {mean[6]:.1f} | {mean[7]:.1f}"
    )
    verdict = "within" if abs(tissue_difference) <= TOLERANCE else "NOT within"
    print(
        f"mean tissue pixel AUROC: bf16 - float32 = {tissue_difference:+.4f}, {verdict} {TOLERANCE}; "
        f"bf16 {mean[6] / mean[7]:.1f}x faster"
    )


if __name__ == "__main__":
    main()
