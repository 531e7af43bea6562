"""``picard-ad heatmap`` end to end on tiny phantoms with an untrained cnum-4 network."""

import json

import nibabel
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from picard_runs import write_tiny_run

from picard_ad.cli import main
from picard_ad.data.phantoms import PhantomConfig, generate_phantom
from picard_ad.errors import ConfigError
from picard_ad.io.writers import write_dicom, write_png
from picard_ad.jobs.heatmap import parse_slices

FAST = ("--M", 2, "--stride", 32, "--threads", 1, "--quiet")
PHANTOM = PhantomConfig(size=(160, 128), pixel_spacing_mm=0.5, mass_diameter_mm=(5.0, 9.0),
                        calcification_cluster_mm=(4.0, 6.0))


@pytest.fixture(autouse=True)
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    write_tiny_run(run_dir, step=3)
    return run_dir


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    for seed in range(2):
        write_png(folder / f"case_{seed}.png", generate_phantom(PHANTOM, seed=seed, n_lesions=1).image)
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    return folder


@pytest.fixture()
def run():
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(main, ["heatmap", *[str(a) for a in args]], catch_exceptions=False)

    return invoke


def outputs(folder):
    return sorted(path.name for path in folder.iterdir())


def test_folder_with_a_corrupt_file(run, model, images, tmp_path):
    out = tmp_path / "out"
    result = run(images, "--model", model, "--out", out, *FAST)
    assert result.exit_code == 2
    assert "corrupt.png" in result.output and "1 of 3 input(s) failed" in result.output
    assert outputs(out) == [
        "case_0.json", "case_0_heatmap.npy", "case_0_overlay.png", "case_1.json", "case_1_heatmap.npy",
        "case_1_overlay.png",
    ]  # nothing for the corrupt input, no temporaries left behind
    heatmap = np.load(out / "case_0_heatmap.npy")
    assert heatmap.shape == (160, 128) and heatmap.dtype == np.float32 and np.isfinite(heatmap).all()
    sidecar = json.loads((out / "case_0.json").read_text())
    assert sidecar["settings"]["n_completions"] == 2 and sidecar["settings"]["seed"] == 1337
    assert sidecar["method"] == "picard" and sidecar["score"] == "calibrated-quantile-feature"  # the default
    assert sidecar["model"]["step"] == 3 and sidecar["package_version"]
    info = sidecar["slices"][0]["heatmap"]
    assert info["n_windows"] == 12 and 0 <= info["n_skipped_windows"] < 12
    assert {"generator_s", "total_s"} <= set(info["timings"])


def test_rerun_skips_finished_outputs_and_redoes_changed_settings(run, model, images, tmp_path):
    out = tmp_path / "out"
    good = [images / "case_0.png", images / "case_1.png"]
    assert run(*good, "--model", model, "--out", out, *FAST).exit_code == 0
    stamps = {path.name: path.stat().st_mtime_ns for path in out.iterdir()}
    again = run(*good, "--model", model, "--out", out, *FAST, "--batch-size", 3)  # batch size: same result
    assert again.exit_code == 0 and "wrote 0 heatmap output(s), skipped 2 finished" in again.output
    assert {path.name: path.stat().st_mtime_ns for path in out.iterdir()} == stamps
    (out / "case_1_heatmap.npy").unlink()  # a missing output makes its unit count as unfinished
    changed = run(*good, "--model", model, "--out", out, *FAST, "--seed", 5)
    assert "wrote 2 heatmap output(s), skipped 0" in changed.output
    assert json.loads((out / "case_1.json").read_text())["settings"]["seed"] == 5
    element = run(*good[:1], "--model", model, "--out", out, *FAST, "--seed", 5, "--dropout-kind", "element")
    assert "wrote 1 heatmap output(s), skipped 0" in element.output
    assert json.loads((out / "case_0.json").read_text())["settings"]["dropout_kind"] == "element"


def test_dicom_volume_slices_and_annotations(run, model, tmp_path):
    frames = np.stack([generate_phantom(PHANTOM, seed=seed).image for seed in range(3)])
    write_dicom(tmp_path / "volume.dcm", frames, bits_stored=12)
    (tmp_path / "boxes.csv").write_text("image,x,y,width,height\nvolume.dcm,20,30,16,16\n")
    out = tmp_path / "out"
    result = run(tmp_path / "volume.dcm", "--model", model, "--out", out, "--slices", "0,2",
                 "--annotations", tmp_path / "boxes.csv", *FAST)
    assert result.exit_code == 0, result.output
    assert outputs(out) == [
        "volume_s0000.json", "volume_s0000_heatmap.npy", "volume_s0000_overlay.png",
        "volume_s0002.json", "volume_s0002_heatmap.npy", "volume_s0002_overlay.png",
    ]
    assert json.loads((out / "volume_s0002.json").read_text())["slices"][0]["slice_index"] == 2


def test_nifti_heatmap_keeps_the_input_geometry(run, model, tmp_path):
    volume = np.stack([generate_phantom(PHANTOM, seed=seed).image for seed in range(2)], axis=-1)
    affine = np.diag([0.5, 0.4, 2.0, 1.0])
    affine[:3, 3] = [10, -4, 7]
    nibabel.save(nibabel.Nifti1Image(volume * 1000, affine), tmp_path / "scan.nii.gz")
    out = tmp_path / "out"
    result = run(tmp_path / "scan.nii.gz", "--model", model, "--out", out, "--slices", "1", *FAST)
    assert result.exit_code == 0, result.output
    assert outputs(out) == ["scan.json", "scan_heatmap.nii.gz", "scan_s0001_overlay.png"]
    heatmap = nibabel.load(out / "scan_heatmap.nii.gz")
    assert heatmap.shape == volume.shape and heatmap.get_data_dtype() == np.float32
    np.testing.assert_allclose(heatmap.affine, affine)
    data = heatmap.get_fdata()
    assert np.isnan(data[..., 0]).all() and np.isfinite(data[..., 1]).all()


def test_yaml_config_sets_fields_and_rejects_unknown_keys(run, model, images, tmp_path):
    (tmp_path / "good.yaml").write_text("n_completions: 1\nscore: mean-image\nslices: all\n")
    out = tmp_path / "out"
    result = run(images / "case_0.png", "--model", model, "--out", out, "--config", tmp_path / "good.yaml",
                 "--threads", 1, "--quiet")
    assert result.exit_code == 0, result.output
    sidecar = json.loads((out / "case_0.json").read_text())
    assert sidecar["settings"]["n_completions"] == 1 and sidecar["score"] == "mean-image"
    (tmp_path / "bad.yaml").write_text("n_completion: 1\n")
    bad = run(images / "case_0.png", "--model", model, "--out", out, "--config", tmp_path / "bad.yaml")
    assert bad.exit_code == 2 and "unknown key 'n_completion'" in bad.output


def test_missing_model_is_a_clear_error(run, images, tmp_path):
    result = run(images / "case_0.png", "--model", tmp_path / "nowhere", "--out", tmp_path / "out")
    assert result.exit_code == 2 and "nowhere: no such run folder" in result.output
    assert not (tmp_path / "out").exists()
    (tmp_path / "empty").mkdir()
    empty = run(images / "case_0.png", "--model", tmp_path / "empty", "--out", tmp_path / "out")
    assert empty.exit_code == 2 and "holds no fitted method" in empty.output


def test_the_options_are_the_runs_method_settings_with_its_saved_values(run, model, tmp_path):
    shown = run("--model", model, "--help").output
    assert "--stride INTEGER" in shown and "--n-completions, --M INTEGER" in shown and "--dropout-kind" in shown
    brightness = tmp_path / "brightness"
    from picard_ad.methods import create_method

    create_method("brightness", settings={"sigma": 2.5}).save(brightness)
    shown = run("--model", brightness, "--help").output
    assert "--sigma NUMBER" in shown and "[2.5]" in shown and "--stride INTEGER" not in shown
    wrong = run("image.png", "--model", brightness, "--out", tmp_path / "out", "--stride", 8)
    assert wrong.exit_code == 2 and "No such option '--stride'" in wrong.output
    nan = run("image.png", "--model", model, "--out", tmp_path / "out", "--tissue-threshold", "nan")
    assert nan.exit_code == 2 and "not a finite number" in nan.output


def test_an_empty_input_path_is_refused_not_read_as_the_current_folder(run, model, tmp_path):
    result = run("", "--model", model, "--out", tmp_path / "out", *FAST)
    assert result.exit_code == 2 and "an input path is empty" in result.output
    assert not (tmp_path / "out").exists()


def test_parse_slices():
    assert parse_slices("all") is None
    assert parse_slices("3, 0,5-7") == [0, 3, 5, 6, 7]
    with pytest.raises(ConfigError):
        parse_slices("2-1")
