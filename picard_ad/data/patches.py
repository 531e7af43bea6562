"""Random tissue patches for training the completion network, reproducible and resumable.

Images are visited in a shuffled order (one epoch = every image once, as in the reference loader). A visit
decodes one image (a random slice of a volume) and stays open in a small pool for ``patches_per_visit`` crops, so
a large DBT volume is not decoded once per patch; each patch comes from a random open visit. Crops are redrawn
until enough of the patch is tissue. Images with a side shorter than the patch are upscaled (bilinear) so their
short side equals the patch, like the reference's ``Resize(256)``.

Everything random comes from one numpy generator plus per-visit seeds derived from (seed, stream, visit), so the
patch sequence depends only on the seed and the stream, and ``state_dict`` / ``load_state_dict`` continue it
exactly. Decoding may run ahead in worker threads: it is a pure function of the visit, so threads never change
the sequence.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from picard_ad.errors import CorruptFileError, InputError, PicardError

logger = logging.getLogger(__name__)

# Crops tried in one open image before it is declared background-only.
MAX_CROP_TRIES = 100
LIST_SUFFIXES = (".txt", ".lst")


@dataclass(frozen=True)
class ImageEntry:
    """One training image as its header describes it (slices > 1: a volume sampled slice by slice)."""

    path: Path
    n_slices: int
    rows: int
    cols: int


def _read_entry(path: Path) -> ImageEntry:
    from picard_ad.io import read_header

    try:
        header = read_header(path)
    except PicardError:
        raise
    except Exception as exc:  # any decoder failure: report it against the file, never skip it
        raise CorruptFileError(path, f"cannot be read as an image ({type(exc).__name__}: {exc})") from exc
    return ImageEntry(Path(path), int(header.n_slices), int(header.rows), int(header.cols))


def _listed_paths(list_file: Path) -> list[Path]:
    paths = []
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        path = Path(line).expanduser()
        if not path.is_absolute():
            path = list_file.parent / path
        if not path.is_file():
            raise InputError(list_file, f"line {number}: {line} does not exist or is not a file")
        paths.append(path)
    return paths


def list_training_images(source: str | Path) -> list[ImageEntry]:
    """The images of a folder (searched recursively), of a ``.txt`` list (one path a line), or one image file.

    Every header is read now, so an unreadable file stops the run at once with an error naming it.
    """
    from picard_ad.io import find_images

    source = Path(source)
    if source.is_dir():
        paths = sorted(find_images(source, recursive=True))
        if not paths:
            raise InputError(source, "no images found in this folder or its subfolders")
    elif source.is_file() and source.suffix.lower() in LIST_SUFFIXES:
        paths = _listed_paths(source)
        if not paths:
            raise InputError(source, "the image list is empty")
    elif source.is_file():
        paths = [source]
    else:
        raise InputError(source, "no such folder or file")
    return [_read_entry(p) for p in paths]


def data_fingerprint(entries: Sequence[ImageEntry]) -> str:
    """A short hash of the image set (names, sizes on disk, geometry) recorded with every checkpoint."""
    digest = hashlib.sha256()
    for entry in sorted(entries, key=lambda e: e.path.name + str(e.path)):
        size = entry.path.stat().st_size if entry.path.exists() else -1
        digest.update(f"{entry.path.name}\t{size}\t{entry.n_slices}\t{entry.rows}\t{entry.cols}\n".encode())
    return digest.hexdigest()[:16]


def upscale_to_patch(pixels: np.ndarray, patch_size: int) -> np.ndarray:
    """Bilinear upscale of an (H, W) image whose short side is below ``patch_size`` to exactly that side."""
    rows, cols = pixels.shape
    if min(rows, cols) >= patch_size:
        return pixels
    scale = patch_size / min(rows, cols)
    size = (max(patch_size, round(rows * scale)), max(patch_size, round(cols * scale)))
    tensor = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))[None, None]
    return F.interpolate(tensor, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


class PatchSampler:
    """Draws (N, patch, patch) float32 tissue patches in [0, 1] from a list of images.

    Args:
        images: the images to sample, e.g. from ``list_training_images``.
        patch_size: side of the square patches, px.
        seed: base seed (>= 0); with ``stream`` it fixes the whole patch sequence.
        stream: independent sequence number (distributed ranks, validation) drawn from the same seed.
        tissue_threshold: intensity in [0, 1] at or above which a pixel counts as tissue.
        min_tissue_fraction: fraction of a patch that must be tissue; 0 means at least one pixel (reference).
        flips: random horizontal and vertical flips.
        pool_size: visits open at once; each patch comes from a random one of them.
        patches_per_visit: crops taken from a decoded image before it is closed.
        num_workers: threads decoding upcoming visits ahead of time (0: decode when needed).
        source: what the images came from (a folder or list), named in errors.
    """

    def __init__(
        self,
        images: Sequence[ImageEntry],
        patch_size: int,
        *,
        seed: int,
        stream: int = 0,
        tissue_threshold: float = 0.005,
        min_tissue_fraction: float = 0.0,
        flips: bool = False,
        pool_size: int = 16,
        patches_per_visit: int = 4,
        num_workers: int = 0,
        source: str | Path | None = None,
    ):
        if not images:
            raise InputError(source, "no images to sample patches from")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.images = list(images)
        self.patch_size = patch_size
        self.seed = seed
        self.stream = stream
        self.tissue_threshold = tissue_threshold
        self.min_tissue_pixels = max(1, math.ceil(min_tissue_fraction * patch_size * patch_size))
        self.min_tissue_fraction = min_tissue_fraction
        self.flips = flips
        self.patches_per_visit = patches_per_visit
        self.source = source
        self._rng = np.random.default_rng((seed, stream, 0))
        self._next_visit = 0
        self._pool: list[list[int] | None] = [None] * pool_size  # [visit, patches left] per open slot
        self._excluded: set[int] = set()
        self._pixels: dict[int, np.ndarray] = {}
        self._executor = ThreadPoolExecutor(num_workers, thread_name_prefix="patch-decode") if num_workers else None
        self._pending: dict[int, Future] = {}
        self._lookahead = 2 * num_workers
        self._epoch_orders: dict[int, np.ndarray] = {}

    # the visit schedule: a pure function of (seed, stream, visit)
    def _image_of_visit(self, visit: int) -> int:
        epoch, position = divmod(visit, len(self.images))
        order = self._epoch_orders.get(epoch)
        if order is None:
            order = np.random.default_rng((self.seed, self.stream, 1, epoch)).permutation(len(self.images))
            self._epoch_orders = {e: o for e, o in self._epoch_orders.items() if e >= epoch - 1}
            self._epoch_orders[epoch] = order
        return int(order[position])

    def _slice_of_visit(self, visit: int) -> int | None:
        n_slices = self.images[self._image_of_visit(visit)].n_slices
        if n_slices <= 1:
            return None
        return int(np.random.default_rng((self.seed, self.stream, 2, visit)).integers(n_slices))

    def _decode(self, image: int, index: int | None) -> np.ndarray:
        from picard_ad.io import read_image

        entry = self.images[image]
        try:
            pixels = read_image(entry.path, index).pixels
        except PicardError:
            raise
        except Exception as exc:  # report decoder failures against the file instead of skipping it
            raise CorruptFileError(entry.path, f"cannot be decoded ({type(exc).__name__}: {exc})") from exc
        pixels = np.asarray(pixels, dtype=np.float32)
        if pixels.ndim != 2:
            raise InputError(entry.path, f"expected a 2D greyscale slice, got an array of shape {pixels.shape}")
        return upscale_to_patch(pixels, self.patch_size)

    def _submit(self, visit: int) -> Future | None:
        if self._executor is None:
            return None
        return self._executor.submit(self._decode, self._image_of_visit(visit), self._slice_of_visit(visit))

    def _prefetch(self) -> None:
        if self._executor is None:
            return
        for visit in range(self._next_visit, self._next_visit + self._lookahead):
            if visit not in self._pending and self._image_of_visit(visit) not in self._excluded:
                self._pending[visit] = self._submit(visit)

    def _pixels_of(self, visit: int) -> np.ndarray:
        if visit not in self._pixels:
            future = self._pending.pop(visit, None)
            if future is not None:
                self._pixels[visit] = future.result()
            else:
                self._pixels[visit] = self._decode(self._image_of_visit(visit), self._slice_of_visit(visit))
        return self._pixels[visit]

    def _open_next_visit(self) -> int:
        if len(self._excluded) == len(self.images):
            self._raise_no_tissue()
        while self._image_of_visit(self._next_visit) in self._excluded:
            self._pending.pop(self._next_visit, None)
            self._next_visit += 1
        visit = self._next_visit
        self._next_visit += 1
        self._pixels_of(visit)
        self._prefetch()
        return visit

    def _close(self, slot: int) -> None:
        entry = self._pool[slot]
        if entry is not None:
            self._pool[slot] = None
            self._pixels.pop(entry[0], None)

    def _raise_no_tissue(self) -> None:
        names = ", ".join(self.images[i].path.name for i in sorted(self._excluded)[:5])
        more = "" if len(self.images) <= 5 else f" and {len(self.images) - 5} more"
        raise InputError(
            self.source,
            f"no image yields a {self.patch_size}x{self.patch_size} patch with tissue (at least "
            f"{self.min_tissue_fraction:g} of the pixels >= {self.tissue_threshold:g}) in {MAX_CROP_TRIES} "
            f"random crops; all {len(self.images)} images look like background: {names}{more}",
        )

    def _crop_with_tissue(self, pixels: np.ndarray) -> np.ndarray | None:
        rows, cols = pixels.shape
        p = self.patch_size
        for _ in range(MAX_CROP_TRIES):
            top = int(self._rng.integers(0, rows - p + 1))
            left = int(self._rng.integers(0, cols - p + 1))
            patch = pixels[top : top + p, left : left + p]
            if np.count_nonzero(patch >= self.tissue_threshold) >= self.min_tissue_pixels:
                return patch
        return None

    def _exclude(self, slot: int) -> None:
        visit = self._pool[slot][0]
        image = self._image_of_visit(visit)
        self._excluded.add(image)
        logger.warning(
            "%s: no %dx%d patch with tissue found in %d random crops; the image is left out of training",
            self.images[image].path, self.patch_size, self.patch_size, MAX_CROP_TRIES,
        )  # fmt: skip
        for other, entry in enumerate(self._pool):
            if entry is not None and self._image_of_visit(entry[0]) == image:
                self._close(other)

    def _draw_one(self) -> np.ndarray:
        while True:
            slot = int(self._rng.integers(len(self._pool)))
            if self._pool[slot] is None:
                self._pool[slot] = [self._open_next_visit(), self.patches_per_visit]
            visit = self._pool[slot][0]
            patch = self._crop_with_tissue(self._pixels_of(visit))
            if patch is None:
                self._exclude(slot)
                continue
            self._pool[slot][1] -= 1
            if self._pool[slot][1] == 0:
                self._close(slot)
            if self.flips:
                flip_rows, flip_cols = self._rng.integers(0, 2, size=2)
                if flip_rows:
                    patch = patch[::-1]
                if flip_cols:
                    patch = patch[:, ::-1]
            return np.ascontiguousarray(patch)

    def sample(self, n: int) -> np.ndarray:
        """(n, patch, patch) float32 patches in [0, 1]."""
        return np.stack([self._draw_one() for _ in range(n)])

    @property
    def excluded_images(self) -> list[Path]:
        """Images left out because no crop of them had enough tissue."""
        return [self.images[i].path for i in sorted(self._excluded)]

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable position of the sampler."""
        return {
            "n_images": len(self.images),
            "patch_size": self.patch_size,
            "rng": self._rng.bit_generator.state,
            "next_visit": self._next_visit,
            "pool": [None if entry is None else list(entry) for entry in self._pool],
            "excluded": sorted(self._excluded),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state_dict()``; open visits are decoded again when next needed."""
        if state["n_images"] != len(self.images) or state["patch_size"] != self.patch_size:
            raise ValueError(
                f"sampler state is for {state['n_images']} images and {state['patch_size']} px patches, "
                f"this sampler has {len(self.images)} images and {self.patch_size} px patches"
            )
        if len(state["pool"]) != len(self._pool):
            raise ValueError(f"sampler state has {len(state['pool'])} pool slots, this sampler {len(self._pool)}")
        self._rng.bit_generator.state = state["rng"]
        self._next_visit = int(state["next_visit"])
        self._pool = [None if entry is None else [int(entry[0]), int(entry[1])] for entry in state["pool"]]
        self._excluded = {int(i) for i in state["excluded"]}
        self._pixels.clear()
        self._pending.clear()
        self._prefetch()

    def close(self) -> None:
        """Stop the decoding threads."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
            self._pending.clear()
