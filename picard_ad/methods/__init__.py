"""Anomaly methods behind one small interface, and trivial reference heatmaps.

``create_method(name, **config)`` builds any registered method, ``list_methods()`` names them, and
``AnomalyMethod.load(folder)`` restores a saved one. Importing this package registers PICARD ("picard") and the
reference methods ("brightness", "local-contrast").
"""

from picard_ad.methods import picard, reference
from picard_ad.methods.base import (
    AnomalyMethod,
    NotFittedError,
    create_method,
    list_methods,
    method_class,
    register_method,
)

__all__ = [
    "AnomalyMethod",
    "NotFittedError",
    "create_method",
    "list_methods",
    "method_class",
    "picard",
    "reference",
    "register_method",
]
