"""The bfloat16 ELU kernel against torch's ELU, on every bfloat16 value."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from picard_ad.models.fast_elu import ELU, _compiled_kernel

pytestmark = pytest.mark.skipif(_compiled_kernel() is None, reason="numba is not installed")


def _every_bfloat16() -> torch.Tensor:
    return torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(torch.bfloat16)


def test_equals_torch_for_every_bfloat16_value():
    values = _every_bfloat16()
    expected = F.elu(values.float()).to(torch.bfloat16)
    with torch.inference_mode():
        result = ELU(inplace=True)(values.clone())
    both_nan = result.isnan() & expected.isnan()
    assert int(both_nan.sum()) == int(values.isnan().sum()) > 0
    assert torch.equal(result[~both_nan].view(torch.int16), expected[~both_nan].view(torch.int16))


def test_runs_in_place_on_channels_last_maps_and_leaves_other_cases_to_torch():
    generator = torch.Generator().manual_seed(0)
    x = (3 * torch.randn(2, 8, 5, 7, generator=generator)).to(torch.bfloat16)
    expected = F.elu(x)
    channels_last = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        assert ELU(inplace=True)(channels_last) is channels_last
        out_of_place = x.clone()
        assert torch.equal(ELU()(out_of_place), expected) and torch.equal(out_of_place, x)
        strided = x.clone()[..., ::2]
        torch.testing.assert_close(ELU(inplace=True)(strided), F.elu(x[..., ::2]), rtol=0, atol=0)
    assert torch.equal(channels_last, expected)


def test_keeps_gradients_in_training():
    x = torch.randn(3, 4, dtype=torch.bfloat16, requires_grad=True)
    y = ELU(inplace=True)(x * 1.0)
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.where(x > 0, 1.0, torch.exp(x.float())).to(torch.bfloat16))
