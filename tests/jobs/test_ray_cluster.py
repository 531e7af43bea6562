"""Jobs on a local Ray cluster: the same files as a local run, and a killed worker's inputs retried."""

from __future__ import annotations

import functools
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from picard_runs import write_tiny_run

from picard_ad.cli import main
from picard_ad.jobs.heatmap import HeatmapJob, HeatmapRunner, heatmap_inputs
from picard_ad.jobs.ray_cluster import HeatmapTask, RayPool
from picard_ad.methods import load_method

ray = pytest.importorskip("ray", reason="Ray is the optional extra 'ray'")


@pytest.fixture(scope="module")
def local_cluster():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def picard_run(tmp_path_factory):
    """An untrained cnum-4 PICARD run: slow enough per input (many windows, M completions) to be killed mid-way."""

    run = tmp_path_factory.mktemp("picard")
    write_tiny_run(run, step=1)
    return run


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    from picard_ad.data.phantoms import PhantomConfig, generate_phantom
    from picard_ad.io.writers import write_png

    folder = tmp_path_factory.mktemp("scans")
    for index in range(4):
        phantom = generate_phantom(PhantomConfig(size=(160, 128), pixel_spacing_mm=1.0), seed=index)
        write_png(folder / f"scan{index}.png", phantom.image, bit_depth=16)
    return folder


def local_run(run: Path, scans: Path, out: Path, settings: dict) -> None:
    files = heatmap_inputs([scans])
    runner = HeatmapRunner(load_method(run, **settings), HeatmapJob(), out, progress=False,
                           inputs=[path for path, _ in files])  # fmt: skip
    for path, name in files:
        runner.run(path, name)


def assert_same_outputs(first: Path, second: Path) -> None:
    names = sorted(path.name for path in first.iterdir())
    assert names == sorted(path.name for path in second.iterdir()) and len(names) == 12  # 4 x heatmap, overlay, json
    for name in names:
        if name.endswith(".npy"):
            np.testing.assert_array_equal(np.load(first / name), np.load(second / name))
        elif name.endswith(".png"):
            assert (first / name).read_bytes() == (second / name).read_bytes()


def test_ray_heatmaps_equal_the_local_run_and_rerun_skips(local_cluster, picard_run, scans, tmp_path):
    settings = {"stride": 32, "n_completions": 3}
    local_run(picard_run, scans, tmp_path / "local", settings)
    command = ["heatmap", str(scans), "--model", str(picard_run), "--out", str(tmp_path / "ray"), "--stride", "32",
               "--M", "3", "--ray", "--ray-workers", "2", "--quiet"]  # fmt: skip
    first = CliRunner().invoke(main, command, catch_exceptions=False)
    assert first.exit_code == 0, first.output
    assert "wrote 4 heatmap output(s), skipped 0 finished" in first.stdout
    assert_same_outputs(tmp_path / "local", tmp_path / "ray")
    again = CliRunner().invoke(main, command, catch_exceptions=False)
    assert "wrote 0 heatmap output(s), skipped 4 finished" in again.stdout


def test_a_killed_worker_is_restarted_and_its_input_retried(local_cluster, picard_run, scans, tmp_path):
    settings = {"stride": 16, "n_completions": 4}
    local_run(picard_run, scans, tmp_path / "local", settings)
    files = heatmap_inputs([scans])
    task = functools.partial(HeatmapTask, picard_run, settings, HeatmapJob(), tmp_path / "ray", [p for p, _ in files])
    pool = RayPool(task, workers=1)
    (first_pid,) = pool.pids()
    first = pool.workers[0].run.remote(files[0])
    time.sleep(1.0)  # the worker is scoring the first input
    os.kill(first_pid, signal.SIGKILL)
    assert ray.get(first) == ((1, 0), None)  # retried on the restarted worker: written, without error
    (second_pid,) = pool.pids()
    assert second_pid != first_pid
    result = pool.run(files)
    assert result.failures == [] and result.written + result.skipped == 4
    assert_same_outputs(tmp_path / "local", tmp_path / "ray")


def test_an_input_that_fails_is_reported_and_the_others_go_on(local_cluster, picard_run, scans, tmp_path):
    broken = tmp_path / "inputs"
    broken.mkdir()
    (broken / "a.png").write_bytes((scans / "scan0.png").read_bytes())
    (broken / "b.png").write_bytes(b"not a png")
    command = ["heatmap", str(broken), "--model", str(picard_run), "--out", str(tmp_path / "out"), "--stride", "32",
               "--M", "2", "--ray", "--quiet"]  # fmt: skip
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 2
    assert "b.png" in result.stderr and "1 of 2 input(s) failed" in result.stderr
    assert (tmp_path / "out" / "a_heatmap.npy").is_file() and not (tmp_path / "out" / "b_heatmap.npy").exists()


def test_mood_cases_on_ray_equal_the_local_run(local_cluster, tmp_path):
    import nibabel

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    for index in range(3):
        volume = rng.uniform(0.0, 0.4, size=(28, 24, 5)).astype(np.float32)
        volume[8:14, 6:12, 1:4] += 0.5 * index
        nibabel.save(nibabel.Nifti1Image(volume, np.diag([1.0, 1.0, 2.0, 1.0])), inputs / f"case{index}.nii.gz")
    common = [str(inputs), "--task", "pixel", "--method", "brightness", "--sigma", "1.5"]
    local = CliRunner().invoke(main, ["mood", common[0], str(tmp_path / "local"), *common[1:]], catch_exceptions=False)
    on_ray = CliRunner().invoke(main, ["mood", common[0], str(tmp_path / "ray"), *common[1:], "--ray"],
                                catch_exceptions=False)  # fmt: skip
    assert local.exit_code == 0 and on_ray.exit_code == 0, on_ray.output
    assert "wrote 3 pixel output(s), skipped 0 finished" in on_ray.stdout
    for index in range(3):
        name = f"case{index}.nii.gz"
        np.testing.assert_array_equal(np.asarray(nibabel.load(tmp_path / "ray" / name).dataobj),
                                      np.asarray(nibabel.load(tmp_path / "local" / name).dataobj))  # fmt: skip


def test_benchmark_maps_on_ray_equal_the_local_run(local_cluster, tmp_path):
    import json

    import yaml

    picard = {"name": "picard", "preset": "tiny", "train": {"device": "cpu", "seed": 3},
              "settings": {"n_completions": 2, "stride": 16, "device": "cpu", "bf16": False}}  # fmt: skip
    config = tmp_path / "bench.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"kind": "phantoms", "n_normal": 4, "n_abnormal": 2, "size": [128, 128], "pixel_spacing_mm": 1.0,
                 "test_normal_patients": 1},
        "methods": [picard], "seed": 3,
        "ablations": [{"method": "picard", "setting": "score", "values": ["calibrated-quantile-feature", "mse"]},
                      {"method": "brightness", "setting": "sigma", "values": [2.0]}],
    }))  # fmt: skip
    outputs = {}
    for where, extra in (("local", []), ("ray", ["--ray"])):
        out = tmp_path / where
        result = CliRunner().invoke(main, ["benchmark", "--config", str(config), "--out", str(out), *extra])
        assert result.exit_code == 0, result.output
        outputs[where] = out
    maps = sorted(str(path.relative_to(outputs["local"])) for path in (outputs["local"] / "maps").rglob("*.npy"))
    # 3 test images x (picard and its default score, its mse, brightness, brightness sigma 2, local-contrast)
    assert len(maps) == 5 * 3 and "maps/picard-score-mse" in {str(Path(name).parent) for name in maps}
    for name in maps:
        np.testing.assert_array_equal(np.load(outputs["local"] / name), np.load(outputs["ray"] / name))
    local, on_ray = (json.loads((out / "metrics.json").read_text()) for out in outputs.values())
    for method in ("picard", "brightness", "local-contrast"):
        assert on_ray["methods"][method]["tissue_pixel_auroc_pooled"] == local["methods"][method][
            "tissue_pixel_auroc_pooled"]


class DyingTask:
    """Kills its worker process on every input."""

    def run(self, item):
        os._exit(1)


def test_inputs_fail_cleanly_when_a_worker_dies_for_good(local_cluster):
    pool = RayPool(DyingTask, workers=1)
    try:
        results = list(pool.imap(["first", "second"]))
    finally:
        pool.close()
    assert [(item, value) for item, value, _ in results] == [("first", None), ("second", None)]
    assert results[0][2] == "first: its Ray worker failed: ActorDiedError"
    assert results[1][2] == "second: not run, no Ray worker is left"
