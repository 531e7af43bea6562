"""The normal images a method is fitted on: image files (a folder, a list file, one file) or samples in memory.

Methods that train networks sample patches from files (``picard_ad.data.patches``), so samples held in memory are
written once as 16-bit PNGs into the run folder; methods that fit statistics read samples, so files are listed as
one lazily loaded sample per 2-D image or volume slice. Either way nothing is decoded before it is needed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from picard_ad.data.patches import ImageEntry, list_training_images
from picard_ad.data.samples import Sample, SliceImage
from picard_ad.errors import InputError
from picard_ad.io.base import SliceOrigin


def _as_sample(item: Sample | np.ndarray, position: int) -> Sample:
    if isinstance(item, Sample):
        return item
    if isinstance(item, np.ndarray):
        return Sample(name=f"image_{position:04d}", patient_id=f"image_{position:04d}", label="normal", image=item)
    raise TypeError(f"normal images are Samples or numpy images, got {type(item).__name__} at position {position}")


@dataclass(frozen=True, eq=False)
class NormalImages:
    """Normal images to fit a method on; build with ``NormalImages.of``.

    source: the folder, list file or image file they were listed from (named in errors); None for samples.
    entries: headers of the image files (volumes sampled slice by slice); None for samples in memory.
    held: the samples given in memory; None for files.
    """

    source: Path | None
    entries: tuple[ImageEntry, ...] | None = None
    held: tuple[Sample, ...] | None = None

    @classmethod
    def of(cls, images: str | Path | Iterable[Sample | np.ndarray]) -> NormalImages:
        """From a folder (searched recursively), a ``.txt`` list of paths or one image file, or from Samples or
        (H, W) float32 arrays in [0, 1]; refuses an empty set and abnormal samples."""
        if isinstance(images, (str, Path)):
            return cls(Path(images), entries=tuple(list_training_images(images)))
        samples = tuple(_as_sample(item, position) for position, item in enumerate(images))
        if not samples:
            raise InputError(None, "fitting needs at least one normal image")
        abnormal = [sample.name for sample in samples if not sample.is_normal]
        if abnormal:
            raise InputError(None, f"methods are fitted on normal images only; abnormal: {', '.join(abnormal[:3])}")
        return cls(None, held=samples)

    def __len__(self) -> int:
        return len(self.held) if self.held is not None else len(self.entries)

    def files(self, folder: Path) -> list[ImageEntry]:
        """The images as files: the listed ones, or the samples written as 16-bit PNGs into ``folder`` (named
        after the samples; rewritten identically by a resumed fit)."""
        if self.entries is not None:
            return list(self.entries)
        from picard_ad.io.writers import write_png

        paths = []
        for sample in self.held:
            path = _written_file(folder, sample)
            write_png(path, sample.load_image(), bit_depth=16)
            paths.append(path)
        return [entry for path in paths for entry in list_training_images(path)]

    def written_origins(self, folder: Path) -> dict[Path, SliceOrigin]:
        """The file slice each held sample was read from (``Sample.origin``), keyed by the file ``files(folder)``
        writes it to; samples without one are left out, and listed files are their own origin (empty)."""
        if self.held is None:
            return {}
        return {_written_file(folder, sample): sample.origin for sample in self.held if sample.origin is not None}

    def samples(self) -> list[Sample]:
        """The images as samples: the held ones, or one per 2-D image file and per slice of a volume, loaded on
        demand and named by their path relative to the source folder (``_sNNNN`` added for volume slices)."""
        if self.held is not None:
            return list(self.held)
        samples = []
        for entry in self.entries:
            base = _relative_name(entry.path, self.source)
            for index in range(entry.n_slices):
                name = base if entry.n_slices == 1 else f"{base}_s{index:04d}"
                samples.append(Sample(name=name, patient_id=base, label="normal",
                                      image=SliceImage(entry.path, index, "auto"), path=entry.path,
                                      slice_index=index))  # fmt: skip
        return samples


def _written_file(folder: Path, sample: Sample) -> Path:
    return folder / f"{sample.name.replace('/', '__')}.png"


def _relative_name(path: Path, source: Path | None) -> str:
    from picard_ad.io.annotations import image_key

    if source is not None and source.is_dir():
        relative = path.relative_to(source)
        return (relative.parent / image_key(relative.name)).as_posix()
    return image_key(path.name)
