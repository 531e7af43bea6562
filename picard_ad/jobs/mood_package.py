"""MOOD submission folder: a Dockerfile and MOOD's four run scripts around ``picard-ad mood`` and a fitted run.

MOOD runs a submitted image once per task and data set as ``docker run -v INPUT:/mnt/data:ro -v OUTPUT:/mnt/pred
IMAGE sh /workspace/run_<task>_<region>.sh /mnt/data /mnt/pred`` (task: pixel or sample; region: brain or abdom),
then scores OUTPUT with its own evaluator. The package holds:

- ``Dockerfile``: ``BASE_IMAGE`` with the CPU build of torch ``TORCH_VERSION`` pinned, picard-ad installed from the
  source copied into ``picard-ad/``, the model copied to ``MODEL_IN_IMAGE`` and made read-only, the scripts in
  ``/workspace``;
- ``run_<task>_<region>.sh``: ``picard-ad mood $1 $2 --task TASK --model MODEL_IN_IMAGE`` (plus ``--calibration``
  and ``--axis`` when a calibration was given for that task and region), with ``TMPDIR`` under the output folder
  since the input is mounted read-only;
- ``model/``: the run's ``method.json``, the state files its identity lists (at their paths inside the run) and the
  checkpoint description beside each, checked to load with the run's identity; calibrations as
  ``calibration-<task>-<region>.json``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from picard_ad.errors import InputError, PicardError

TASKS = ("pixel", "sample")
REGIONS = ("brain", "abdom")
BASE_IMAGE = "python:3.12-slim"
TORCH_VERSION = "2.13.0"
TORCH_INDEX_URL = "https://download.pytorch.org/whl/cpu"
MODEL_IN_IMAGE = "/opt/picard-ad-model"
SCRIPTS_IN_IMAGE = "/workspace"
SOURCE_FILES = ("pyproject.toml", "README.md", "LICENSE")  # beside the picard_ad package; README is pip's readme
TMP_FOLDER = ".picard-ad-tmp"


@dataclass(frozen=True)
class MoodPackage:
    """What ``write_mood_package`` wrote: the folder, its run scripts and the model files copied (relative)."""

    folder: Path
    scripts: tuple[Path, ...]
    model_files: tuple[str, ...]


def script_name(task: str, region: str) -> str:
    return f"run_{task}_{region}.sh"


def calibration_name(task: str, region: str) -> str:
    return f"calibration-{task}-{region}.json"


def run_script(task: str, region: str, axis: int | None) -> str:
    """A MOOD run script; ``axis`` is the axis of the calibration shipped for this task and region, else None."""
    options = f"--task {task} --model {MODEL_IN_IMAGE}"
    if axis is not None:
        options += f" --calibration {MODEL_IN_IMAGE}/{calibration_name(task, region)} --axis {axis}"
    usage = f"usage: {script_name(task, region)} INPUT_DIR OUTPUT_DIR"
    return f"""#!/bin/sh
# MOOD {task} task, {region} data: picard-ad mood on the volumes in $1, predictions written to $2.
# MOOD starts this with sh, which may lack pipefail: go on under bash.
if [ -z "${{BASH_VERSION:-}}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
input_dir="${{1:?{usage}}}"
output_dir="${{2:?{usage}}}"
# The input is mounted read-only: temporary files go under the output folder and are removed at the end.
export TMPDIR="$output_dir/{TMP_FOLDER}"
mkdir -p "$TMPDIR"
trap 'rm -rf "$TMPDIR"' EXIT
picard-ad mood "$input_dir" "$output_dir" {options}
"""


def dockerfile() -> str:
    scripts = " ".join(script_name(task, region) for task in TASKS for region in REGIONS)
    return f"""# MOOD submission: picard-ad on CPU. Build: docker build -t IMAGE . ; MOOD runs per task and region:
# docker run -v IN:/mnt/data:ro -v OUT:/mnt/pred IMAGE sh {SCRIPTS_IN_IMAGE}/run_TASK_REGION.sh /mnt/data /mnt/pred
FROM {BASE_IMAGE}
RUN pip install --no-cache-dir torch=={TORCH_VERSION} --index-url {TORCH_INDEX_URL}
COPY picard-ad /opt/picard-ad
RUN pip install --no-cache-dir /opt/picard-ad
COPY model {MODEL_IN_IMAGE}
RUN chmod -R a-w {MODEL_IN_IMAGE}
COPY {scripts} {SCRIPTS_IN_IMAGE}/
RUN chmod 0555 {SCRIPTS_IN_IMAGE}/*.sh && mkdir -p /mnt/data /mnt/pred
"""


def source_root() -> Path:
    """The picard-ad source tree the running package comes from (pyproject.toml beside ``picard_ad``)."""
    import picard_ad

    root = Path(picard_ad.__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file():
        raise PicardError(f"no picard-ad source tree (pyproject.toml) beside {root / 'picard_ad'} to copy into the "
                          "image: run mood-package from a source checkout")  # fmt: skip
    return root


def model_files(run_dir: Path, state_files: list[Path]) -> list[str]:
    """Paths inside ``run_dir`` of what scoring reads: method.json, the state files and each one's checkpoint
    description."""
    from picard_ad.methods.base import METHOD_FILE
    from picard_ad.training.checkpoint import INFO_FILE

    root = run_dir.resolve()
    files = [METHOD_FILE]
    for path in state_files:
        info = path.parent / INFO_FILE
        for needed in (path, info) if info.is_file() else (path,):
            try:
                files.append(str(needed.resolve().relative_to(root)))
            except ValueError:
                raise InputError(needed, f"state file outside the run folder {run_dir}") from None
    return list(dict.fromkeys(files))


def write_mood_package(
    run_dir: str | Path, out: str | Path, calibrations: Sequence[tuple[str, Path]] = ()
) -> MoodPackage:
    """Write the MOOD submission folder ``out`` (new or empty) for the fitted run ``run_dir``.

    calibrations: (region of ``REGIONS``, a calibration.json made by ``picard-ad mood`` for this run) pairs, at
    most one per task and region; task and axis are taken from the record. Written to a temporary sibling and
    renamed, so ``out`` is whole or absent.
    """
    from picard_ad.jobs.mood import check_calibration, mood_identity, read_calibration
    from picard_ad.methods.base import METHOD_FILE, load_method

    run_dir, out = Path(run_dir), Path(out)
    if not (run_dir / METHOD_FILE).is_file():
        raise InputError(run_dir, f"not a fitted run ({METHOD_FILE} not found; fit one with picard-ad fit)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(out, "exists and is not empty; give a new or empty folder")
    method = load_method(run_dir)
    identity = method.identity()
    shipped, axes = {}, {}
    for region, path in calibrations:
        if region not in REGIONS:
            raise InputError(path, f"calibration for region '{region}'; MOOD's regions are {', '.join(REGIONS)}")
        calibration = read_calibration(path)
        check_calibration(calibration, calibration.task, calibration.axis, mood_identity(method, calibration.task),
                          Path(path))  # fmt: skip
        if (calibration.task, region) in shipped:
            raise InputError(path, f"a second {calibration.task}-task calibration for {region}")
        shipped[calibration.task, region] = Path(path)
        axes[calibration.task, region] = calibration.axis
    source = source_root()

    partial = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        files = model_files(run_dir, method.state_files())
        for name in files:
            (partial / "model" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(run_dir / name, partial / "model" / name)
        if load_method(partial / "model").identity() != identity:
            raise PicardError(f"{run_dir}: the copied model does not reproduce the run's identity; its method reads "
                              "files its state_files() does not list")  # fmt: skip
        for (task, region), path in shipped.items():
            shutil.copyfile(path, partial / "model" / calibration_name(task, region))
        shutil.copytree(source / "picard_ad", partial / "picard-ad" / "picard_ad",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))  # fmt: skip
        for name in SOURCE_FILES:
            if (source / name).is_file():
                shutil.copyfile(source / name, partial / "picard-ad" / name)
        (partial / "Dockerfile").write_text(dockerfile())
        scripts = []
        for task in TASKS:
            for region in REGIONS:
                script = partial / script_name(task, region)
                script.write_text(run_script(task, region, axes.get((task, region))))
                script.chmod(0o755)
                scripts.append(out / script.name)
        if out.exists():
            out.rmdir()
        partial.rename(out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return MoodPackage(out, tuple(scripts), tuple(files))
