"""Building blocks shared by the methods' networks: a fusable convolution block and reproducible test-time dropout."""

from picard_ad.layers.conv import ConvBlock, fuse_convolutions, unfused
from picard_ad.layers.dropout import DROPOUT_KINDS, ChannelDropout, DropoutKind
from picard_ad.layers.fused import fusion_available

__all__ = [
    "DROPOUT_KINDS",
    "ChannelDropout",
    "ConvBlock",
    "DropoutKind",
    "fuse_convolutions",
    "fusion_available",
    "unfused",
]
