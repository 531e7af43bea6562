"""CPU training beside other processes: a thread pool sized to the cores the others leave free.

A training step on the CPU splits every operation over torch's threads, which meet at a barrier after each one.
When another process takes a core, the thread on it runs only part of the time and every barrier waits for it: with
one busy process per core, a 2-thread small-preset PICARD run took 5.3x as long as alone, and making OpenMP threads
sleep instead of spin (OMP_WAIT_POLICY=PASSIVE) did not help; the same run on one thread took 2.1x as long
(``benchmarks/bench_contention.py``). ``ThreadGovernor`` therefore measures, every few seconds, how many cores
processes other than this one keep busy (``/proc/stat`` over the CPUs this process may run on, minus this
process's own CPU time) and sets torch's thread count to the cores left, at least one.

The thread count changes float rounding (reductions are split differently), so a run whose threads follow the load
is not reproducible bit for bit, nor is its resume exact: the governor only acts with ``adaptive_threads``. Without
it, it still measures and warns once when other processes have kept cores busy for half a minute, with that
advice.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

PROC_STAT = Path("/proc/stat")
BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user, nice, system, irq, softirq, steal; idle (3) and iowait (4) are free time
BUSY_WARNING_CORES = 0.75  # cores kept busy by other processes that make a fixed-thread run warn ...
BUSY_WARNING_AFTER_S = 30.0  # ... once they have done so without a break this long (short runs never warn)


class ContentionWarning(UserWarning):
    """Other processes keep cores busy while training runs a fixed number of threads."""


@dataclass(frozen=True)
class CpuSample:
    """What one measurement reads: seconds of busy time of the allowed CPUs (all processes), this process's CPU
    seconds (all its threads) and the wall clock, all cumulative."""

    busy_s: float
    own_s: float
    wall_s: float


def read_cpu_sample(cpus: frozenset[int], stat_path: Path = PROC_STAT) -> CpuSample | None:
    """A ``CpuSample`` of the CPUs ``cpus`` from ``/proc/stat`` (Linux); None where it cannot be read."""
    try:
        lines = stat_path.read_text().splitlines()
    except OSError:
        return None
    ticks_per_s = os.sysconf("SC_CLK_TCK")
    busy = 0
    for line in lines:
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            busy += sum(int(fields[index]) for index in BUSY_FIELDS if index < len(fields))
    return CpuSample(busy / ticks_per_s, time.process_time(), time.monotonic())


class ThreadGovernor:
    """Keeps torch's CPU thread count at the cores other processes leave free (``adapt``), or only warns.

    ``update()`` is cheap and meant for every training iteration: it measures once per ``interval_s`` seconds.
    Threads = clamp(floor(free cores + 0.25), 1, ``max_threads``), where free cores = allowed CPUs - cores busy
    with other processes over the last interval; the 0.25 keeps a core that others use a quarter of the time.
    """

    def __init__(
        self,
        adapt: bool,
        max_threads: int | None = None,
        interval_s: float = 2.0,
        sample: Callable[[], CpuSample | None] | None = None,
        cpus: int | None = None,
    ):
        allowed = frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else frozenset()
        self.adapt = adapt
        self.max_threads = max_threads or torch.get_num_threads()
        self.cpus = cpus or len(allowed) or os.cpu_count() or 1
        self.interval_s = interval_s
        self._sample = sample or (lambda: read_cpu_sample(allowed))
        self._last = self._sample()
        self.warned = False
        self._contended_s = 0.0  # seconds since other processes last left the cores mostly free
        self.threads = self.max_threads
        self.others_busy: float | None = None  # cores other processes kept busy over the last interval

    def update(self) -> int | None:
        """Measure if an interval has passed; return the new thread count when it changed, else None."""
        if self._last is None:
            return None
        now = self._sample()
        if now is None or now.wall_s - self._last.wall_s < self.interval_s:
            return None
        wall = now.wall_s - self._last.wall_s
        others = ((now.busy_s - self._last.busy_s) - (now.own_s - self._last.own_s)) / wall
        self._last = now
        self.others_busy = min(max(others, 0.0), float(self.cpus))
        if not self.adapt:
            self._contended_s = self._contended_s + wall if self.others_busy >= BUSY_WARNING_CORES else 0.0
            self._warn_if_contended()
            return None
        threads = min(max(math.floor(self.cpus - self.others_busy + 0.25), 1), self.max_threads)
        if threads == self.threads:
            return None
        self.threads = threads
        torch.set_num_threads(threads)
        return threads

    def _warn_if_contended(self) -> None:
        if self.warned or self._contended_s < BUSY_WARNING_AFTER_S:
            return
        self.warned = True
        warnings.warn(ContentionWarning(
            f"other processes keep {self.others_busy:.1f} of {self.cpus} cores busy; training's "
            f"{self.max_threads} threads wait for each other and may run several times slower: adaptive_threads "
            "(--adaptive-threads) uses only the free cores, at the cost of results that depend on the load"
        ), stacklevel=3)  # fmt: skip

    def restore(self) -> None:
        """Give torch back the thread count it had when the governor started."""
        if self.threads != self.max_threads:
            torch.set_num_threads(self.max_threads)
            self.threads = self.max_threads
