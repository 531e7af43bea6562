"""The batched executor: memory-sized batches, parallel single-threaded forwards, and reading free memory."""

from __future__ import annotations

import threading

import pytest
import torch

from picard_ad.errors import ConfigError
from picard_ad.localize import executor as executor_module
from picard_ad.localize.executor import BatchedExecutor, available_memory


def test_available_memory_is_half_of_what_the_process_has_or_of_the_fallback(monkeypatch):
    monkeypatch.setattr(executor_module, "process_memory", lambda: 8 * 2**30)
    assert available_memory(torch.device("cpu")) == 4 * 2**30
    monkeypatch.setattr(executor_module, "process_memory", lambda: None)
    assert available_memory(torch.device("cpu")) == executor_module.FALLBACK_MEMORY // 2


def _probe(bytes_per_sample: int):
    """probe(batch) for ``batch_size``: a forward that allocates ``bytes_per_sample`` per sample."""

    def prepare(batch: int):
        return lambda: torch.empty(batch * bytes_per_sample // 4, dtype=torch.float32).fill_(1.0)

    return prepare


def test_batch_size_fills_the_free_memory_share_and_respects_the_caps(monkeypatch):
    executor = BatchedExecutor("cpu", bf16=False, workers=2)
    per_sample = 4 * 2**20
    assert executor.sample_bytes(_probe(per_sample)) == per_sample
    monkeypatch.setattr(executor_module, "available_memory", lambda device: 10 * per_sample)
    assert executor.batch_size("small", _probe(per_sample)) == 5  # 10 samples' worth shared by 2 workers
    roomy = BatchedExecutor("cpu", bf16=False, workers=1)
    monkeypatch.setattr(executor_module, "available_memory", lambda device: 10**15)
    assert roomy.batch_size("big", _probe(per_sample)) == executor_module.CPU_FORWARD_BYTES // per_sample
    assert roomy.batch_size("big", _probe(1)) == executor_module.CPU_FORWARD_BYTES // per_sample  # cached per key
    assert BatchedExecutor("cpu", bf16=False, batch_size=7).batch_size("any", _probe(per_sample)) == 7


def test_jobs_run_on_the_workers_under_inference_mode_with_one_thread_each():
    seen = []
    lock = threading.Lock()
    both = threading.Barrier(2)  # the first two jobs can only finish together: two workers run at once

    def run(job: int) -> None:
        if job < 2:
            both.wait(timeout=10)
        with lock:
            seen.append((job, torch.is_inference_mode_enabled(), torch.get_num_threads(), threading.get_ident()))

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        BatchedExecutor("cpu", bf16=False, workers=2).run(list(range(8)), run)
        assert torch.get_num_threads() == 2  # restored
    finally:
        torch.set_num_threads(threads)
    assert sorted(job for job, *_ in seen) == list(range(8))
    assert all(inference and n_threads == 1 for _, inference, n_threads, _ in seen)
    assert len({ident for *_, ident in seen}) == 2


def test_an_error_drops_the_queued_jobs():
    started = []

    def run(job: int) -> None:
        started.append(job)
        if job == 0:
            raise RuntimeError("broken forward")

    with pytest.raises(RuntimeError, match="broken forward"):
        BatchedExecutor("cpu", bf16=False, workers=1).run(list(range(5)), run)
    assert started == [0]


def test_bad_sizes_are_refused():
    with pytest.raises(ConfigError, match="batch size"):
        BatchedExecutor("cpu", bf16=False, batch_size=0)
    with pytest.raises(ConfigError, match="workers"):
        BatchedExecutor("cpu", bf16=False, workers=0)
