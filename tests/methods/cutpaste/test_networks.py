"""The encoder is ResNet-18 shaped, folding its batch norms changes nothing, and the embedder's paths agree."""

import numpy as np
import torch

from picard_ad.methods.cutpaste import (
    PRESETS,
    CutPaste,
    ProjectionHead,
    ResNet18Encoder,
    WindowEmbedder,
    fold_batch_norms,
)


def test_the_paper_encoder_is_resnet18_for_grey_images():
    encoder = ResNet18Encoder()
    assert encoder.embedding_dim == 512
    # torchvision's resnet18 has 11,689,512 parameters; less its 1000-way fc (513,000) and two colour channels of
    # the stem (2 x 64 x 7 x 7 = 6,272)
    assert sum(p.numel() for p in encoder.parameters()) == 11_689_512 - 513_000 - 6_272
    lines = CutPaste.describe_architecture(PRESETS["paper"])
    assert "11.17 M parameters" in lines[0] and "2.27 G multiply-adds per 256 px window" in lines[0]
    assert ProjectionHead(512)(torch.zeros(2, 512)).shape == (2, 3)


def test_folded_batch_norms_compute_the_same_embedding():
    torch.manual_seed(0)
    encoder = ResNet18Encoder(width=4)
    with torch.no_grad():  # running statistics away from their initial values
        for _ in range(3):
            encoder(torch.rand(6, 1, 40, 40))
    encoder.eval()
    windows = torch.rand(5, 1, 40, 40)
    with torch.no_grad():
        np.testing.assert_allclose(fold_batch_norms(encoder)(windows), encoder(windows), rtol=1e-4, atol=1e-5)


def test_the_embedders_fused_and_eager_paths_agree(one_torch_thread):
    torch.manual_seed(1)
    encoder = ResNet18Encoder(width=4).eval()
    windows = np.random.default_rng(0).random((11, 32, 32), dtype=np.float32)
    with torch.no_grad():
        expected = encoder(torch.from_numpy(windows)[:, None]).numpy()
    for fused in (False, True):
        embedder = WindowEmbedder(encoder, device="cpu", bf16=False, channels_last=True, fused=fused, batch_size=4)
        np.testing.assert_allclose(embedder(windows), expected, rtol=1e-4, atol=1e-5)
    assert embedder(windows[:0]).shape == (0, 32)
