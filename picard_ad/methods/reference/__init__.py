"""The trivial reference maps (brightness, local contrast) that every benchmark reports beside real methods."""

from picard_ad.methods.reference.maps import brightness_map, local_contrast_map
from picard_ad.methods.reference.method import Brightness, BrightnessSettings, LocalContrast, LocalContrastSettings

__all__ = [
    "Brightness",
    "BrightnessSettings",
    "LocalContrast",
    "LocalContrastSettings",
    "brightness_map",
    "local_contrast_map",
]
