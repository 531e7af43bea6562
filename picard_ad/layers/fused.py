"""Convolution, activation and channel scale as one oneDNN kernel on the CPU, for inference.

In a PICARD forward on a CPU, the ELUs and dropout multiplies cost more than half as much as the convolutions:
each reads and writes a whole activation map that the convolution has just written out of cache. oneDNN applies
them while the convolution's output is still in registers ("post-ops"); torch reaches that through TorchScript's
oneDNN Graph fuser, which compiles a block traced and frozen for one input shape into one fused partition (20 %
less time per forward of 10 completions of a 256 px window; values differ from torch's by bf16 rounding, as the
activation sees the float32 accumulator instead of the rounded convolution output).

A 3 x 3 convolution after nearest x2 upsampling runs as four 2 x 2 convolutions of the map itself
(``upsampling_phases``), 2.25x fewer FLOPs and no upsampled map; its weights are merged in float32 and then rounded
to the block's dtype.

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


def _activate(x: torch.Tensor, activation: str | None) -> torch.Tensor:
    if activation == "elu":
        return F.elu(x)
    if activation == "relu":
        return F.relu(x)
    if activation == "lrelu":
        return F.leaky_relu(x, LEAKY_RELU_SLOPE)
    return x


class _ConvActivation(nn.Module):
    """What a fused kernel computes: activation(conv2d(x)) [* scale]."""

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        conv: nn.Conv2d,
        padding: int,
        activation: str | None,
        scaled: bool,
    ):
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)
        self.stride, self.dilation, self.padding = conv.stride, conv.dilation, padding
        self.activation, self.scaled = activation, scaled

    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        x = _activate(F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation), self.activation)
        return x * scale if self.scaled else x


def _merge_taps(kernel: torch.Tensor, axis: int, phase: int) -> torch.Tensor:
    """3 taps along ``axis`` -> 2: phase 0 reads map pixels i - 1 (tap 0) and i (taps 1 + 2), phase 1 reads i
    (taps 0 + 1) and i + 1 (tap 2)."""
    first, middle, last = kernel.unbind(axis)
    return torch.stack((first, middle + last) if phase == 0 else (first + middle, last), axis)


def upsampling_phases(weight: torch.Tensor) -> torch.Tensor:
    """A 3 x 3 convolution of a nearest x2 upsampled map as four 2 x 2 convolutions of the map itself.

    Output pixel (2i + a, 2j + b) reads upsampled rows 2i + a - 1 .. 2i + a + 1, which are map rows i - 1, i, i
    for a = 0 and i, i, i + 1 for a = 1 (columns alike): 16 instead of 36 multiply-adds per output pixel and
    input channel, and no upsampled map. weight: (C', C, 3, 3) -> (4 C', C, 2, 2) float32, phases (a, b) =
    (0, 0), (0, 1), (1, 0), (1, 1) in that order. With padding 1, output (i + a, j + b) of phase (a, b) is
    output pixel (2i + a, 2j + b).
    """
    weight = weight.float()
    return torch.cat([_merge_taps(_merge_taps(weight, 2, a), 3, b) for a in (0, 1) for b in (0, 1)])


class FusedConvolution:
    """Fused kernels of one convolution and its activation, one per input shape, dtype and layout.

    conv: a CPU convolution whose weights no longer change (they are frozen into the kernels).
    activation: "elu", "relu", "lrelu" (slope 0.2) or None.
    ``fused(x, scale, padding, upsample)`` gives ``activation(conv(x)) * scale`` in the weights' dtype; scale:
    (N, C, 1, 1) or None; padding: None for the convolution's own, 0 for a valid convolution of a pre-cut window;
    upsample: x is upsampled x2 (nearest) first (for a 3 x 3 "same" convolution with its own padding).
    """

    def __init__(self, conv: nn.Conv2d, activation: str | None):
        if activation not in FUSABLE_ACTIVATIONS:
            raise ValueError(f"activation {activation!r} cannot be fused; fusable: {FUSABLE_ACTIVATIONS}")
        self.conv = conv
        self.activation = activation
        self._kernels: dict[tuple, torch.jit.ScriptModule] = {}

    def __call__(
        self,
        x: torch.Tensor,
        scale: torch.Tensor | None = None,
        padding: int | None = None,
        upsample: bool = False,
    ) -> torch.Tensor:
        x = x.to(self.conv.weight.dtype)  # as autocast would
        if not (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)):
            x = x.contiguous(memory_format=torch.channels_last)
        if upsample:
            return self._upsampled(x, scale, padding)
        padding = self.conv.padding[0] if padding is None else padding
        return self._run(x, scale, padding, upsample=False)

    def __len__(self) -> int:
        """Kernels built so far."""
        return len(self._kernels)

    def _upsampled(self, x: torch.Tensor, scale: torch.Tensor | None, padding: int | None) -> torch.Tensor:
        conv = self.conv
        same_3x3 = (conv.kernel_size, conv.stride, conv.dilation, conv.padding) == ((3, 3), (1, 1), (1, 1), (1, 1))
        if not same_3x3 or padding is not None:
            raise ValueError("only a 3 x 3 'same' convolution (stride 1, dilation 1, padding 1) can run upsampled")
        channels, (height, width) = conv.out_channels, x.shape[-2:]
        phases = self._run(x, None if scale is None else scale.repeat(1, 4, 1, 1), 1, upsample=True)
        layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        shape = (x.shape[0], channels, 2 * height, 2 * width)
        output = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=layout)
        for index, (row, col) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
            phase = phases[:, index * channels : (index + 1) * channels, row : row + height, col : col + width]
            output[:, :, row::2, col::2] = phase
        return output

    def _run(self, x: torch.Tensor, scale: torch.Tensor | None, padding: int, upsample: bool) -> torch.Tensor:
        scaled = scale is not None
        scale = scale.to(x.dtype) if scaled else x.new_ones(())
        key = (x.shape, x.stride(), x.dtype, scale.shape, scale.stride(), padding, scaled, upsample)
        kernel = self._kernels.get(key)
        if kernel is None:
            kernel = self._build(key, x, scale, padding, scaled, upsample)
        # Under autocast, TorchScript would plan the graph again, unfused; the inputs are in the right dtype.
        with torch.autocast(x.device.type, enabled=False):
            return kernel(x, scale)

    def _build(
        self, key: tuple, x: torch.Tensor, scale: torch.Tensor, padding: int, scaled: bool, upsample: bool
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
                weight, bias = self.conv.weight, self.conv.bias
                if upsample:
                    weight = upsampling_phases(weight).to(weight.dtype).contiguous(memory_format=torch.channels_last)
                    bias = None if bias is None else bias.repeat(4)
                module = _ConvActivation(weight, bias, self.conv, padding, self.activation, scaled).eval()
                kernel = torch.jit.freeze(torch.jit.trace(module, inputs, check_trace=False))
                with _onednn_fusion():
                    for _ in range(2):
                        kernel(*inputs)
            self._kernels[key] = kernel
            return kernel
