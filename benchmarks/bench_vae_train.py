"""Wall time of each Zimmerer-family method's ``small`` preset trained on the four BraTS volumes (issue 12's goal:
at most 10 minutes each on the 2-core CPU).

Each of vae, dae, cevae, cradl and pchvae is fitted, one after the other, with its ``small`` preset unchanged (every
step, validation, checkpoint and, for CRADL, the mixture fit) on the tumour-free slices of every volume matched by
``--glob`` under ``--brats`` (the thesis trains on normal slices only), into a fresh run folder under ``--out``
(removed first). The figure printed per method is the wall time of ``fit``, data loading included. Run it on idle
cores: a competing process slows training several times (docs/training.md).

    python benchmarks/bench_vae_train.py                                    # FLAIR, all five methods
    python benchmarks/bench_vae_train.py --glob '*/T1c*.nii.gz' --methods vae,cradl
    python benchmarks/bench_vae_train.py --preset tiny --out /tmp/vae-train  # a smoke run
"""

from __future__ import annotations

import argparse
import platform
import shutil
import time
from pathlib import Path

import torch

from picard_ad.benchmark.config import DataConfig
from picard_ad.benchmark.data import load_dataset
from picard_ad.methods import create_method

METHODS = ("vae", "dae", "cevae", "cradl", "pchvae")
GOAL_SECONDS = 600.0  # the limit for a small preset's training on the four volumes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--brats", type=Path, default=Path("../shared/data/brats2015"))
    parser.add_argument("--glob", default="*/Flair*.nii.gz", help="the volumes under --brats [FLAIR]")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated [all five]")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-vae-train"))
    args = parser.parse_args()
    data = DataConfig(kind="nifti-labels", root=args.brats, image_glob=args.glob, label_glob="*/OT*.nii.gz",
                      brain_mask_glob="*/brainmask.nii.gz")  # fmt: skip
    normal = [sample for sample in load_dataset(data, seed=0) if sample.is_normal]
    patients = sorted({sample.patient_id for sample in normal})
    print(f"{len(normal)} tumour-free slices of {len(patients)} volumes ({args.glob}); preset {args.preset}; "
          f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads")  # fmt: skip
    rows = []
    for name in args.methods.split(","):
        run_dir = args.out / name
        shutil.rmtree(run_dir, ignore_errors=True)
        method = create_method(name, preset=args.preset)
        started = time.perf_counter()
        method.fit(normal, run_dir=run_dir)
        seconds = time.perf_counter() - started
        steps = method.train_config.steps
        rows.append((name, steps, seconds))
        print(f"{name:7s} {steps:5d} steps  {seconds:6.0f} s  ({seconds / GOAL_SECONDS:.0%} of the "
              f"{GOAL_SECONDS / 60:.0f}-minute goal)", flush=True)  # fmt: skip
    slowest = max(rows, key=lambda row: row[2])
    verdict = "meets" if slowest[2] <= GOAL_SECONDS else "MISSES"
    print(f"slowest: {slowest[0]} in {slowest[2]:.0f} s: {verdict} the goal of {GOAL_SECONDS:.0f} s")


if __name__ == "__main__":
    main()
