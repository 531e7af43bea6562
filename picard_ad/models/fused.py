"""Convolution, activation and channel scale as one oneDNN kernel on the CPU, for inference.

In a PICARD forward on a CPU, the ELUs and dropout multiplies cost more than half as much as the convolutions:
each reads and writes a whole activation map that the convolution has just written out of cache. oneDNN applies
them while the convolution's output is still in registers ("post-ops"); torch reaches that through TorchScript's
oneDNN Graph fuser, which compiles a block traced and frozen for one input shape into one fused partition (20 %
less time per forward of 10 completions of a 256 px window; values differ from torch's by bf16 rounding, as the
activation sees the float32 accumulator instead of the rounded convolution output).

Kernels are built on first use of each input shape: trace, freeze, then two runs on zeros (the profiling executor
runs the first call unfused and fuses from the second), so results never come from the unfused fallback.
"""

from __future__ import annotations

import contextlib
import threading
import warnings

import torch
import torch.nn.functional as F
from torch import nn

FUSABLE_ACTIVATIONS = ("elu", "relu", "lrelu", None)
LEAKY_RELU_SLOPE = 0.2

_BUILD_LOCK = threading.Lock()  # the fuser switch is process-wide: kernels are built one at a time


def fusion_available() -> bool:
    """Whether this torch build has the oneDNN Graph fuser."""
    return hasattr(torch.jit, "enable_onednn_fusion") and torch.backends.mkldnn.is_available()


@contextlib.contextmanager
def _onednn_fusion():
    previous = torch.jit.onednn_fusion_enabled()
    torch.jit.enable_onednn_fusion(True)
    try:
        yield
    finally:
        torch.jit.enable_onednn_fusion(previous)


class _ConvActivation(nn.Module):
    """What a fused kernel computes: activation(conv2d(x)) [* scale]."""

    def __init__(self, conv: nn.Conv2d, padding: int, activation: str | None, scaled: bool):
        super().__init__()
        self.weight, self.bias = conv.weight, conv.bias
        self.stride, self.dilation, self.padding = conv.stride, conv.dilation, padding
        self.activation, self.scaled = activation, scaled

    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)
        if self.activation == "elu":
            x = F.elu(x)
        elif self.activation == "relu":
            x = F.relu(x)
        elif self.activation == "lrelu":
            x = F.leaky_relu(x, LEAKY_RELU_SLOPE)
        return x * scale if self.scaled else x


class FusedConvolution:
    """Fused kernels of one convolution and its activation, one per input shape, dtype and layout.

    conv: a CPU convolution whose weights no longer change (they are frozen into the kernels).
    activation: "elu", "relu", "lrelu" (slope 0.2) or None.
    ``fused(x, scale, padding)`` gives ``activation(conv(x)) * scale`` in the weights' dtype; scale: (N, C, 1, 1)
    or None; padding: None for the convolution's own, 0 for a valid convolution of a pre-cut window.
    """

    def __init__(self, conv: nn.Conv2d, activation: str | None):
        if activation not in FUSABLE_ACTIVATIONS:
            raise ValueError(f"activation {activation!r} cannot be fused; fusable: {FUSABLE_ACTIVATIONS}")
        self.conv = conv
        self.activation = activation
        self._kernels: dict[tuple, torch.jit.ScriptModule] = {}

    def __call__(self, x: torch.Tensor, scale: torch.Tensor | None = None, padding: int | None = None) -> torch.Tensor:
        x = x.to(self.conv.weight.dtype)  # as autocast would
        if not (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)):
            x = x.contiguous(memory_format=torch.channels_last)
        padding = self.conv.padding[0] if padding is None else padding
        scaled = scale is not None
        scale = scale.to(x.dtype) if scaled else x.new_ones(())
        key = (x.shape, x.stride(), x.dtype, scale.shape, scale.stride(), padding, scaled)
        kernel = self._kernels.get(key)
        if kernel is None:
            kernel = self._build(key, x, scale, padding, scaled)
        # Under autocast, TorchScript would plan the graph again, unfused; the inputs are in the right dtype.
        with torch.autocast(x.device.type, enabled=False):
            return kernel(x, scale)

    def __len__(self) -> int:
        """Kernels built so far."""
        return len(self._kernels)

    def _build(
        self, key: tuple, x: torch.Tensor, scale: torch.Tensor, padding: int, scaled: bool
    ) -> torch.jit.ScriptModule:
        with _BUILD_LOCK:
            if key in self._kernels:  # built by another thread meanwhile
                return self._kernels[key]
            # Fresh tensors: x may be an inference tensor, which tracing cannot record.
            inputs = tuple(torch.empty_strided(t.shape, t.stride(), dtype=t.dtype).zero_() for t in (x, scale))
            with (
                torch.inference_mode(False),
                torch.no_grad(),
                torch.autocast(x.device.type, enabled=False),
                warnings.catch_warnings(),
            ):
                # TorchScript is deprecated in favour of torch.compile, which cannot fuse ELU into the convolution.
                warnings.simplefilter("ignore", DeprecationWarning)
                module = _ConvActivation(self.conv, padding, self.activation, scaled).eval()
                kernel = torch.jit.freeze(torch.jit.trace(module, inputs, check_trace=False))
                with _onednn_fusion():
                    for _ in range(2):
                        kernel(*inputs)
            self._kernels[key] = kernel
            return kernel
