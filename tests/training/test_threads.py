"""The thread governor: torch's thread count follows the cores other processes leave free, or a warning."""

from __future__ import annotations

import os
import warnings

import pytest
import torch

from picard_ad.training.threads import ContentionWarning, CpuSample, ThreadGovernor, read_cpu_sample


class FakeCpu:
    """Cumulative CPU counters advanced by hand: ``run(seconds, others, own)`` adds ``seconds`` of wall time during
    which other processes kept ``others`` cores busy and this process ``own`` cores."""

    def __init__(self):
        self.busy = self.own = self.wall = 0.0

    def run(self, seconds: float, others: float, own: float) -> None:
        self.wall += seconds
        self.own += own * seconds
        self.busy += (others + own) * seconds

    def __call__(self) -> CpuSample:
        return CpuSample(self.busy, self.own, self.wall)


@pytest.fixture()
def torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_threads_follow_the_cores_other_processes_leave_free(torch_threads):
    cpu = FakeCpu()
    governor = ThreadGovernor(adapt=True, max_threads=4, interval_s=2.0, sample=cpu, cpus=4)
    cpu.run(1.0, others=3.0, own=1.0)
    assert governor.update() is None and governor.threads == 4  # within the interval: not measured yet
    cpu.run(1.5, others=3.0, own=1.0)
    assert governor.update() == 1 and torch.get_num_threads() == 1  # 2.5 s with 3 of 4 cores busy elsewhere
    assert governor.others_busy == pytest.approx(3.0)
    cpu.run(2.0, others=1.8, own=1.0)
    assert governor.update() == 2  # 2.2 cores free: 2 threads
    cpu.run(2.0, others=1.8, own=2.0)
    assert governor.update() is None and governor.threads == 2  # the same decision: nothing set
    cpu.run(2.0, others=0.7, own=2.0)
    assert governor.update() == 3  # 3.3 free
    cpu.run(2.0, others=0.7, own=3.0)
    assert governor.update() is None  # 3.3 free stays 3: a core used a quarter of the time elsewhere is not taken
    cpu.run(2.0, others=0.0, own=3.0)
    assert governor.update() == 4 and torch.get_num_threads() == 4
    cpu.run(2.0, others=9.0, own=4.0)  # counters of CPUs outside the allowed ones cannot push below one thread
    assert governor.update() == 1 and governor.others_busy == 4.0
    governor.restore()
    assert torch.get_num_threads() == 4 and governor.threads == 4


def test_fixed_threads_never_change_and_warn_once_after_sustained_contention(torch_threads):
    torch.set_num_threads(2)
    cpu = FakeCpu()
    governor = ThreadGovernor(adapt=False, interval_s=2.0, sample=cpu, cpus=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(10):  # 20 s busy, then a break: the count starts again
            cpu.run(2.0, others=1.0, own=1.0)
            assert governor.update() is None
        cpu.run(2.0, others=0.2, own=2.0)
        governor.update()
        for _ in range(14):  # 28 s
            cpu.run(2.0, others=1.0, own=1.0)
            governor.update()
        assert caught == [] and torch.get_num_threads() == 2
        for _ in range(5):  # past 30 s without a break: one warning, and only one
            cpu.run(2.0, others=1.0, own=1.0)
            governor.update()
    assert [type(w.message) for w in caught] == [ContentionWarning]
    assert "keep 1.0 of 2 cores busy" in str(caught[0].message) and "--adaptive-threads" in str(caught[0].message)
    assert torch.get_num_threads() == 2


def test_without_proc_stat_the_governor_does_nothing(torch_threads):
    governor = ThreadGovernor(adapt=True, max_threads=2, sample=lambda: None, cpus=2)
    assert governor.update() is None and governor.threads == 2


def test_proc_stat_is_read_for_the_allowed_cpus_only(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text(
        "cpu  900 0 900 900 0 0 0 0 0 0\n"
        "cpu0 100 20 30 1000 50 4 6 40 0 0\n"  # busy: user nice system irq softirq steal = 200 ticks
        "cpu1 500 0 300 10 0 0 0 0 0 0\n"
        "intr 12345\n"
    )
    ticks = os.sysconf("SC_CLK_TCK")
    assert read_cpu_sample(frozenset({0}), stat).busy_s == pytest.approx(200 / ticks)
    assert read_cpu_sample(frozenset({0, 1}), stat).busy_s == pytest.approx(1000 / ticks)
    assert read_cpu_sample(frozenset({0}), tmp_path / "missing") is None
