"""``picard-ad mood-package``: a MOOD submission folder (Dockerfile, run scripts, model) for a fitted run.

What the folder holds and why lives in ``picard_ad.jobs.mood_package``; this module reads options and prints.
"""

from __future__ import annotations

from pathlib import Path

import click

from picard_ad.errors import ConfigError


def _calibrations(values: tuple[str, ...]) -> list[tuple[str, Path]]:
    """REGION=FILE options as (region, file) pairs."""
    from picard_ad.jobs.mood_package import REGIONS

    parsed = []
    for value in values:
        region, separator, path = value.partition("=")
        if not separator or region not in REGIONS or not path:
            raise ConfigError(f"--calibration takes REGION=FILE with REGION one of {', '.join(REGIONS)}, got "
                              f"'{value}'")  # fmt: skip
        parsed.append((region, Path(path)))
    return parsed


@click.command("mood-package")
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="New or empty folder to write.")
@click.option("--calibration", "calibrations", multiple=True, metavar="REGION=FILE",
              help="A calibration.json that picard-ad mood made for RUN, used by the scripts of its task and REGION "
                   "(brain or abdom); repeat for each task and region.")  # fmt: skip
def command(run_dir, out, calibrations) -> None:
    """MOOD submission folder for the fitted run RUN, written to OUT.

    OUT/Dockerfile builds a CPU image with picard-ad and the model (read-only); the scripts
    OUT/run_{pixel,sample}_{brain,abdom}.sh run picard-ad mood on INPUT_DIR ($1) into OUTPUT_DIR ($2), with
    TMPDIR under OUTPUT_DIR. MOOD starts them as:

    \b
    docker run -v INPUT:/mnt/data:ro -v OUTPUT:/mnt/pred IMAGE sh /workspace/run_pixel_brain.sh /mnt/data /mnt/pred
    """
    from picard_ad.jobs.mood_package import write_mood_package

    package = write_mood_package(run_dir, out, _calibrations(calibrations))
    click.echo(f"wrote a MOOD package to {package.folder}: Dockerfile, {len(package.scripts)} run scripts, "
               f"{len(package.model_files)} model file(s); build it with: docker build -t IMAGE {package.folder}")
