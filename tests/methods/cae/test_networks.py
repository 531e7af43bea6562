"""The CAE's network against the paper's appendix table, and its scores against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from picard_ad.methods.cae import ConvAutoencoder, error_maps, image_scores, masked_mse, score_maps


def _layers(module: nn.Module) -> list[tuple[str, int, int, int]]:
    return [(type(layer).__name__, layer.kernel_size[0], layer.stride[0], layer.out_channels)
            for layer in module.modules() if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d))]  # fmt: skip


def test_the_paper_layout():
    network = ConvAutoencoder(width=16, levels=5)
    encoder = [(kernel, stride, channels) for _, kernel, stride, channels in _layers(network.encoder)]
    assert encoder == [(3, 1, 16), (4, 2, 32), (3, 1, 32), (4, 2, 64), (3, 1, 64), (4, 2, 128), (3, 1, 128),
                       (4, 2, 256), (3, 1, 256), (4, 2, 512)]  # fmt: skip
    decoder = [(kind, kernel, channels) for kind, kernel, _, channels in _layers(network.decoder)]
    assert decoder == [("ConvTranspose2d", 4, 256), ("ConvTranspose2d", 4, 128), ("ConvTranspose2d", 4, 64),
                       ("ConvTranspose2d", 4, 32), ("ConvTranspose2d", 4, 16), ("Conv2d", 3, 1)]  # fmt: skip
    assert network.bottleneck_shape(512) == (16, 16, 512)  # "a spatial resolution of 16x16 and 512 channels"
    assert sum(isinstance(m, nn.BatchNorm2d) for m in network.modules()) == 10 + 5


def test_shapes_and_range():
    network = ConvAutoencoder(width=2, levels=3).eval()
    images = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        code = network.encoder(images)
        output = network(images)
    assert code.shape == (2, 16, 8, 8) and output.shape == images.shape
    assert float(output.min()) >= 0 and float(output.max()) <= 1


def test_masked_mse_by_hand_and_blind_to_the_background():
    target = torch.tensor([[[[0.0, 1.0], [0.5, 0.25]]]])
    reconstruction = torch.tensor([[[[0.5, 0.5], [0.0, 1.0]]]], requires_grad=True)
    mask = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]]])
    loss = masked_mse(reconstruction, target, mask)
    assert loss.item() == pytest.approx((0.25 + 0.25 + 0.5625) / 3)
    loss.backward()
    assert reconstruction.grad[0, 0, 0, 1] == 0  # the background pixel does not train the network
    changed = reconstruction.detach().clone()
    changed[0, 0, 0, 1] = 0.9
    assert float(masked_mse(changed, target, mask)) == pytest.approx(loss.item())
    assert float(masked_mse(changed, target, torch.zeros_like(mask))) == 0.0


def test_image_scores_by_hand():
    rng = np.random.default_rng(0)
    image, reconstruction = rng.random((8, 8)).astype(np.float32), rng.random((8, 8)).astype(np.float32)
    mask = np.zeros((8, 8), bool)
    mask[1:6, 2:7] = True
    errors = error_maps(image, reconstruction, mask)
    squared, absolute = [], []
    for row in range(8):
        for col in range(8):
            if mask[row, col]:
                squared.append((float(image[row, col]) - float(reconstruction[row, col])) ** 2)
                absolute.append(abs(float(image[row, col]) - float(reconstruction[row, col])))
            else:
                assert errors["squared"][row, col] == 0 and errors["absolute"][row, col] == 0
    scores = image_scores(errors, mask, top_k=4)
    assert scores["mse"] == pytest.approx(sum(squared) / len(squared), rel=1e-6)
    assert scores["l1"] == pytest.approx(sum(absolute) / len(absolute), rel=1e-6)
    assert scores["mse-top-k"] == pytest.approx(sum(sorted(squared)[-4:]) / 4, rel=1e-6)
    assert scores["l1-top-k"] == pytest.approx(sum(sorted(absolute)[-4:]) / 4, rel=1e-6)
    # k beyond the mask's pixels: all of them
    assert image_scores(errors, mask, top_k=1000)["mse-top-k"] == pytest.approx(scores["mse"], rel=1e-6)
    assert image_scores(errors, np.zeros_like(mask), top_k=4) == {"mse": 0, "l1": 0, "mse-top-k": 0, "l1-top-k": 0}
    maps = score_maps(errors)
    assert maps["mse"] is maps["mse-top-k"] is errors["squared"] and maps["l1"] is errors["absolute"]
