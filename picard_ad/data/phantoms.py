"""Synthetic breast phantoms that look like a DBT slice or mammogram, with exactly known lesions.

This is a test bed for code and methods, not evidence about patients: the anatomy is a statistical imitation
(breast outline, thickness fall-off at the skin, 1/f^beta fibroglandular texture, fibrous strands, vessels) and
the lesions are simple shapes. Results on phantoms say that software works and how methods rank on a controlled
problem, not how they perform clinically.

Geometry: the breast lies against the left ("L") or right ("R") image edge (the chest wall) on a background of
exactly 0; the nipple points towards the opposite edge. Sizes in millimetres are converted with
``pixel_spacing_mm``; the default 0.25 mm makes the default 1024 x 768 image about as large as a full
2457 x 1996 Duke DBT slice at 0.1 mm.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from picard_ad.config import to_dict
from picard_ad.data.lesions import (
    LESION_KINDS,
    Lesion,
    LesionKind,
    LesionPatch,
    calcification_patch,
    mass_patch,
    place_lesions,
)
from picard_ad.data.texture import breast_anatomy
from picard_ad.errors import InputError
from picard_ad.io.annotations import Box, write_boxes_csv
from picard_ad.io.writers import (
    atomic_write_text,
    write_dicom,
    write_mask_png,
    write_png,
)

__all__ = ["LESION_KINDS", "Lesion", "Phantom", "PhantomConfig", "generate_phantom", "write_phantom_dataset"]

_MIN_TISSUE_INTENSITY = 0.01  # tissue never reaches 0, so it stays distinguishable from the background
_DATASET_FORMAT = "picard-ad phantoms"


def _check_range(name: str, value: tuple[float, float], low: float, high: float | None = None) -> None:
    """Raise ValueError unless ``value`` is (a, b) with low <= a <= b (<= high)."""
    if len(value) != 2 or value[0] > value[1] or value[0] < low or (high is not None and value[1] > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ValueError(f"{name} must be a (min, max) pair {bound} with min <= max, got {tuple(value)}")


@dataclass(frozen=True)
class PhantomConfig:
    """Settings of the phantom generator; field names are the YAML keys and CLI flags.

    Intensities are in image units ([0, 1], tissue bright); lengths in mm are converted with pixel_spacing_mm.
    Pairs (min, max) are ranges from which each image or lesion draws uniformly.
    """

    size: tuple[int, int] = (1024, 768)  # (H, W) in pixels
    pixel_spacing_mm: float = 0.25
    side: Literal["L", "R", "random"] = "random"  # image edge the chest wall lies against
    # Anatomy
    texture_beta: float = 3.0  # exponent of the 1/f^beta power spectrum of the fibroglandular texture
    texture_largest_scale_mm: float = 40.0  # the spectrum flattens above this wavelength
    texture_std: float = 0.3  # std of the texture's fluctuation of the fibroglandular fraction
    breast_density: tuple[float, float] = (0.1, 0.6)  # mean fibroglandular fraction in the central breast
    fat_intensity: float = 0.12  # fatty tissue at full thickness
    dense_intensity: float = 0.65  # fully fibroglandular tissue at full thickness
    fibre_contrast: float = 0.12  # largest peak intensity of a fibrous strand
    fibres_per_cm2: float = 2.0  # fibrous strands per cm^2 of breast, more of them in dense tissue
    compressed_thickness_mm: float = 50.0  # the thickness falls off within half of it from the skin
    skin_thickness_mm: float = 1.0
    skin_contrast: float = 0.2
    n_vessels: int = 10  # bright curvilinear structures (ducts, vessels) from the nipple towards the chest wall
    vessel_width_mm: tuple[float, float] = (0.4, 1.2)
    vessel_contrast: tuple[float, float] = (0.05, 0.12)
    noise_std: float = 0.008  # white noise added to tissue
    # Lesions
    lesion_kinds: tuple[LesionKind, ...] = ("round", "lobulated", "spiculated", "calcification")
    lesions_per_image: tuple[int, int] = (1, 3)  # lesions in each abnormal image of a dataset
    mass_diameter_mm: tuple[float, float] = (6.0, 20.0)
    mass_contrast: tuple[float, float] = (0.1, 0.25)
    calcification_count: tuple[int, int] = (5, 20)  # specks per cluster
    calcification_cluster_mm: tuple[float, float] = (4.0, 12.0)  # cluster diameter
    calcification_speck_mm: tuple[float, float] = (0.25, 1.0)  # speck diameter (at least 1 px)
    calcification_contrast: tuple[float, float] = (0.2, 0.4)

    def __post_init__(self) -> None:
        # Lists from YAML or callers become tuples, so the frozen config stays hashable.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
        if len(self.size) != 2 or min(self.size) < 128:
            raise ValueError(f"size must be (height, width) with both at least 128 pixels, got {self.size}")
        positive = ("pixel_spacing_mm", "texture_largest_scale_mm", "compressed_thickness_mm")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.side not in ("L", "R", "random"):
            raise ValueError(f"side must be 'L', 'R' or 'random', got {self.side!r}")
        if not 0.5 <= self.texture_beta <= 5.0:
            raise ValueError(f"texture_beta must be between 0.5 and 5, got {self.texture_beta}")
        non_negative = (
            "texture_std", "fibre_contrast", "fibres_per_cm2", "skin_thickness_mm", "skin_contrast", "noise_std"
        )
        for name in non_negative:
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be zero or positive, got {getattr(self, name)}")
        if not 0 <= self.fat_intensity < self.dense_intensity <= 1:
            raise ValueError(
                "need 0 <= fat_intensity < dense_intensity <= 1, "
                f"got fat_intensity={self.fat_intensity}, dense_intensity={self.dense_intensity}"
            )
        _check_range("breast_density", self.breast_density, 0.0, 1.0)
        if self.n_vessels < 0:
            raise ValueError(f"n_vessels must be zero or positive, got {self.n_vessels}")
        _check_range("vessel_width_mm", self.vessel_width_mm, 1e-3)
        _check_range("vessel_contrast", self.vessel_contrast, 0.0, 1.0)
        if not self.lesion_kinds:
            raise ValueError(f"lesion_kinds must name at least one of {', '.join(LESION_KINDS)}")
        unknown = [kind for kind in self.lesion_kinds if kind not in LESION_KINDS]
        if unknown:
            raise ValueError(f"unknown lesion kind {unknown[0]!r}; valid kinds: {', '.join(LESION_KINDS)}")
        _check_range("lesions_per_image", self.lesions_per_image, 1)
        _check_range("mass_diameter_mm", self.mass_diameter_mm, 1e-3)
        _check_range("mass_contrast", self.mass_contrast, 1e-3, 1.0)
        _check_range("calcification_count", self.calcification_count, 1)
        _check_range("calcification_cluster_mm", self.calcification_cluster_mm, 1e-3)
        _check_range("calcification_speck_mm", self.calcification_speck_mm, 1e-3)
        _check_range("calcification_contrast", self.calcification_contrast, 1e-3, 1.0)
        if self.mm_to_px(self.mass_diameter_mm[0]) < 4:
            raise ValueError(
                f"mass_diameter_mm minimum {self.mass_diameter_mm[0]} mm is under 4 pixels at "
                f"{self.pixel_spacing_mm} mm per pixel"
            )
        # With its spicules a mass spans up to 2.5 diameters; lesions wider than 40 % of the image's short side
        # would leave too little room to place them inside the breast.
        widest = max(2.5 * self.mm_to_px(self.mass_diameter_mm[1]), self.mm_to_px(self.calcification_cluster_mm[1]))
        if widest > 0.4 * min(self.size):
            raise ValueError(
                f"lesions up to {self.mass_diameter_mm[1]} mm (masses) or {self.calcification_cluster_mm[1]} mm "
                f"(calcification clusters) do not fit in a {self.size[0]} x {self.size[1]} image at "
                f"{self.pixel_spacing_mm} mm per pixel"
            )

    def resized(self, size: tuple[int, int]) -> PhantomConfig:
        """The same breast at another pixel count: the pixel spacing scales so physical sizes stay the same."""
        spacing = self.pixel_spacing_mm * self.size[0] / size[0]
        return dataclasses.replace(self, size=tuple(size), pixel_spacing_mm=spacing)

    def mm_to_px(self, length_mm: float | np.ndarray) -> float | np.ndarray:
        """Length in pixels of ``length_mm`` millimetres (a number or an array)."""
        return length_mm / self.pixel_spacing_mm


@dataclass
class Phantom:
    """One synthetic breast image with its ground truth.

    Attributes:
        image: (H, W) float32 in [0, 1]; exactly 0 outside the breast.
        tissue_mask: (H, W) bool, the breast.
        lesions: lesions, with masks that do not overlap.
        side: "L" or "R", the image edge the chest wall lies against.
        seed: the seed that reproduces this phantom with the same config and lesion count.
    """

    image: np.ndarray
    tissue_mask: np.ndarray
    lesions: list[Lesion] = field(default_factory=list)
    side: str = "L"
    seed: int = 0

    @property
    def lesion_mask(self) -> np.ndarray:
        """(H, W) bool union of the lesion masks."""
        union = np.zeros(self.image.shape, dtype=bool)
        for lesion in self.lesions:
            union |= lesion.mask
        return union


def _lesion_patches(config: PhantomConfig, n_lesions: int, rng: np.random.Generator) -> list[LesionPatch]:
    """Render ``n_lesions`` lesions of kinds, sizes and contrasts drawn from the config, largest first."""
    patches = []
    for _ in range(n_lesions):
        kind = config.lesion_kinds[int(rng.integers(len(config.lesion_kinds)))]
        if kind == "calcification":
            patches.append(
                calcification_patch(
                    n_specks=int(rng.integers(config.calcification_count[0], config.calcification_count[1] + 1)),
                    cluster_diameter_px=config.mm_to_px(rng.uniform(*config.calcification_cluster_mm)),
                    speck_diameter_px=(
                        config.mm_to_px(config.calcification_speck_mm[0]),
                        config.mm_to_px(config.calcification_speck_mm[1]),
                    ),
                    contrast=rng.uniform(*config.calcification_contrast),
                    rng=rng,
                )
            )
        else:
            diameter = config.mm_to_px(rng.uniform(*config.mass_diameter_mm))
            patches.append(mass_patch(kind, diameter, rng.uniform(*config.mass_contrast), rng))
    # Large lesions first: they are the hardest to fit.
    return sorted(patches, key=lambda patch: -patch.reach_px)


def generate_phantom(config: PhantomConfig, seed: int, n_lesions: int = 0) -> Phantom:
    """Generate one phantom; the same (config, seed, n_lesions) always gives the same phantom.

    Args:
        config: generator settings.
        seed: non-negative integer.
        n_lesions: number of lesions (0 for a normal image), of kinds drawn from config.lesion_kinds.

    Raises:
        ValueError: invalid seed or count, or the lesions do not fit in the breast.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(n_lesions, bool) or not isinstance(n_lesions, (int, np.integer)) or n_lesions < 0:
        raise ValueError(f"n_lesions must be a non-negative integer, got {n_lesions!r}")
    rng = np.random.default_rng(int(seed))
    side = config.side if config.side != "random" else ("L", "R")[int(rng.integers(2))]
    image, tissue, depth_px = breast_anatomy(config, rng)
    if side == "R":
        image, tissue, depth_px = (np.ascontiguousarray(a[:, ::-1]) for a in (image, tissue, depth_px))
    patches = _lesion_patches(config, int(n_lesions), rng)
    if patches:
        # Lesions must also stay inside the image where the breast continues past its edges.
        height, width = config.size
        rows, cols = np.ogrid[0:height, 0:width]
        to_border = np.minimum(np.minimum(rows, height - 1 - rows), np.minimum(cols, width - 1 - cols))
        margin = config.mm_to_px(config.skin_thickness_mm) + config.mm_to_px(3.0)
        image, lesions = place_lesions(image, np.minimum(depth_px, to_border), patches, margin, 2, rng)
    else:
        lesions = []
    if config.noise_std > 0:
        image = image + np.float32(config.noise_std) * rng.standard_normal(image.shape, dtype=np.float32)
    image = np.where(tissue, np.clip(image, _MIN_TISSUE_INTENSITY, 1.0), 0.0).astype(np.float32)
    return Phantom(image=image, tissue_mask=tissue, lesions=lesions, side=side, seed=int(seed))


def _image_seed(dataset_seed: int, label: str, index: int) -> tuple[int, int]:
    """(image seed, lesion-count seed) of image ``index`` of ``label``: independent of the dataset's size."""
    words = np.random.SeedSequence([dataset_seed, 0 if label == "normal" else 1, index]).generate_state(2)
    return int(words[0]), int(words[1])


def _check_destination(out_dir: Path, identity: dict[str, Any]) -> None:
    """Refuse to write into a folder that holds a different phantom dataset or files of unknown origin."""
    description = out_dir / "phantoms.json"
    if description.exists():
        try:
            existing = json.loads(description.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InputError(description, f"cannot be read as a phantom dataset description ({error})") from None
        if not isinstance(existing, dict) or existing.get("format") != _DATASET_FORMAT:
            raise InputError(description, "is not a picard-ad phantom dataset description")
        differing = [key for key in identity if existing.get(key) != identity[key]]
        if differing:
            raise InputError(
                out_dir,
                f"already holds a phantom dataset with a different {', '.join(differing)}; "
                "write to an empty folder or delete this one first",
            )
        return
    for name in ("images", "masks", "boxes.csv"):
        path = out_dir / name
        if path.is_file() or (path.is_dir() and any(path.iterdir())):
            raise InputError(
                out_dir,
                f"holds '{name}' but no phantoms.json, so it is not a phantom dataset; write to an empty folder",
            )


def _finished_rows(description: Path, identity: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Manifest rows of a finished dataset written with ``identity``, or None when it must be (re)written."""
    try:
        recorded = json.loads(description.read_text())
    except (OSError, ValueError):
        return None
    if not recorded.get("complete") or any(recorded.get(key) != value for key, value in identity.items()):
        return None
    out_dir = description.parent
    rows = []
    for entry in recorded["images"]:
        if not ((out_dir / entry["image"]).is_file() and (out_dir / entry["mask"]).is_file()):
            return None
        rows.append({"name": entry["name"], "label": entry["label"], "image": str(out_dir / entry["image"]),
                     "mask": str(out_dir / entry["mask"]), "seed": entry["seed"], "side": entry["side"],
                     "n_lesions": len(entry["lesions"])})
    return rows


def write_phantom_dataset(
    out_dir: str | Path,
    n_normal: int,
    n_abnormal: int,
    config: PhantomConfig,
    seed: int = 0,
    image_format: Literal["png", "dcm"] = "png",
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Write a folder of normal and abnormal phantoms with masks, boxes and a description.

    Layout: ``images/<name>.png`` (16-bit) or ``.dcm`` (12-bit MONOCHROME2), ``masks/<name>.png`` (8-bit,
    255 on lesions, empty for normals), ``boxes.csv`` (``image,x,y,width,height,label``, one row per lesion,
    ``image`` = the image file name) and ``phantoms.json`` (config, seeds, side and lesions of every image).
    Names are ``normal_0000``, ..., ``abnormal_0000``, ...; image k's seed comes from (seed, kind, k), so it is
    the same whatever the counts. Every file is written atomically. Writing again with the same arguments
    completes an interrupted dataset and leaves a finished one untouched; a folder holding a different one is
    refused.

    Args:
        out_dir: destination folder (created if missing).
        n_normal, n_abnormal: number of images without and with lesions (lesion count per abnormal image drawn
            from config.lesions_per_image).
        config: generator settings.
        seed: dataset seed (non-negative integer).
        image_format: "png" or "dcm".
        progress: show a progress bar.

    Returns:
        One row per image: name, label ("normal" or "abnormal"), image and mask paths (str), seed, side,
        n_lesions.

    Raises:
        ValueError: invalid counts, seed or format.
        InputError: ``out_dir`` holds another dataset or unrelated images.
    """
    from tqdm import tqdm

    for name, count in (("n_normal", n_normal), ("n_abnormal", n_abnormal), ("seed", seed)):
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {count!r}")
    if n_normal + n_abnormal == 0:
        raise ValueError("n_normal + n_abnormal must be at least 1")
    if image_format not in ("png", "dcm"):
        raise ValueError(f"image_format must be 'png' or 'dcm', got {image_format!r}")
    out_dir = Path(out_dir)
    identity = {
        "format": _DATASET_FORMAT,
        "config": json.loads(json.dumps(to_dict(config))),
        "seed": int(seed),
        "image_format": image_format,
        "n_normal": int(n_normal),
        "n_abnormal": int(n_abnormal),
    }
    _check_destination(out_dir, identity)
    description = out_dir / "phantoms.json"
    finished = _finished_rows(description, identity)
    if finished is not None:  # keep a finished dataset untouched, so later steps see unchanged files
        return finished
    # Claim the folder first, so an interrupted run is recognised and can be completed by the same call.
    atomic_write_text(description, json.dumps({**identity, "complete": False, "images": []}, indent=1))

    jobs = [("normal", k) for k in range(n_normal)] + [("abnormal", k) for k in range(n_abnormal)]
    entries, rows, boxes = [], [], {}
    for label, index in tqdm(jobs, desc="phantoms", unit="image", disable=not progress):
        name = f"{label}_{index:04d}"
        image_seed, count_seed = _image_seed(int(seed), label, index)
        low, high = config.lesions_per_image
        n_lesions = 0 if label == "normal" else int(np.random.default_rng(count_seed).integers(low, high + 1))
        phantom = generate_phantom(config, image_seed, n_lesions)
        image_file, mask_file = f"images/{name}.{image_format}", f"masks/{name}.png"
        if image_format == "png":
            write_png(out_dir / image_file, phantom.image, bit_depth=16)
        else:
            write_dicom(out_dir / image_file, phantom.image, patient_id=name, pixel_spacing_mm=config.pixel_spacing_mm)
        write_mask_png(out_dir / mask_file, phantom.lesion_mask)
        if phantom.lesions:
            boxes[Path(image_file).name] = [lesion.box for lesion in phantom.lesions]
        entries.append(
            {
                "name": name,
                "label": label,
                "image": image_file,
                "mask": mask_file,
                "seed": image_seed,
                "side": phantom.side,
                "lesions": [_lesion_record(lesion) for lesion in phantom.lesions],
            }
        )
        rows.append(
            {
                "name": name,
                "label": label,
                "image": str(out_dir / image_file),
                "mask": str(out_dir / mask_file),
                "seed": image_seed,
                "side": phantom.side,
                "n_lesions": len(phantom.lesions),
            }
        )
    write_boxes_csv(out_dir / "boxes.csv", boxes)
    atomic_write_text(description, json.dumps({**identity, "complete": True, "images": entries}, indent=1))
    return rows


def _lesion_record(lesion: Lesion) -> dict[str, Any]:
    box: Box = lesion.box
    return {
        "kind": lesion.kind,
        "x": box.x,
        "y": box.y,
        "width": box.width,
        "height": box.height,
        "diameter_px": round(lesion.diameter_px, 3),
        "contrast": round(lesion.contrast, 5),
    }
