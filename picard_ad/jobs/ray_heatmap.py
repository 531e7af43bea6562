"""``picard-ad heatmap --ray``: the inputs of a heatmap job spread over a Ray cluster.

One task per input, run by a pool of workers (Ray actors) that each load the model once and run the same
``HeatmapRunner`` as a local job, so outputs, sidecars and the skipping of finished outputs are those of a local run
(tests compare them file for file). A worker holds one GPU where the cluster has GPUs, else ``CPUS_PER_WORKER`` CPUs
(Ray then runs it with as many threads). Inputs go to whichever worker is free, one at a time, so large and small
inputs balance. A worker process that dies (killed, out of memory, its node lost) is restarted by Ray, which loads
the model again and retries the input it held, up to ``MAX_RETRIES`` times; an input whose retries are spent is
reported as failed, like an input that raises a picard-ad error, and the others go on.

Workers write into the output folder themselves: on a local cluster that is this machine's folder; on a cluster of
several machines it must be a folder every node mounts at the same path, and every node needs picard-ad (the same
version) and the run folder at the same path. Ray is the optional extra ``ray`` (its version pinned).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from picard_ad.errors import ConfigError, PicardError
from picard_ad.jobs.heatmap import HeatmapJob, HeatmapRunner

LOCAL_CLUSTER = "local"  # --ray without an address: start a cluster on this machine for the job
MAX_RETRIES = 3  # restarts of a dead worker, and retries of the input it held
CPUS_PER_WORKER = 1  # on a cluster without GPUs: one worker per CPU, each single-threaded (the CPU executor's way)


def ray_module():
    """The ``ray`` package, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'picard-ad[ray]'") from None
    return ray


class HeatmapWorker:
    """One worker: the fitted method loaded once, and a ``HeatmapRunner`` that writes into the output folder."""

    def __init__(self, model_dir: str, settings: dict[str, Any], job: HeatmapJob, out: str, inputs: list[str]):
        from picard_ad.methods import load_method

        method = load_method(model_dir, **settings)
        self.runner = HeatmapRunner(method, job, Path(out), progress=False, inputs=[Path(p) for p in inputs])

    def run(self, path: str, name: str) -> tuple[int, int, str | None]:
        """Outputs written and skipped for one input, and its picard-ad error message (None when it worked)."""
        written, skipped = self.runner.written, self.runner.skipped
        try:
            self.runner.run(Path(path), Path(name))
        except PicardError as exc:
            return self.runner.written - written, self.runner.skipped - skipped, str(exc)
        return self.runner.written - written, self.runner.skipped - skipped, None

    def pid(self) -> int:
        return os.getpid()


@dataclass
class RayJobResult:
    """What a Ray heatmap job did: outputs written and skipped, and one message per input that failed."""

    written: int = 0
    skipped: int = 0
    failures: list[str] | None = None


class RayHeatmapPool:
    """Workers on a Ray cluster (``ray.init`` already called), each holding the fitted method of ``model_dir``."""

    def __init__(self, model_dir: Path, settings: dict[str, Any], job: HeatmapJob, out: Path,
                 inputs: Sequence[Path], workers: int | None = None):  # fmt: skip
        self.ray = ray_module()
        resources = self.ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        cpus = max(int(resources.get("CPU", 1)), 1)
        count = workers or gpus or max(cpus // CPUS_PER_WORKER, 1)
        actor = self.ray.remote(HeatmapWorker).options(
            num_gpus=1 if gpus else 0, num_cpus=0 if gpus else CPUS_PER_WORKER,
            max_restarts=MAX_RETRIES, max_task_retries=MAX_RETRIES,
        )  # fmt: skip
        arguments = (str(model_dir), settings, job, str(out), [str(path) for path in inputs])
        self.workers = [actor.remote(*arguments) for _ in range(count)]

    def pids(self) -> list[int]:
        """Process ids of the workers (started if they were not yet)."""
        return self.ray.get([worker.pid.remote() for worker in self.workers])

    def run(self, files: Sequence[tuple[Path, Path]], progress: bool = False) -> RayJobResult:
        """Run every (input, output name) of ``files``, each on the next free worker."""
        from tqdm import tqdm

        result = RayJobResult(failures=[])
        pending = list(reversed(files))
        running: dict[Any, tuple[Any, Path]] = {}  # task -> (its worker, its input)
        idle = list(self.workers)
        with tqdm(total=len(files), unit="input", disable=not progress, dynamic_ncols=True, desc="inputs") as bar:
            while pending or running:
                while idle and pending:
                    worker, (path, name) = idle.pop(), pending.pop()
                    running[worker.run.remote(str(path), str(name))] = (worker, path)
                (done,), _ = self.ray.wait(list(running), num_returns=1)
                worker, path = running.pop(done)
                idle.append(worker)
                try:
                    written, skipped, error = self.ray.get(done)
                except self.ray.exceptions.RayError as exc:  # the worker died and its retries are spent
                    written, skipped, error = 0, 0, f"{path}: its Ray worker failed: {type(exc).__name__}"
                result.written += written
                result.skipped += skipped
                if error is not None:
                    result.failures.append(error)
                bar.update(1)
        return result


def run_heatmaps_on_ray(files: Sequence[tuple[Path, Path]], model_dir: Path, settings: dict[str, Any],
                        job: HeatmapJob, out: Path, address: str, workers: int | None = None,
                        progress: bool = False) -> RayJobResult:  # fmt: skip
    """The heatmap job of ``files`` on Ray: a cluster started here (``address`` "local") or the running one at
    ``address``; a cluster this process already joined is used as it is."""
    ray = ray_module()
    joined_here = not ray.is_initialized()
    if joined_here:
        ray.init(address=None if address == LOCAL_CLUSTER else address, include_dashboard=False,
                 logging_level="ERROR", configure_logging=True)  # fmt: skip
    try:
        inputs = [path for path, _ in files]
        return RayHeatmapPool(model_dir, settings, job, out, inputs, workers).run(files, progress)
    finally:
        if joined_here:
            ray.shutdown()
