"""picard-ad: unsupervised anomaly localization in medical images."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("picard-ad")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+local"
