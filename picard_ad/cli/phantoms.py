"""``picard-ad phantoms``: write the embedded synthetic breast-phantom dataset."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import click

from picard_ad.config import load_config, save_config, to_dict
from picard_ad.data.phantoms import PhantomConfig


@dataclass(frozen=True)
class PhantomsJob:
    """What ``picard-ad phantoms`` writes; YAML keys and flags share these names (``--size`` is ``phantom.size``)."""

    normal: int = 20
    abnormal: int = 5
    seed: int = 0
    format: Literal["png", "dcm"] = "png"
    phantom: PhantomConfig = field(default_factory=PhantomConfig)

    def __post_init__(self) -> None:
        if self.normal < 0 or self.abnormal < 0 or self.normal + self.abnormal == 0:
            raise ValueError("need --normal and --abnormal >= 0 and at least one image in total")


@click.command("phantoms")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output folder.")
@click.option("--normal", type=int, help="Number of normal images [20].")
@click.option("--abnormal", type=int, help="Number of images with lesions [5].")
@click.option("--size", nargs=2, type=int, metavar="H W",
              help="Image size in pixels [1024 768]; the breast keeps its physical size unless --pixel-spacing "
                   "is given, so 2457 1996 gives DBT-like 0.1 mm pixels.")
@click.option("--pixel-spacing", type=float, help="Pixel spacing in mm [0.25 at 1024 rows].")
@click.option("--seed", type=int, help="Dataset seed; image k is the same whatever the counts [0].")
@click.option("--format", "image_format", type=click.Choice(["png", "dcm"]), help="16-bit PNG or DICOM [png].")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="YAML file with these keys.")
def command(out, normal, abnormal, size, pixel_spacing, seed, image_format, config_path) -> None:
    """Synthetic DBT-like breast phantoms with exact lesion masks and boxes.

    Writes DIR/images/, DIR/masks/ (8-bit, lesion = 255), DIR/boxes.csv (image,x,y,width,height,label),
    DIR/phantoms.json and DIR/config.yaml. A test bed for software and methods, not evidence about patients.
    """
    from picard_ad.data.phantoms import write_phantom_dataset

    job = load_config(PhantomsJob, config_path, {"normal": normal, "abnormal": abnormal, "seed": seed,
                                                 "format": image_format})
    phantom = job.phantom
    if size and pixel_spacing is None and phantom.pixel_spacing_mm == PhantomConfig.pixel_spacing_mm:
        phantom = phantom.resized(size)
    flags = {"size": list(size) if size else None, "pixel_spacing_mm": pixel_spacing}
    merged = {**to_dict(phantom), **{key: value for key, value in flags.items() if value is not None}}
    job = dataclasses.replace(job, phantom=load_config(PhantomConfig, None, merged))
    rows = write_phantom_dataset(out, job.normal, job.abnormal, job.phantom, seed=job.seed,
                                 image_format=job.format, progress=True)
    save_config(job, out / "config.yaml")
    n_lesions = sum(row["n_lesions"] for row in rows)
    click.echo(f"wrote {len(rows)} phantoms ({job.normal} normal, {job.abnormal} abnormal, {n_lesions} lesions) "
               f"to {out}")
