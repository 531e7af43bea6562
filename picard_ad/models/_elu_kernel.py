"""The numba kernel behind ``picard_ad.models.fast_elu`` (imported only when that is first used: numba is slow to
import)."""

from __future__ import annotations

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic


def _bit_cast(source: types.Type, target: types.Type):
    """A numba intrinsic reinterpreting a ``source`` scalar's bits as ``target`` (same width)."""

    @intrinsic
    def cast(typing_context, value):
        def codegen(context, builder, signature, arguments):
            return builder.bitcast(arguments[0], context.get_value_type(target))

        return target(source), codegen

    return cast


_as_float32 = _bit_cast(types.uint32, types.float32)
_as_uint32 = _bit_cast(types.float32, types.uint32)

_LOG2E = np.float32(1.4426950408889634)
# ln 2 split so that k * _LN2_HIGH is exact for the k that occur (|k| <= 29): Cody-Waite range reduction.
_LN2_HIGH = np.float32(0.693145751953125)
_LN2_LOW = np.float32(1.428606765330187e-06)
_LOWEST = np.float32(-20.0)
"""Inputs below this give -1 in float32 already (exp(-20) = 2e-9); clamping keeps 2**k a normal float."""


@numba.njit(nogil=True, cache=True, boundscheck=False, error_model="numpy")
def elu_bfloat16_bits(bits: np.ndarray) -> None:
    """ELU (alpha 1) in place on bfloat16 values given as their uint16 bit patterns (a 1-D array)."""
    for index in range(bits.shape[0]):
        x = _as_float32(np.uint32(bits[index]) << np.uint32(16))
        # Comparisons, not min / max: they compile to vector selects.
        clamped = x if x < np.float32(0.0) else np.float32(0.0)  # noqa: FURB136
        clamped = clamped if clamped > _LOWEST else _LOWEST  # noqa: FURB136
        # exp(clamped) - 1 = 2**k (1 + expm1(r)) - 1 with r = clamped - k ln 2, |r| <= ln 2 / 2.
        k = -np.int32(np.float32(0.5) - clamped * _LOG2E)  # rounds to nearest: the argument is >= 0.5
        r = (clamped - np.float32(k) * _LN2_HIGH) - np.float32(k) * _LN2_LOW
        power = _as_float32(np.uint32((k + np.int32(127)) << np.int32(23)))
        series = r + r * r * (
            np.float32(1 / 2)
            + r * (np.float32(1 / 6) + r * (np.float32(1 / 24) + r * (np.float32(1 / 120) + r * np.float32(1 / 720))))
        )
        negative = power * series + (power - np.float32(1.0))
        result = negative if x < np.float32(0.0) else x  # NaN stays NaN, -0 stays -0
        # Round to nearest even bfloat16.
        word = _as_uint32(result)
        bits[index] = np.uint16((word + np.uint32(0x7FFF) + ((word >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16))
