"""``--ray``: the inputs of a heatmap or MOOD job spread over a Ray cluster.

One task per input, run by a pool of workers (Ray actors) that each load the model once and run the same code as a
local job (``HeatmapRunner``, ``run_case``), so outputs, sidecars and the skipping of finished outputs are those of
a local run (tests compare them file for file). A worker holds one GPU where the cluster has GPUs, else
``CPUS_PER_WORKER`` CPUs (Ray then runs it with as many threads). Inputs go to whichever worker is free, one at a
time, so large and small inputs balance. A worker process that dies (killed, out of memory, its node lost) is
restarted by Ray, which loads the model again and retries the input it held, up to ``MAX_RETRIES`` times; an input
whose retries are spent is reported as failed, like an input that raises a picard-ad error, and the others go on.

Workers write into the output folder themselves: on a local cluster that is this machine's folder; on a cluster of
several machines it must be a folder every node mounts at the same path, and every node needs picard-ad (the same
version) and the run folder at the same path. Ray is the optional extra ``ray`` (its version pinned).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from picard_ad.config import check_settings, setting
from picard_ad.errors import ConfigError, PicardError

LOCAL_CLUSTER = "local"  # --ray without an address: start a cluster on this machine for the job
MAX_RETRIES = 3  # restarts of a dead worker, and retries of the input it held
CPUS_PER_WORKER = 1  # on a cluster without GPUs: one worker per CPU, each single-threaded (the CPU executor's way)


@dataclass(frozen=True)
class RaySettings:
    """Where a job runs; YAML keys and flags of ``picard-ad heatmap`` and ``picard-ad mood`` share these names."""

    ray: str | None = setting(None, "run the inputs on a Ray cluster: the address of a running one, or the bare "
                              "flag for a cluster on this machine started for the job (the ray extra; "
                              "picard_ad.jobs.ray_cluster)", metavar="ADDRESS", flag_value=LOCAL_CLUSTER)  # fmt: skip
    ray_workers: int | None = setting(None, "workers on the Ray cluster, each loading the model once [one per GPU, "
                                      "else one per CPU]", ge=1)  # fmt: skip

    def __post_init__(self) -> None:
        check_settings(self)


class Task(Protocol):
    """What a worker runs for each input (heatmap and mood tasks return outputs (written, skipped)); a picard-ad
    error when the input fails."""

    def run(self, item: Any) -> Any: ...


class HeatmapTask:
    """``picard-ad heatmap`` for one (input, output name) at a time, with the fitted method loaded once."""

    def __init__(self, model_dir: Path, settings: dict[str, Any], job: Any, out: Path, inputs: Sequence[Path]):
        from picard_ad.jobs.heatmap import HeatmapRunner
        from picard_ad.methods import load_method

        self.runner = HeatmapRunner(load_method(model_dir, **settings), job, out, progress=False, inputs=inputs)

    def run(self, item: tuple[Path, Path]) -> tuple[int, int]:
        written, skipped = self.runner.written, self.runner.skipped
        self.runner.run(*item)
        return self.runner.written - written, self.runner.skipped - skipped


class MoodTask:
    """``picard-ad mood`` for one volume at a time, with the method loaded once (settings already calibrated)."""

    def __init__(self, model_dir: Path | None, method: str | None, method_settings: dict[str, Any], settings: Any,
                 output_dir: Path):  # fmt: skip
        from picard_ad.jobs.mood import mood_method, slice_sample_score

        self.scorer = mood_method(model_dir, method, method_settings)
        self.slice_score = slice_sample_score(self.scorer, settings.task)
        self.settings, self.output_dir = settings, output_dir

    def run(self, item: Path) -> tuple[int, int]:
        from picard_ad.jobs.mood import run_case

        written = run_case(item, self.output_dir, self.scorer.score_map, self.settings, self.slice_score)
        return (1, 0) if written else (0, 1)


def ray_module():
    """The ``ray`` package, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'picard-ad[ray]'") from None
    return ray


class RayWorker:
    """One worker process: its task made once (``make_task()`` loads the model), then one input per call."""

    def __init__(self, make_task: Callable[[], Task]):
        self.task = make_task()

    def run(self, item: Any) -> tuple[Any, str | None]:
        """The task's result for one input and None, or None and its picard-ad error message."""
        try:
            return self.task.run(item), None
        except PicardError as exc:
            return None, str(exc)

    def pid(self) -> int:
        return os.getpid()


@dataclass
class RayJobResult:
    """What a job did on Ray: outputs written and skipped, and one message per input that failed."""

    written: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)


def _input_of(item: Any) -> Any:
    return item[0] if isinstance(item, tuple) else item


class RayPool:
    """Workers on a Ray cluster (``ray.init`` already called), each running ``make_task()`` once."""

    def __init__(self, make_task: Callable[[], Task], workers: int | None = None):
        self.ray = ray_module()
        resources = self.ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        count = workers or gpus or max(int(resources.get("CPU", 1)) // CPUS_PER_WORKER, 1)
        actor = self.ray.remote(RayWorker).options(
            num_gpus=1 if gpus else 0, num_cpus=0 if gpus else CPUS_PER_WORKER,
            max_restarts=MAX_RETRIES, max_task_retries=MAX_RETRIES,
        )  # fmt: skip
        self.workers = [actor.remote(make_task) for _ in range(count)]

    def pids(self) -> list[int]:
        """Process ids of the workers (once they have started)."""
        return self.ray.get([worker.pid.remote() for worker in self.workers])

    def imap(self, items: Sequence[Any], progress: bool = False) -> Iterator[tuple[Any, Any, str | None]]:
        """(item, the task's result, None) or (item, None, error message) of every item as workers finish them,
        each item given to the next free worker."""
        from tqdm import tqdm

        pending = list(reversed(items))
        running: dict[Any, tuple[Any, Any]] = {}  # task -> (its worker, its item)
        idle = list(self.workers)
        with tqdm(total=len(items), unit="input", disable=not progress, dynamic_ncols=True, desc="inputs") as bar:
            while pending or running:
                while idle and pending:
                    worker, item = idle.pop(), pending.pop()
                    running[worker.run.remote(item)] = (worker, item)
                if not running:  # every worker died for good
                    item = pending.pop()
                    bar.update(1)
                    yield item, None, f"{_input_of(item)}: not run, no Ray worker is left"
                    continue
                (done,), _ = self.ray.wait(list(running), num_returns=1)
                worker, item = running.pop(done)
                try:
                    value, error = self.ray.get(done)
                    idle.append(worker)
                except self.ray.exceptions.RayActorError as exc:  # the worker died and its restarts are spent
                    value, error = None, f"{_input_of(item)}: its Ray worker failed: {type(exc).__name__}"
                except self.ray.exceptions.RayError as exc:  # the task failed in Ray, the worker lives on
                    idle.append(worker)
                    value, error = None, f"{_input_of(item)}: failed in Ray: {type(exc).__name__}"
                bar.update(1)
                yield item, value, error

    def run(self, items: Sequence[Any], progress: bool = False) -> RayJobResult:
        """Every item of a task whose result is (outputs written, outputs skipped)."""
        result = RayJobResult()
        for _, counts, error in self.imap(items, progress):
            if error is None:
                result.written += counts[0]
                result.skipped += counts[1]
            else:
                result.failures.append(error)
        return result

    def close(self) -> None:
        """Stop the workers (their model memory is freed)."""
        for worker in self.workers:
            self.ray.kill(worker)


@contextlib.contextmanager
def ray_session(settings: RaySettings) -> Iterator[None]:
    """Joined to Ray for the block: a cluster started here (``settings.ray`` "local") or the running one at that
    address; a cluster this process already joined is used as it is (and left running)."""
    ray = ray_module()
    joined_here = not ray.is_initialized()
    if joined_here:
        ray.init(address=None if settings.ray == LOCAL_CLUSTER else settings.ray, include_dashboard=False,
                 logging_level="ERROR")  # fmt: skip
    try:
        yield
    finally:
        if joined_here:
            ray.shutdown()


def run_on_ray(settings: RaySettings, make_task: Callable[[], Task], items: Sequence[Any],
               progress: bool = False) -> RayJobResult:  # fmt: skip
    """Every item of a job whose task counts outputs (heatmap, mood) on the Ray cluster of ``settings``."""
    with ray_session(settings):
        pool = RayPool(make_task, settings.ray_workers)
        try:
            return pool.run(items, progress)
        finally:
            pool.close()
