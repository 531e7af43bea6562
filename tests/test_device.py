import pytest
import torch

from picard_ad.device import resolve_device
from picard_ad.errors import ConfigError


def test_cpu_and_auto_without_a_gpu():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        resolve_device("cuda:1")


def test_unknown_device_name():
    with pytest.raises(ConfigError, match="'auto', 'cpu', 'cuda' or 'cuda:N'"):
        resolve_device("tpu0")
