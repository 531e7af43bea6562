"""Batched execution of a network over many inputs on one device, for any patch or image scorer.

Two things decide how fast a scorer runs on a CPU besides the network itself: how many samples a forward holds and
how the cores are used. ``BatchedExecutor`` chooses the batch size from free memory and a measured per-sample
footprint, and on the CPU runs one single-threaded forward per core at once instead of splitting every operation
over the cores: the many element-wise operations of a network scale badly over threads, and threads that spin
between operations lose their cores to any other process (measured 2.4x faster with one other busy process on 2
cores). On CUDA one forward runs at a time, as large as memory allows.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from picard_ad.errors import ConfigError
from picard_ad.memory import available_memory as process_memory

CPU_MEMORY_FRACTION = 0.5  # of what is available: the machine is shared and the OS needs page cache
CUDA_MEMORY_FRACTION = 0.8  # of the free device memory: the allocator fragments
CPU_MIN_CAP = 16  # samples per forward: throughput of 256 px PICARD windows on 2 cores was flat from 4 to 16
CPU_FORWARD_BYTES = 64 * 2**20
"""Above CPU_MIN_CAP, a CPU forward grows while its activations stay under this: small windows (64 px) then fill
80-160 samples, which scored 1.5x faster than 16 (fewer, larger operations)."""
CUDA_MAX_SAMPLES = 1024
FALLBACK_MEMORY = 4 * 2**30
"""Bytes assumed available where nothing tells (not Linux, no limits): modest rather than guessed high."""

Job = TypeVar("Job")


class PeakTensorBytes(TorchDispatchMode):
    """Measures the peak bytes of tensor storages alive at once among those the ops under it create."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._storages: dict[int, list[int]] = {}  # data pointer -> [bytes, live tensors using it]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        output = func(*args, **(kwargs or {}))
        for item in tree_flatten(output)[0]:
            if isinstance(item, torch.Tensor):
                self._track(item)
        return output

    def _track(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key in self._storages:
            self._storages[key][1] += 1
        else:
            self._storages[key] = [storage.nbytes(), 1]
            self.live += storage.nbytes()
            self.peak = max(self.peak, self.live)
        weakref.finalize(tensor, self._release, key)

    def _release(self, key: int) -> None:
        entry = self._storages.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.live -= entry[0]
            del self._storages[key]


def reuse_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse instead of returning it to the OS after every tensor.

    Activations of a 256 px window are megabytes each; by default glibc serves them with mmap and unmaps them
    when freed, so every layer of every forward page-faults its output in afresh (a few percent of the CPU
    time, more under memory pressure). Process-wide, so it is for the CLI and benchmarks to call, not the
    library. Returns False where it does not apply (not glibc).
    """
    import ctypes
    import ctypes.util

    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 1 << 30)) and bool(mallopt(m_trim_threshold, 2**31 - 1))


def available_memory(device: torch.device) -> int:
    """Bytes a scorer may fill: a fraction of what this process can still allocate (CPU) or of the free CUDA
    memory."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * CUDA_MEMORY_FRACTION)
    available = process_memory()
    return int((FALLBACK_MEMORY if available is None else available) * CPU_MEMORY_FRACTION)


class BatchedExecutor:
    """Runs forwards of a network on one device: jobs in parallel on the CPU cores, batches sized by memory.

    Args:
        device: where the network runs.
        bf16: forwards run under bf16 autocast.
        batch_size: samples per forward, or None to choose it from free memory (``batch_size``).
        workers: forwards run at once on the CPU, each on its own thread with one torch thread; None: one per
            torch thread. CUDA always uses one.
    """

    def __init__(self, device: torch.device | str, *, bf16: bool, batch_size: int | None = None,
                 workers: int | None = None):  # fmt: skip
        if batch_size is not None and batch_size < 1:
            raise ConfigError(f"batch size must be at least 1 sample, got {batch_size}")
        if workers is not None and workers < 1:
            raise ConfigError(f"workers must be at least 1, got {workers}")
        self.device = torch.device(device)
        self.bf16 = bool(bf16)
        self._fixed_batch_size = batch_size
        self._fixed_workers = workers
        self._auto_batch_size: dict[Hashable, int] = {}
        self.per_sample_bytes: int | None = None  # the last measured footprint, for timings and logs

    @property
    def workers(self) -> int:
        """Forwards run at once: one per torch thread on the CPU unless fixed, one on CUDA."""
        if self.device.type != "cpu":
            return 1
        return self._fixed_workers or torch.get_num_threads()

    def autocast(self):
        """bf16 autocast on the executor's device, or nothing."""
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def run(self, jobs: Sequence[Job], run: Callable[[Job], None]) -> None:
        """``run(job)`` for every job under inference mode and autocast, on ``workers`` threads that split the
        torch threads between them. On an error or Ctrl-C, queued jobs are dropped: only the forwards under way
        are waited for."""
        workers = min(self.workers, len(jobs))
        if workers <= 1:
            for job in jobs:
                self._run_one(run, job)
            return
        threads = torch.get_num_threads()
        torch.set_num_threads(max(1, threads // workers))
        pool = ThreadPoolExecutor(workers, thread_name_prefix="picard-ad-executor")
        try:
            for future in [pool.submit(self._run_one, run, job) for job in jobs]:
                future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            torch.set_num_threads(threads)

    def _run_one(self, run: Callable[[Job], None], job: Job) -> None:
        # Inference mode and autocast are per thread.
        with torch.inference_mode(), self.autocast():
            run(job)

    def batch_size(self, key: Hashable, probe: Callable[[int], Callable[[], None]]) -> int:
        """Samples per forward for inputs of kind ``key`` (e.g. a window size): the fixed size, or the largest
        that fits a share of the free memory, measured once per key and capped (CPU: ``CPU_FORWARD_BYTES`` of
        activations, at least ``CPU_MIN_CAP``; CUDA: ``CUDA_MAX_SAMPLES``).

        probe: ``probe(batch)`` prepares ``batch`` dummy samples and returns the forward to measure on them.
        """
        if self._fixed_batch_size is not None:
            return self._fixed_batch_size
        if key not in self._auto_batch_size:
            per_sample = max(self.sample_bytes(probe), 1)
            cap = CUDA_MAX_SAMPLES if self.device.type == "cuda" else max(CPU_MIN_CAP, CPU_FORWARD_BYTES // per_sample)
            fitting = available_memory(self.device) // per_sample // self.workers
            self._auto_batch_size[key] = int(max(1, min(cap, fitting)))
        return self._auto_batch_size[key]

    def sample_bytes(self, probe: Callable[[int], Callable[[], None]]) -> int:
        """Activation bytes one more sample adds to a forward, measured on 1 and 2 dummy samples (``probe`` as
        for ``batch_size``)."""
        peaks = [self.peak_bytes(probe(batch)) for batch in (1, 2)]
        self.per_sample_bytes = int(max(peaks[1] - peaks[0], peaks[1] // 2))
        return self.per_sample_bytes

    def peak_bytes(self, forward: Callable[[], None]) -> int:
        """Peak bytes of the tensors that ``forward()`` allocates (CUDA: the allocator's peak)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            before = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            with torch.inference_mode(), self.autocast():
                forward()
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) - before
        tracker = PeakTensorBytes()
        with torch.inference_mode(), self.autocast(), tracker:
            forward()
        return tracker.peak

