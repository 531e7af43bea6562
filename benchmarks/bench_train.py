"""Training throughput of the completion network (patches/s) in fp32 and bf16 autocast, on this machine.

Run: python benchmarks/bench_train.py [--patch-size 256 --hole-size 128 --cnum 32 --batch-size 8] [--cycles 2]
One cycle is n_critic (5) iterations of the real training step: five critic steps with gradient penalty and one
generator step, each on a fresh batch of phantom patches. Patches/s = batch * iterations / wall time, after one
warm-up cycle. Also printed: the time of a critic-only iteration and of the iteration with the generator step.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import torch

from picard_ad.data.phantoms import PhantomConfig, generate_phantom
from picard_ad.io.writers import write_png
from picard_ad.methods.picard import PicardTrainConfig as TrainConfig
from picard_ad.methods.picard import PicardTraining
from picard_ad.training import Trainer


def _phantoms(folder: Path, count: int) -> None:
    for index in range(count):
        write_png(folder / f"normal_{index}.png", generate_phantom(PhantomConfig(), seed=index).image)


def _measure(config: TrainConfig, data: Path, run_dir: Path, cycles: int) -> dict[str, float]:
    trainer = Trainer("picard", config, PicardTraining, data, run_dir, progress=False)
    try:
        for iteration in range(1, config.n_critic + 1):  # warm-up cycle: allocator, oneDNN kernel selection
            trainer.task.step(iteration)
        critic_times, generator_times = [], []
        for iteration in range(config.n_critic + 1, (cycles + 1) * config.n_critic + 1):
            generator_step = iteration % config.n_critic == 0
            start = time.perf_counter()
            trainer.task.step(iteration)
            (generator_times if generator_step else critic_times).append(time.perf_counter() - start)
    finally:
        trainer.task.close()
    total = sum(critic_times) + sum(generator_times)
    iterations = len(critic_times) + len(generator_times)
    return {
        "patches_per_s": config.batch_size * iterations / total,
        "critic_iteration_s": sum(critic_times) / len(critic_times),
        "generator_iteration_s": sum(generator_times) / len(generator_times),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patch-size", type=int, default=256)
    parser.add_argument("--hole-size", type=int, default=128)
    parser.add_argument("--cnum", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--cycles", type=int, default=2, help="measured cycles of n_critic iterations")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--channels-last", action="store_true", help="also time channels_last memory format")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    base = TrainConfig(
        patch_size=args.patch_size,
        hole_size=args.hole_size,
        hole_max_shrink=args.hole_size // 8,
        cnum=args.cnum,
        batch_size=args.batch_size,
        val_patches=1,
        num_workers=1,
        tensorboard=False,
        device=args.device,
    )
    variants = [("fp32", False, False), ("bf16", True, False)]
    if args.channels_last:
        variants += [("fp32 channels_last", False, True), ("bf16 channels_last", True, True)]
    print(
        f"patch {args.patch_size}, hole {args.hole_size}, cnum {args.cnum}, batch {args.batch_size}, "
        f"{args.threads} threads, device {args.device}, torch {torch.__version__}, "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}"
    )
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "phantoms"
        data.mkdir()
        _phantoms(data, 4)
        for name, bf16, channels_last in variants:
            config = dataclasses.replace(base, bf16=bf16, channels_last=channels_last)
            result = _measure(config, data, Path(scratch) / name.replace(" ", "_"), args.cycles)
            print(
                f"{name:<20} {result['patches_per_s']:7.2f} patches/s   critic-only iteration "
                f"{result['critic_iteration_s']:6.2f} s   iteration with generator step "
                f"{result['generator_iteration_s']:6.2f} s"
            )


if __name__ == "__main__":
    main()
