"""The speed measurement of docs/patchsvdd.md runs end to end (on a small slice and bank)."""

from __future__ import annotations

import pytest

from picard_ad.methods.patchsvdd.speed import measure_speed


def test_the_speed_measurement_runs_on_a_small_slice(one_torch_thread):
    report = measure_speed(bank_size=3000, windows=4, brute_force_windows=1, slice_shape=(600, 480), base_windows=16)
    assert report.measured_windows == 4 and report.bank_windows == 3000 and report.slice_tissue_windows >= 20
    assert report.seconds_per_window == pytest.approx(report.encoder_s_per_window + report.search_s_per_window,
                                                      abs=1e-4)  # fmt: skip
    assert report.slice_seconds > 0 and report.brute_force_s_per_window > 0
