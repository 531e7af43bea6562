"""Anomaly methods behind one small interface, one package per method family, built by name from a registry.

``create_method(name, train=..., settings=...)`` builds any registered method, ``list_methods()`` names them,
``load_method(run_dir)`` restores a fitted one. Importing this package registers every family: PICARD ("picard",
``methods/picard``), its comparators of the PICARD paper, CutPaste ("cutpaste", ``methods/cutpaste``) and PatchSVDD
("patchsvdd", ``methods/patchsvdd``), and the trivial references ("brightness", "local-contrast",
``methods/reference``), Zimmerer's VAE, DAE, ceVAE, CRADL and pchVAE ("vae", "dae", "cevae", "cradl", "pchvae",
``methods/vae``), and Davletshina et al.'s radiograph CAE ("cae", ``methods/cae``) and GANs ("dcgan", "alpha-gan",
"bigan", ``methods/gan``). A new family is a package here with its networks, training step, settings and scores,
imported below; a method in another installed package registers through the entry-point group
``picard_ad.methods`` (each entry point names a module whose import registers its methods).
"""

from importlib.metadata import entry_points

from picard_ad.errors import ConfigError
from picard_ad.methods import cae, cutpaste, gan, patchsvdd, picard, reference, vae
from picard_ad.methods.base import (
    AnomalyMethod,
    MethodSettings,
    NotFittedError,
    NoTraining,
    create_method,
    describe_methods,
    list_methods,
    load_method,
    method_class,
    register_method,
)

__all__ = [
    "AnomalyMethod",
    "MethodSettings",
    "NoTraining",
    "NotFittedError",
    "cae",
    "create_method",
    "cutpaste",
    "describe_methods",
    "gan",
    "list_methods",
    "load_method",
    "method_class",
    "patchsvdd",
    "picard",
    "reference",
    "register_method",
    "vae",
]


def _load_plugins() -> None:
    for entry in entry_points(group="picard_ad.methods"):
        try:
            entry.load()
        except Exception as exc:  # a broken plugin names itself instead of breaking every command with a traceback
            raise ConfigError(f"method plugin '{entry.name}' ({entry.value}) failed to load: {exc}") from exc


_load_plugins()
