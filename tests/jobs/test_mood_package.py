"""MOOD submission folder: Dockerfile and run scripts (checked by content and by running them against a stub
picard-ad), the self-contained model copy, shipped calibrations and refused inputs."""

import os
import shutil
import stat
import subprocess

import pytest
from picard_runs import write_tiny_run

from picard_ad.errors import InputError
from picard_ad.jobs.mood import Calibration, read_calibration, write_calibration
from picard_ad.jobs.mood_package import (
    MODEL_IN_IMAGE,
    REGIONS,
    TASKS,
    TMP_FOLDER,
    write_mood_package,
)
from picard_ad.methods import create_method, load_method

SCRIPTS = [f"run_{task}_{region}.sh" for task in TASKS for region in REGIONS]

# Records its arguments one per line, TMPDIR, and whether TMPDIR existed while it ran.
STUB = """#!/bin/sh
for arg in "$@"; do echo "$arg"; done > "$STUB_LOG"
echo "TMPDIR=$TMPDIR" >> "$STUB_LOG"
[ -d "$TMPDIR" ] && echo "TMPDIR exists" >> "$STUB_LOG"
"""


@pytest.fixture()
def brightness_run(tmp_path):
    return create_method("brightness", settings={"sigma": 2.0}).save(tmp_path / "run")


def calibration_for(run, task, axis=2):
    return Calibration(task=task, axis=axis, method=load_method(run).identity(), normal_dir="/normals",
                       normal_volumes=("a.nii.gz",), n_voxels=100, n_scores=100, quantiles={"0.5": 0.2, "0.999": 0.6},
                       center=0.6, scale=0.05)  # fmt: skip


def run_with_stub(script, tmp_path, *args):
    stub_dir = tmp_path / "stub"
    stub_dir.mkdir(exist_ok=True)
    (stub_dir / "picard-ad").write_text(STUB)
    (stub_dir / "picard-ad").chmod(0o755)
    log = tmp_path / "argv.txt"
    env = {**os.environ, "PATH": f"{stub_dir}{os.pathsep}{os.environ['PATH']}", "STUB_LOG": str(log)}
    result = subprocess.run(["sh", str(script), *map(str, args)], env=env, capture_output=True, text=True)
    return result, (log.read_text().splitlines() if log.is_file() else [])


def test_package_holds_dockerfile_scripts_model_and_source(brightness_run, tmp_path):
    package = write_mood_package(brightness_run, tmp_path / "package")
    out = package.folder
    assert sorted(path.name for path in package.scripts) == sorted(SCRIPTS)
    assert package.model_files == ("method.json",)
    assert (out / "model" / "method.json").read_bytes() == (brightness_run / "method.json").read_bytes()
    assert (out / "picard-ad" / "pyproject.toml").is_file() and (out / "picard-ad" / "picard_ad" / "cli").is_dir()
    assert not list(out.rglob("__pycache__"))
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []  # no partial folder left
    dockerfile = (out / "Dockerfile").read_text()
    for line in ("FROM python:3.12-slim",
                 "RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu",
                 "COPY picard-ad /opt/picard-ad", "RUN pip install --no-cache-dir /opt/picard-ad",
                 f"COPY model {MODEL_IN_IMAGE}", f"RUN chmod -R a-w {MODEL_IN_IMAGE}",
                 f"COPY {' '.join(SCRIPTS)} /workspace/"):  # fmt: skip
        assert line in dockerfile.splitlines()
    assert "mkdir -p /mnt/data /mnt/pred" in dockerfile


@pytest.mark.parametrize("name", SCRIPTS)
def test_scripts_are_strict_executable_and_call_mood_with_their_task(brightness_run, tmp_path, name):
    script = write_mood_package(brightness_run, tmp_path / "package").folder / name
    task = name.split("_")[1]
    text = script.read_text()
    assert script.stat().st_mode & stat.S_IXUSR and text.startswith("#!/bin/sh\n")
    assert "set -euo pipefail" in text.splitlines()
    assert f'export TMPDIR="$output_dir/{TMP_FOLDER}"' in text
    assert f'picard-ad mood "$input_dir" "$output_dir" --task {task} --model {MODEL_IN_IMAGE}' in text

    inputs, outputs = tmp_path / "data", tmp_path / "pred"
    inputs.mkdir()
    outputs.mkdir()
    result, argv = run_with_stub(script, tmp_path, inputs, outputs)  # as MOOD runs it: sh SCRIPT IN OUT
    assert result.returncode == 0, result.stderr
    assert argv == ["mood", str(inputs), str(outputs), "--task", task, "--model", MODEL_IN_IMAGE,
                    f"TMPDIR={outputs}/{TMP_FOLDER}", "TMPDIR exists"]  # fmt: skip
    assert list(outputs.iterdir()) == []  # the temporary folder is removed


def test_a_script_without_its_folders_fails_before_running_mood(brightness_run, tmp_path):
    script = write_mood_package(brightness_run, tmp_path / "package").folder / "run_pixel_brain.sh"
    result, argv = run_with_stub(script, tmp_path, tmp_path / "data")
    assert result.returncode != 0 and "usage: run_pixel_brain.sh INPUT_DIR OUTPUT_DIR" in result.stderr
    assert argv == []


def test_network_run_is_copied_with_its_checkpoint_and_keeps_its_identity(tmp_path):
    run = write_tiny_run(tmp_path / "run", step=3)
    (run / "last" / "optimizer.safetensors").write_bytes(b"not needed for scoring")
    package = write_mood_package(run, tmp_path / "package")
    assert package.model_files == ("method.json", "last/generator.safetensors", "last/config.json",
                                   "last/local_critic.safetensors", "score_calibration.json")  # fmt: skip
    assert not (package.folder / "model" / "last" / "optimizer.safetensors").exists()
    shutil.rmtree(run)  # self-contained: the copy loads without the run
    assert load_method(package.folder / "model").name == "picard"


def test_calibrations_ship_with_the_scripts_of_their_task_and_region(brightness_run, tmp_path):
    pixel, sample = tmp_path / "pixel.json", tmp_path / "sample.json"
    write_calibration(pixel, calibration_for(brightness_run, "pixel", axis=0))
    write_calibration(sample, calibration_for(brightness_run, "sample"))
    out = write_mood_package(brightness_run, tmp_path / "package", [("brain", pixel), ("abdom", sample)]).folder
    assert read_calibration(out / "model" / "calibration-pixel-brain.json") == read_calibration(pixel)
    assert (f"--task pixel --model {MODEL_IN_IMAGE} --calibration {MODEL_IN_IMAGE}/calibration-pixel-brain.json "
            "--axis 0") in (out / "run_pixel_brain.sh").read_text()  # fmt: skip
    assert "--calibration" in (out / "run_sample_abdom.sh").read_text()
    for name in ("run_pixel_abdom.sh", "run_sample_brain.sh"):
        assert "--calibration" not in (out / name).read_text()


def test_refused_inputs_write_nothing(brightness_run, tmp_path):
    out = tmp_path / "package"
    for run, message in ((tmp_path / "missing", "not a fitted run"), (tmp_path, "not a fitted run")):
        with pytest.raises(InputError, match=message):
            write_mood_package(run, out)
    other = create_method("brightness", settings={"sigma": 1.0}).save(tmp_path / "other")
    foreign = tmp_path / "foreign.json"
    write_calibration(foreign, calibration_for(other, "pixel"))
    with pytest.raises(InputError, match="another method or model"):
        write_mood_package(brightness_run, out, [("brain", foreign)])
    with pytest.raises(InputError, match="a second pixel-task calibration for brain"):
        write_mood_package(other, out, [("brain", foreign), ("brain", foreign)])
    assert not out.exists()
    out.mkdir()
    (out / "old.txt").write_text("kept")
    with pytest.raises(InputError, match="exists and is not empty"):
        write_mood_package(brightness_run, out)
    assert [path.name for path in out.iterdir()] == ["old.txt"]
    (out / "old.txt").unlink()
    assert write_mood_package(brightness_run, out).folder == out  # an empty folder is used
