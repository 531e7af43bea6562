import time

import numpy as np
import pytest
import torch
from networks import lively_generator

from picard_ad.errors import ConfigError
from picard_ad.layers import ConvBlock
from picard_ad.layers.fused import fusion_available
from picard_ad.localize import executor as executor_module
from picard_ad.methods.picard import LocalCritic, resolve_dropout_layers
from picard_ad.methods.picard.engine import CompletionEngine, completion_seeds
from picard_ad.methods.picard.scores import RAW_SCORES

PATCH, MASK, M = 64, 32, 3


def tiny_critic(seed: int = 0) -> LocalCritic:
    torch.manual_seed(seed)
    return LocalCritic(1, 4, MASK).eval()


def make_engine(**kwargs) -> CompletionEngine:
    options = {
        "mask_size": MASK, "n_completions": M, "dropout_layers": resolve_dropout_layers("paper"), "seed": 7,
        "bf16": False, "channels_last": False, "batch_size": None,
    }
    options.update(kwargs)
    return CompletionEngine(lively_generator(), tiny_critic(), **options)


@pytest.fixture(autouse=True)
def _single_thread(one_torch_thread):
    """Every test here runs torch on one thread (the shared fixture in tests/conftest.py)."""


@pytest.fixture(scope="module")
def windows():
    rng = np.random.default_rng(3)
    return rng.random((5, PATCH, PATCH)).astype(np.float32), np.array([0, 3, 4, 9, 20])


def test_seeds_are_distinct_and_depend_only_on_run_window_and_completion():
    seeds = completion_seeds(7, np.array([0, 5, 9]), 4)
    assert seeds.shape == (12,) and seeds.dtype == torch.int64
    assert len(set(seeds.tolist())) == 12
    assert seeds[4:8].tolist() == completion_seeds(7, np.array([5]), 4).tolist()
    assert not set(seeds.tolist()) & set(completion_seeds(8, np.array([0, 5, 9]), 4).tolist())
    with pytest.raises(ConfigError):
        completion_seeds(2**31, np.array([0]), 4)


def test_scores_do_not_depend_on_the_batch_size(windows):
    images, indices = windows
    results = [make_engine(batch_size=size).score(images, indices, RAW_SCORES) for size in (1, 7, None)]
    for other in results[1:]:
        for name in RAW_SCORES:
            # Convolution algorithms differ with the batch size, so equality is up to float32 rounding.
            np.testing.assert_allclose(other[name], results[0][name], rtol=1e-4, atol=1e-5, err_msg=name)
    reseeded = make_engine(seed=8).score(images, indices, ["mcd-image"])["mcd-image"]
    assert np.abs(reseeded - results[0]["mcd-image"]).max() > 1e-3  # the seed, not chance, fixes the result


def test_scores_do_not_depend_on_the_thread_count(windows):
    images, indices = windows[0][:2], windows[1][:2]  # two threads crawl when the other core is busy: keep it small
    one = make_engine(batch_size=6).score(images, indices, ["mcd-image", "mcd-feature"])
    torch.set_num_threads(2)
    two = make_engine(batch_size=6).score(images, indices, ["mcd-image", "mcd-feature"])
    for name in one:
        np.testing.assert_allclose(two[name], one[name], rtol=1e-4, atol=1e-5)


def test_a_windows_scores_do_not_depend_on_the_other_windows(windows):
    images, indices = windows
    together = make_engine().score(images, indices, ["mean-image"])["mean-image"]
    alone = make_engine().score(images[2:3], indices[2:3], ["mean-image"])["mean-image"]
    np.testing.assert_allclose(alone, together[2:3], rtol=1e-5)


def test_one_completion_without_dropout_is_the_deterministic_distance(windows):
    images, indices = windows
    engine = make_engine(n_completions=1, dropout_p=0.0)
    scores = engine.score(images, indices, ["mcd-image", "mean-image", "median-image", "mse"])
    generator = lively_generator()
    image = torch.from_numpy(images)[:, None] * 2 - 1
    mask = torch.zeros(len(images), 1, PATCH, PATCH)
    mask[..., 16:48, 16:48] = 1
    with torch.no_grad():
        completed = generator.complete(image, mask)
    hole = slice(16, 48)
    expected = torch.linalg.vector_norm((completed - image)[..., hole, hole].flatten(1), dim=1).numpy()
    for name in ("mcd-image", "mean-image", "median-image"):
        np.testing.assert_allclose(scores[name], expected, rtol=1e-5)
    np.testing.assert_allclose(scores["mse"], expected**2 / (MASK * MASK), rtol=1e-5)


def test_dropout_completions_differ_and_reductions_are_ordered(windows):
    images, indices = windows
    scores = make_engine(n_completions=5).score(images, indices, ["mcd-image", "median-image", "mean-image"])
    assert np.all(scores["mcd-image"] <= scores["median-image"])
    assert np.all(scores["mcd-image"] <= scores["mean-image"])
    assert np.all(scores["mcd-image"] < scores["mean-image"] - 1e-3)  # the M completions really differ


def test_quantile_and_softmin_scores_come_from_the_same_completions(windows):
    images, indices = windows
    names = ["mcd-image", "mean-image", "quantile-image", "softmin-feature", "mcd-feature", "mean-feature"]
    at_minimum = make_engine(n_completions=5, quantile=0.0, softmin_temperature=1e-4).score(images, indices, names)
    np.testing.assert_allclose(at_minimum["quantile-image"], at_minimum["mcd-image"], rtol=1e-6)
    np.testing.assert_allclose(at_minimum["softmin-feature"], at_minimum["mcd-feature"], rtol=1e-3)
    between = make_engine(n_completions=5, quantile=0.5, softmin_temperature=1.0).score(images, indices, names)
    assert np.all(between["mcd-image"] < between["quantile-image"])
    assert np.all(between["mcd-feature"] < between["softmin-feature"])
    assert np.all(between["softmin-feature"] <= between["mean-feature"] + 1e-6)


def test_ground_truth_features_are_computed_once_per_window(windows):
    images, indices = windows
    engine = make_engine(batch_size=4)
    calls = []
    features = engine.critic.features

    def counting(x):
        calls.append(x.shape[0])
        return features(x)

    engine.critic.features = counting
    engine.score(images, indices, ["mcd-feature", "mean-feature"])
    n_windows = len(images)
    assert calls[0] == n_windows  # phi(gt) of all windows in one call
    assert sum(calls) == n_windows + n_windows * M  # + one phi per completion, nothing recomputed


def test_adaptive_batch_size_follows_free_memory(monkeypatch):
    engine = make_engine()
    per_sample = engine.measure_sample_bytes(PATCH)
    assert 10_000 < per_sample < 50_000_000
    monkeypatch.setattr(executor_module, "available_memory", lambda device: 3 * per_sample + 1)
    assert engine.batch_size(PATCH) == 3
    roomy = make_engine()
    monkeypatch.setattr(executor_module, "available_memory", lambda device: 10**15)
    # Small windows fill a forward up to CPU_FORWARD_BYTES of activations, never fewer than CPU_MIN_CAP samples.
    expected = max(executor_module.CPU_MIN_CAP, executor_module.CPU_FORWARD_BYTES // roomy.measure_sample_bytes(PATCH))
    assert roomy.batch_size(PATCH) == expected > executor_module.CPU_MIN_CAP


def test_scores_needing_the_critic_fail_clearly_without_it():
    engine = CompletionEngine(lively_generator(), None, mask_size=MASK, n_completions=2)
    with pytest.raises(ConfigError, match="critic"):
        engine.scorer(["mcd-feature"])
    assert set(engine.scorer(["mcd-image", "mse"])(np.zeros((1, PATCH, PATCH), np.float32), np.array([0]))) == {
        "mcd-image", "mse",
    }


def test_bf16_channels_last_scores_stay_close_to_float32(windows):
    images, indices = windows
    exact = make_engine().score(images, indices, ["mcd-image"])["mcd-image"]
    fast = make_engine(bf16=True, channels_last=True).score(images, indices, ["mcd-image"])["mcd-image"]
    np.testing.assert_allclose(fast, exact, rtol=0.05)


def test_fused_kernels_give_the_plain_scores(windows):
    images, indices = windows
    engine = make_engine(batch_size=5)
    assert engine.fused == fusion_available()
    fused = engine.score(images, indices, RAW_SCORES)
    plain_engine = make_engine(batch_size=5, fused=False)
    assert not plain_engine.fused
    plain = plain_engine.score(images, indices, RAW_SCORES)
    for name in RAW_SCORES:
        np.testing.assert_allclose(fused[name], plain[name], rtol=1e-4, atol=1e-5, err_msg=name)
    blocks = [block for block in engine.generator.modules() if isinstance(block, ConvBlock)]
    assert fusion_available() == all(block.fused is not None and len(block.fused) > 0 for block in blocks)


def test_parallel_workers_give_the_same_scores(windows):
    images, indices = windows
    one = make_engine(batch_size=4, workers=1).score(images, indices, RAW_SCORES)
    engine = make_engine(batch_size=4, workers=3)
    three = engine.score(images, indices, RAW_SCORES)
    for name in RAW_SCORES:
        np.testing.assert_array_equal(three[name], one[name], err_msg=name)  # same forwards, one thread each
    assert engine.timings.completions == len(images) * (M + 1)
    assert torch.get_num_threads() == 1  # the torch threads are given back
    with pytest.raises(ConfigError, match="workers"):
        make_engine(workers=0)


def test_a_failing_forward_stops_the_workers_and_gives_the_threads_back(windows, monkeypatch):
    images, indices = windows
    engine = make_engine(batch_size=3, workers=2)
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        time.sleep(0.2)  # a forward takes time: the queue must not be drained before the error is seen
        raise RuntimeError("out of memory")

    monkeypatch.setattr(engine, "_complete_holes", failing)
    with pytest.raises(RuntimeError, match="out of memory"):
        engine.score(images, indices, ["mcd-image"])
    assert len(calls) < len(images)  # queued forwards were dropped, not run
    assert torch.get_num_threads() == 1
