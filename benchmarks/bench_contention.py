"""CPU training beside other processes: a small-preset PICARD run alone and with one busy process per core, with a
fixed thread count (the default) and with ``--adaptive-threads``.

Each run is ``picard-ad fit --method picard --preset small`` on phantoms (made once in a temporary folder); its
speed is the iterations after the first ``--log-every`` (kernel and data warm-up) divided by the training time
``train_log.csv`` records for them. A competitor is a Python process spinning on one core. Issue 15's goal: with one
competitor per core, at most 2.5x slower than alone.

    python benchmarks/bench_contention.py              # about 6 minutes on a 2-core CPU
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PICARD_AD = [sys.executable, "-c", "from picard_ad.cli import main; main()"]  # the CLI of this interpreter's picard-ad

def spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def iterations_per_s(run_dir: Path) -> float:
    """Iterations per second between the first and the last row of the run's train_log.csv."""
    with open(run_dir / "train_log.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    first, last = rows[0], rows[-1]
    return (int(last["step"]) - int(first["step"])) / (float(last["elapsed_s"]) - float(first["elapsed_s"]))


def fit(data: Path, out: Path, steps: int, log_every: int, adaptive: bool) -> float:
    threads = "--adaptive-threads" if adaptive else "--no-adaptive-threads"
    command = [*PICARD_AD, "fit", "--method", "picard", "--preset", "small", "--data", str(data), "--out", str(out),
               "--steps", str(steps), "--log-every", str(log_every), "--no-tensorboard", "--quiet", threads]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return iterations_per_s(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="training iterations per run")
    parser.add_argument("--log-every", type=int, default=10, help="iterations per log row; the first row is warm-up")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{cores} cores; load average at start {os.getloadavg()[0]:.2f}; small preset, {args.steps} iterations")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        subprocess.run([*PICARD_AD, "phantoms", "--out", str(root / "phantoms"),
                        "--normal", "8", "--abnormal", "0", "--size", "512", "384"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        data = root / "phantoms" / "images"
        rates = {}
        for adaptive in (False, True):
            label = "adaptive" if adaptive else "fixed"
            rates[label, "alone"] = fit(data, root / f"{label}-alone", args.steps, args.log_every, adaptive)
            competitors = [multiprocessing.Process(target=spin, args=(3600.0,)) for _ in range(cores)]
            for process in competitors:
                process.start()
            try:
                rates[label, "shared"] = fit(data, root / f"{label}-shared", args.steps, args.log_every, adaptive)
            finally:
                for process in competitors:
                    process.terminate()
                    process.join()
    print(f"\n{'threads':<10} {'alone it/s':>10} {'beside ' + str(cores) + ' busy':>14} {'slower':>7}")
    for label in ("fixed", "adaptive"):
        alone, shared = rates[label, "alone"], rates[label, "shared"]
        print(f"{label:<10} {alone:>10.2f} {shared:>14.2f} {alone / shared:>6.1f}x")
    worst = rates["fixed", "alone"] / rates["adaptive", "shared"]
    print(f"adaptive beside the competitors vs fixed alone (the fastest way alone): {worst:.1f}x slower "
          f"(goal: at most 2.5x); load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
