"""The exact-against-approximate comparison of docs/patchsvdd.md runs end to end (tiny fit, one phantom)."""

from __future__ import annotations

import pytest

from picard_ad.methods.patchsvdd.search_comparison import phantom_benchmark


def test_the_comparison_reports_every_score(tmp_path, one_torch_thread):
    pytest.importorskip("faiss")
    result = phantom_benchmark(tmp_path / "run", n_normal=2, n_abnormal=1, size=(192, 160), preset="tiny",
                               progress=False)  # fmt: skip
    assert result.n_images == 1 and set(result.scores) == {"nn-distance", "nn-distance-window", "nn-distance-centre"}
    for comparison in result.scores.values():
        assert 0.0 <= comparison.changed_windows <= 1.0 and comparison.max_relative_difference >= 0.0
        assert 0.0 <= comparison.auroc_exact <= 1.0 and 0.0 <= comparison.auroc_approximate <= 1.0
    assert result.ivf_probes <= result.ivf_lists and result.bank_windows > 0
