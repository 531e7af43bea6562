import math

import numpy as np
import pytest
import torch

from picard_ad.errors import ConfigError
from picard_ad.methods.picard import scores as scoring


def test_image_distance_is_the_plain_l2_norm_over_the_hole():
    # gt 0 everywhere; completion 0.5 in every value of a 2 x 4 x 4 hole: sqrt(32 * 0.25) = 2.828...
    truth = torch.zeros(1, 2, 4, 4)
    completions = torch.stack([torch.full((2, 4, 4), 0.5), torch.zeros(2, 4, 4), -torch.ones(2, 4, 4)])[None]
    distances = scoring.image_distances(truth, completions)
    assert distances.shape == (1, 3)
    np.testing.assert_allclose(distances[0].numpy(), [math.sqrt(32 * 0.25), 0.0, math.sqrt(32)], rtol=1e-6)


def test_image_distance_uses_each_windows_own_ground_truth():
    truth = torch.stack([torch.zeros(1, 2, 2), torch.ones(1, 2, 2)])
    completions = torch.zeros(2, 1, 1, 2, 2)
    np.testing.assert_allclose(scoring.image_distances(truth, completions)[:, 0].numpy(), [0.0, 2.0])


def test_feature_distance_hand_computed():
    truth = torch.tensor([[3.0, 0.0], [0.0, 0.0]])
    completions = torch.tensor([[[0.0, 4.0], [3.0, 0.0]], [[1.0, 1.0], [0.0, 0.0]]])
    np.testing.assert_allclose(scoring.feature_distances(truth, completions).numpy(), [[5.0, 0.0], [math.sqrt(2), 0.0]])


def test_shape_mismatches_are_rejected():
    with pytest.raises(ValueError):
        scoring.image_distances(torch.zeros(2, 1, 4, 4), torch.zeros(3, 5, 1, 4, 4))
    with pytest.raises(ValueError):
        scoring.feature_distances(torch.zeros(2, 8), torch.zeros(2, 3, 9))


def test_reductions_min_mean_and_lower_median():
    distances = torch.tensor([[4.0, 1.0, 3.0, 2.0], [5.0, 5.0, 5.0, 5.0]])
    np.testing.assert_allclose(scoring.reduce_distances(distances, "mcd").numpy(), [1.0, 5.0])
    np.testing.assert_allclose(scoring.reduce_distances(distances, "mean").numpy(), [2.5, 5.0])
    # Even M: the lower of the two middle values (2 of 2 and 3), like torch.median, not their mean 2.5.
    np.testing.assert_allclose(scoring.reduce_distances(distances, "median").numpy(), [2.0, 5.0])
    with pytest.raises(ValueError):
        scoring.reduce_distances(distances, "max")


def test_quantile_and_softmin_reductions_by_hand():
    distances = torch.tensor([[4.0, 1.0, 3.0, 2.0], [5.0, 5.0, 5.0, 5.0]])
    # sorted 1 2 3 4: the 0.1 quantile lies 0.3 of the way from 1 to 2 (position 0.1 * 3); 0 is the minimum
    np.testing.assert_allclose(scoring.reduce_distances(distances, "quantile", quantile=0.1).numpy(), [1.3, 5.0])
    np.testing.assert_allclose(scoring.reduce_distances(distances, "quantile", quantile=0.0).numpy(), [1.0, 5.0])
    # t = 0.1 x mean 2.5 = 0.25: -t log((e^-4 + e^-12 + e^-8 + e^-16) / 4) around the minimum 1
    t = 0.25
    by_hand = -t * np.log(np.mean(np.exp(-np.array([4.0, 1.0, 3.0, 2.0]) / t)))
    softmin = scoring.reduce_distances(distances, "softmin", temperature=0.1).numpy()
    np.testing.assert_allclose(softmin, [by_hand, 5.0], rtol=1e-6)
    # the same distances in other units give the same score in those units (t follows the window's mean)
    np.testing.assert_allclose(scoring.reduce_distances(distances * 7, "softmin", temperature=0.1).numpy(),
                               softmin * 7, rtol=1e-6)  # fmt: skip
    # between the minimum (small temperature) and the mean (large)
    cold = scoring.reduce_distances(distances, "softmin", temperature=1e-3).numpy()
    hot = scoring.reduce_distances(distances, "softmin", temperature=1e3).numpy()
    np.testing.assert_allclose(cold, [1.0 + 2.5e-3 * np.log(4), 5.0], rtol=1e-5)
    np.testing.assert_allclose(hot, [2.5, 5.0], rtol=1e-3)
    zeros = scoring.reduce_distances(torch.zeros(1, 3), "softmin")
    assert torch.equal(zeros, torch.zeros(1))


def test_minimum_never_exceeds_median_or_mean():
    distances = torch.rand(200, 7, generator=torch.Generator().manual_seed(0)) * 10
    low = scoring.reduce_distances(distances, "mcd")
    assert torch.all(low <= scoring.reduce_distances(distances, "median"))
    assert torch.all(low <= scoring.reduce_distances(distances, "mean"))
    assert torch.all(scoring.reduce_distances(distances, "median") <= distances.max(dim=1).values)


def test_swiecicki_scores():
    truth = torch.zeros(2, 1, 2, 2)
    completion = torch.stack([torch.full((1, 2, 2), 0.5), torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])])
    mse = scoring.hole_mse(truth, completion)
    np.testing.assert_allclose(mse.numpy(), [0.25, 0.25])
    critic = torch.tensor([[2.0], [-3.0]])
    loss = scoring.critic_loss(critic)
    np.testing.assert_allclose(loss.numpy(), np.log1p(np.exp([-2.0, 3.0])), rtol=1e-6)
    np.testing.assert_allclose(scoring.dmse(mse, loss).numpy(), 0.25 * np.log1p(np.exp([-2.0, 3.0])), rtol=1e-6)


def test_critic_loss_is_positive_and_falls_as_the_critic_accepts():
    outputs = torch.linspace(-50, 50, 101)
    loss = scoring.critic_loss(outputs)
    assert torch.all(loss >= 0)
    assert torch.all(loss[1:] <= loss[:-1])
    assert loss[0] == pytest.approx(50.0, rel=1e-6)  # tends to -D for rejected completions


def test_critic_input_resizes_nearest_only_when_needed():
    holes = torch.arange(4.0).reshape(1, 1, 2, 2)
    assert scoring.critic_input(holes, 2) is holes
    resized = scoring.critic_input(holes, 4)
    np.testing.assert_array_equal(resized[0, 0].numpy(), [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])


def test_score_names_and_needs():
    assert scoring.check_score_names(["mcd-image", "dmse", "mcd-image"]) == ("mcd-image", "dmse")
    with pytest.raises(ConfigError, match="valid scores"):
        scoring.check_score_names(["mcd"])
    needs = scoring.score_needs(("mcd-image",))
    assert needs.pluralistic and not needs.deterministic and not needs.critic_features
    needs = scoring.score_needs(("median-feature", "mse"))
    assert needs.pluralistic and needs.deterministic and needs.critic_features and not needs.critic_output
    assert scoring.score_needs(("critic",)).critic_output
    assert scoring.parse_pluralistic("median-feature") == ("median", "feature")
