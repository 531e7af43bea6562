"""picard-ad benchmark: config, patient split, end-to-end run with the report, resuming, and flagging."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from picard_ad.benchmark import (
    AblationResult,
    BenchmarkConfig,
    BenchmarkResult,
    DataConfig,
    MethodEntry,
    MethodResult,
    flag_methods,
    is_synthetic,
    load_dataset,
    run_benchmark,
    score_map_sets,
    split_dataset,
)
from picard_ad.cli.benchmark import command
from picard_ad.config import load_config
from picard_ad.data.synthetic import ANOMALY_KINDS
from picard_ad.errors import ConfigError
from picard_ad.io.writers import write_png
from picard_ad.report.html import (
    COLUMNS,
    ablation_tables_html,
    metrics_markdown,
    metrics_table_html,
    write_benchmark_report,
)
from picard_ad.training.checkpoint import read_checkpoint_info

REPO = Path(__file__).resolve().parents[1]
TINY_DATA = {
    "kind": "phantoms",
    "n_normal": 4,
    "n_abnormal": 2,
    "size": [128, 128],
    "pixel_spacing_mm": 1.0,
    "test_normal_patients": 1,
}
TINY_CAE = {"name": "cae", "preset": "tiny", "train": {"device": "cpu", "seed": 3}, "settings": {"device": "cpu"}}
TINY_PICARD = {
    "name": "picard",
    "preset": "tiny",
    "train": {"device": "cpu", "seed": 3},
    "settings": {"n_completions": 2, "stride": 16, "device": "cpu", "bf16": False},
}


def _write_config(path: Path, methods: list[dict], **extra) -> Path:
    path.write_text(yaml.safe_dump({"data": TINY_DATA, "methods": methods, "seed": 3, **extra}))
    return path


def _run(config: Path, out: Path):
    result = CliRunner().invoke(command, ["--config", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def _map_stamps(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in sorted((out / "maps").rglob("*.npy"))}


def test_config_rejects_unknown_keys_and_repeated_methods(tmp_path):
    typo = tmp_path / "typo.yaml"
    typo.write_text(yaml.safe_dump({"data": {**TINY_DATA, "n_normals": 3}}))
    with pytest.raises(ConfigError, match="unknown key 'n_normals'.*did you mean 'n_normal'"):
        load_config(BenchmarkConfig, typo)
    repeated = _write_config(tmp_path / "repeated.yaml", [{"name": "brightness"}, {"name": "brightness"}])
    with pytest.raises(ConfigError, match="repeated: brightness"):
        load_config(BenchmarkConfig, repeated)
    sweep = _write_config(tmp_path / "sweep.yaml", [{"name": "brightness"}],
                          ablations=[{"method": "picard", "setting": "n_completions", "values": [1, 2]}])
    with pytest.raises(ConfigError, match="ablation of 'picard': no method entry has this label"):
        load_config(BenchmarkConfig, sweep)
    with pytest.raises(ValueError, match="needs root"):
        DataConfig(kind="nifti-labels")


def test_labels_must_be_unique_and_folder_safe(tmp_path):
    twice = _write_config(tmp_path / "twice.yaml", [TINY_CAE, TINY_CAE])
    with pytest.raises(ConfigError, match="repeated: cae .*distinct 'label's"):
        load_config(BenchmarkConfig, twice)
    reference = _write_config(tmp_path / "reference.yaml", [{**TINY_CAE, "label": "brightness"}])
    with pytest.raises(ConfigError, match="repeated: brightness"):  # the reference added after it has that label
        load_config(BenchmarkConfig, reference)
    for bad in ("cae/raw", "..", ""):
        with pytest.raises(ConfigError, match="must be a folder name"):
            load_config(BenchmarkConfig, _write_config(tmp_path / "bad.yaml", [{**TINY_CAE, "label": bad}]))
    by_name = _write_config(tmp_path / "by-name.yaml", [{**TINY_CAE, "label": "cae-raw"}],
                            ablations=[{"method": "cae", "setting": "score", "values": ["l1"]}])
    with pytest.raises(ConfigError, match="ablation of 'cae': no method entry has this label \\(cae-raw, brightness"):
        load_config(BenchmarkConfig, by_name)
    labels = [{**TINY_CAE, "label": "cae"}, {**TINY_CAE, "label": "cae-score-l1"}]
    clash = _write_config(tmp_path / "clash.yaml", labels,
                          ablations=[{"method": "cae", "setting": "score", "values": ["l1"]}])
    with pytest.raises(ConfigError, match="maps folder 'cae-score-l1' is a method entry's label"):
        load_config(BenchmarkConfig, clash)
    config = load_config(BenchmarkConfig, _write_config(tmp_path / "ok.yaml", [TINY_CAE]))
    assert [entry.label for entry in config.all_methods()] == ["cae", "brightness", "local-contrast"]
    assert config.entry("brightness").name == "brightness"


def test_one_method_trained_per_preprocessing_under_labels(tmp_path):
    """The paper's Table 1 layout: one cae fitted per preprocessing chain, each entry under its label, an ablation
    of one of them by its label."""
    methods = [{**TINY_CAE, "label": f"cae-{chain}", "settings": {**TINY_CAE["settings"], "preprocessing": chain}}
               for chain in ("raw", "full")]  # fmt: skip
    ablations = [{"method": "cae-full", "setting": "score", "values": ["mse", "l1"]}]
    out = tmp_path / "out"
    output = _run(_write_config(tmp_path / "labels.yaml", methods, ablations=ablations), out)
    assert "cae-raw: fitted in" in output and "cae-full: fitted in" in output
    for chain in ("raw", "full"):  # separate fits, each trained on its own chain's images
        run_dir = out / "methods" / f"cae-{chain}"
        assert (run_dir / "method.json").is_file() and (out / "maps" / f"cae-{chain}").is_dir()
        assert read_checkpoint_info(run_dir)["preprocessing"]["preprocessing"] == chain
    assert not (out / "methods" / "cae").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["methods"]) == ["cae-raw", "cae-full", "brightness", "local-contrast"]
    assert [metrics["methods"][label]["method"] for label in metrics["methods"]] == [
        "cae", "cae", "brightness", "local-contrast"]  # fmt: skip
    assert metrics["methods"]["cae-raw"]["config"]["settings"]["preprocessing"] == "raw"
    assert metrics["methods"]["cae-raw"]["beats_references"] is not None  # a method, not a reference
    assert [(a["method"], a["value"]) for a in metrics["ablations"]] == [("cae-full", "mse"), ("cae-full", "l1")]
    assert (out / "maps" / "cae-full-score-l1").is_dir() and not (out / "maps" / "cae-full-score-mse").exists()
    assert "cae-full <code>score</code>" in (out / "report.html").read_text()
    assert "| cae-raw |" in (out / "metrics.md").read_text()
    rerun = _run(_write_config(tmp_path / "labels.yaml", methods, ablations=ablations), out)
    assert "cae-raw: reused the saved fit" in rerun and "cae-full: reused the saved fit" in rerun


def test_max_side_shrinks_images_and_masks_when_loaded():
    data = DataConfig(**{**TINY_DATA, "size": (192, 128), "max_side": 96})
    samples = load_dataset(data, 2)
    for sample in samples:
        loaded = sample.load()
        assert loaded.image.shape == loaded.lesion_mask.shape == loaded.tissue_mask.shape == (96, 64)
    full = load_dataset(DataConfig(**{**TINY_DATA, "size": (192, 128)}), 2)
    abnormal = next(index for index, sample in enumerate(full) if not sample.is_normal)
    shrunk, lesion = samples[abnormal].load(), full[abnormal].load().lesion_mask
    assert shrunk.lesion_mask.any() and abs(shrunk.lesion_mask.mean() - lesion.mean()) < 0.02
    assert np.isclose(shrunk.image.mean(), full[abnormal].load().image.mean(), atol=0.01)
    same = load_dataset(DataConfig(**{**TINY_DATA, "size": (192, 128), "max_side": 192}), 2)
    assert np.array_equal(same[0].load_image(), full[0].load_image())  # already fits: as read
    with pytest.raises(ValueError, match="max_side must be at least 1"):
        DataConfig(max_side=0)


def test_ablations_are_validated_against_the_methods_settings(tmp_path):
    picard = [TINY_PICARD]
    cases = [
        ({"setting": "score", "values": ["mcd-image", "mcd"]}, "score must be one of mcd-image, mcd-feature"),
        ({"setting": "dropout_layers", "values": ["paper", "all"]}, "unknown dropout preset 'all'"),
        ({"setting": "dropout_kind", "values": ["channel"]}, "is not one of 'spatial', 'element'"),
        ({"setting": "score", "values": ["mse", "mse"]}, "repeated: mse"),
        ({"setting": "dropout_kin", "values": ["element"]}, "method 'picard' has no setting 'dropout_kin'"),
        ({"setting": "n_completions", "values": [0]}, "n_completions must be in [1, 4096]"),
        ({"setting": "n_completions", "values": []}, "no values"),
    ]
    for ablation, message in cases:
        path = _write_config(tmp_path / "bad.yaml", picard, ablations=[{"method": "picard", **ablation}])
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_config(BenchmarkConfig, path)
    # Element dropout cannot go with the paper's layers (the engine crops the attention decoder).
    paper = [{**TINY_PICARD, "settings": {**TINY_PICARD["settings"], "dropout_layers": "paper"}}]
    clash = _write_config(tmp_path / "clash.yaml", paper,
                          ablations=[{"method": "picard", "setting": "dropout_kind", "values": ["element"]}])
    with pytest.raises(ConfigError, match="dropout_kind = 'element': element dropout needs each layer's full"):
        load_config(BenchmarkConfig, clash)
    brightness = _write_config(tmp_path / "any.yaml", [],
                               ablations=[{"method": "brightness", "setting": "sigma", "values": [1.0, 8.0]}])
    ablation = load_config(BenchmarkConfig, brightness).ablations[0]
    assert (ablation.method, ablation.setting, ablation.values) == ("brightness", "sigma", (1.0, 8.0))
    folders = [ablation.folder_name(value) for value in ablation.values]
    assert folders == ["brightness-sigma-1.0", "brightness-sigma-8.0"]


def test_score_map_sets_compute_only_missing_variants_in_one_call(tmp_path):
    samples = load_dataset(DataConfig(**{**TINY_DATA, "size": (128, 128), "n_normal": 2, "n_abnormal": 0}), 1)
    calls = []

    def scorer(image, names, origin):
        calls.append(names)
        return {name: np.full(image.shape, len(name), np.float32) for name in names}

    folders = {"a": tmp_path / "a", "bb": tmp_path / "bb"}
    maps, seconds, computed = score_map_sets(scorer, samples, folders)
    assert calls == [("a", "bb"), ("a", "bb")] and computed == {"a": 2, "bb": 2}
    assert float(maps["bb"][1][0, 0]) == 2.0 and seconds["a"] == seconds["bb"]
    (tmp_path / "bb" / f"{samples[1].name}.npy").unlink()
    calls.clear()
    maps, _, computed = score_map_sets(scorer, samples, {**folders, "ccc": tmp_path / "ccc"})
    assert calls == [("ccc",), ("bb", "ccc")] and computed == {"a": 0, "bb": 1, "ccc": 2}
    assert float(maps["a"][0][0, 0]) == 1.0 and float(maps["ccc"][1][0, 0]) == 3.0


def test_ablation_rows_sit_beside_the_references_and_are_flagged():
    def metrics(auroc):
        return {**{key: 0.5 for key, _ in COLUMNS}, "tissue_pixel_auroc_pooled": auroc}

    methods = [
        MethodResult("picard", {}, metrics(0.9), [], False, 0, True),
        MethodResult("brightness", {}, metrics(0.75), [], False, 0),
        MethodResult("local-contrast", {}, metrics(0.8), [], False, 0),
    ]
    ablations = [
        AblationResult("picard", "score", "mse", metrics(0.7), [], 0, False),
        AblationResult("picard", "score", "mcd-feature", metrics(0.85), [], 0, True),
        AblationResult("picard", "dropout_kind", "element", metrics(0.79), [], 0, False),
    ]
    summary = BenchmarkResult(
        BenchmarkConfig(),
        {"kind": "phantoms", "n_train": 3, "n_test": 2, "n_test_abnormal": 1},
        methods,
        "local-contrast",
        ablations=ablations,
    )
    tables = ablation_tables_html(summary)
    assert tables.count("<table>") == 2 and "<code>dropout_kind</code>: drop whole channels" in tables
    assert "dropout_layers" not in tables
    assert re.findall(r"<tr class=flagged><td>([^<]+)</td>", tables) == ["mse", "element"]
    assert tables.count("reference: local-contrast") == 2 and "<td>-0.100</td>" in tables
    markdown = metrics_markdown(summary)
    assert "| picard score | mcd-feature |" in markdown and "| +0.050 | beats the references |" in markdown
    assert markdown.count("| reference | brightness |") == 1


def test_references_are_always_added():
    config = BenchmarkConfig(methods=(MethodEntry("local-contrast", settings={"fine_sigma": 2.0}),))
    assert [entry.name for entry in config.all_methods()] == ["local-contrast", "brightness"]
    assert config.all_methods()[0].create().settings.fine_sigma == 2.0


def test_split_keeps_patients_apart_and_trains_on_normals_only():
    data = DataConfig(
        **{
            **TINY_DATA,
            "size": (128, 128),
            "n_normal": 6,
            "n_abnormal": 3,
            "test_normal_patients": 2,
            "test_abnormal_fraction": 1.0,
        }
    )
    samples = load_dataset(data, seed=1)
    split = split_dataset(samples, data, seed=1)
    train, test = split.train, split.test
    assert len(train) == 4 and all(s.is_normal for s in train) and split.validation == []
    assert sorted(s.label for s in test) == ["abnormal"] * 3 + ["normal"] * 2
    assert not {s.patient_id for s in train} & {s.patient_id for s in test}
    assert [s.name for s in split_dataset(samples, data, seed=1).test] == [s.name for s in test]  # seeded
    capped = DataConfig(**{**TINY_DATA, "size": (128, 128), "max_train_images": 2})
    assert len(split_dataset(load_dataset(capped, 1), capped, seed=1).train) == 2
    no_abnormal_test = DataConfig(**{**TINY_DATA, "size": (128, 128), "test_abnormal_patients": 0})
    with pytest.raises(ConfigError, match="no abnormal image; test more abnormal patients or add synthetic_test"):
        split_dataset(load_dataset(no_abnormal_test, 1), no_abnormal_test, seed=1)


def test_a_method_below_the_best_reference_is_flagged():
    def result(name, auroc):
        metrics = {key: 0.5 for key, _ in COLUMNS}
        return MethodResult(name, {}, {**metrics, "tissue_pixel_auroc_pooled": auroc}, [], False, 0)

    results = [result("picard", 0.80), result("brightness", 0.75), result("local-contrast", 0.85)]
    assert flag_methods(results) == "local-contrast"
    assert results[0].beats_references is False and results[1].beats_references is None
    summary = BenchmarkResult(
        BenchmarkConfig(),
        {"kind": "phantoms", "n_train": 3, "n_test": 2, "n_test_abnormal": 1},
        results,
        "local-contrast",
    )
    flagged_rows = re.findall(r"<tr class=flagged><td>([^<]+)</td>", metrics_table_html(summary))
    assert flagged_rows == ["picard"]
    assert "| picard |" in metrics_markdown(summary) and "DOES NOT BEAT" in metrics_markdown(summary)
    results = [result("picard", 0.90), result("brightness", float("nan")), result("local-contrast", 0.85)]
    assert flag_methods(results) == "local-contrast" and results[0].beats_references is True


def test_benchmark_metrics_json_is_strict_when_a_metric_is_undefined(tmp_path):
    metrics = {key: 0.5 for key, _ in COLUMNS}
    undefined = MethodResult("brightness", {}, {**metrics, "image_auroc": float("nan")}, [], False, 0)
    data = {"kind": "phantoms", "n_train": 3, "n_test": 2, "n_test_abnormal": 1, "test_images": ["a", "b"]}
    pooled = {"brightness": (np.array([False, True, False]), np.array([0.1, 0.9, 0.4], dtype=np.float32))}
    summary = BenchmarkResult(BenchmarkConfig(), data, [undefined], "brightness", pooled=pooled)
    write_benchmark_report(summary, tmp_path)
    written = json.loads((tmp_path / "metrics.json").read_text(), parse_constant=lambda name: pytest.fail(name))
    assert written["methods"]["brightness"]["image_auroc"] is None
    assert written["methods"]["brightness"]["tissue_pixel_auroc_pooled"] == 0.5


def test_benchmark_end_to_end_then_resumes_without_recomputing(tmp_path):
    config = _write_config(
        tmp_path / "bench.yaml", [{"name": "local-contrast", "settings": {"fine_sigma": 2.0, "coarse_sigma": 16.0}}]
    )
    out = tmp_path / "out"
    first = _run(config, out)
    assert "local-contrast: 3 score maps computed" in first and "brightness: 3 score maps computed" in first

    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["methods"]) == {"local-contrast", "brightness"}
    assert metrics["data"]["n_train"] == 3 and metrics["data"]["n_test_abnormal"] == 2
    for values in metrics["methods"].values():
        for key in ("pixel_auroc_pooled", "tissue_pixel_auroc_pooled", "tissue_pixel_ap_pooled", "image_auroc",
                    "tissue_aupro", "tissue_pixel_auroc_mean"):  # fmt: skip
            assert 0.0 <= values[key] <= 1.0
        assert values["tissue_pixel_auroc_pooled"] > 0.6  # the phantoms' lesions are brighter than their surroundings
        assert values["tissue_lesion_sensitivity"]["fp_per_image"] == [0.5, 1.0, 2.0, 4.0]  # as picard-ad evaluate
    assert metrics["best_reference"] in ("local-contrast", "brightness")
    stored = np.load(out / "maps" / "brightness" / "abnormal_0000.npy")
    assert stored.shape == (128, 128) and stored.dtype == np.float32

    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3  # curves and one overlay montage per method
    assert not re.search(r'src="(?!data:)', page)  # self-contained: no external pictures
    assert "local-contrast" in page and "coarse_sigma: 16.0" in page
    assert "| brightness |" in (out / "metrics.md").read_text()

    stamps = _map_stamps(out)
    fits = {p: p.stat().st_mtime_ns for p in (out / "methods").rglob("method.json")}
    second = _run(config, out)
    assert "0 score maps computed, 3 read from the cache" in second and "fitted in" not in second
    assert _map_stamps(out) == stamps and {p: p.stat().st_mtime_ns for p in fits} == fits
    resumed = json.loads((out / "metrics.json").read_text())
    assert all(values["reused_fit"] for values in resumed["methods"].values())
    key = "pixel_auroc_pooled"
    assert resumed["methods"]["brightness"][key] == metrics["methods"]["brightness"][key]


def test_a_fit_saved_before_a_setting_existed_is_reused(tmp_path):
    out = tmp_path / "out"
    config = _write_config(tmp_path / "a.yaml", [{"name": "local-contrast"}])
    _run(config, out)
    record_path = out / "methods" / "local-contrast" / "method.json"
    record = json.loads(record_path.read_text())
    del record["settings"]["fine_sigma"]  # as if written by a version without that setting, at its default
    record_path.write_text(json.dumps(record))
    assert "local-contrast: reused the saved fit" in _run(config, out)


def test_a_changed_method_config_is_refused_until_its_fit_is_removed(tmp_path):
    out = tmp_path / "out"
    _run(_write_config(tmp_path / "a.yaml", [{"name": "brightness"}]), out)
    changed = _write_config(tmp_path / "b.yaml", [{"name": "brightness", "settings": {"sigma": 2.0}}])
    result = CliRunner().invoke(command, ["--config", str(changed), "--out", str(out)])
    assert isinstance(result.exception, ConfigError) and "another config" in str(result.exception)
    shutil.rmtree(out / "methods" / "brightness")  # refitting invalidates the cached maps of the old fit
    assert "brightness: 3 score maps computed" in _run(changed, out)


def test_an_output_folder_of_other_data_is_refused(tmp_path):
    """Cached maps are keyed by image name, and another seed regenerates phantoms under the same names."""
    out = tmp_path / "out"
    _run(_write_config(tmp_path / "a.yaml", [{"name": "brightness"}]), out)
    other_seed = _write_config(tmp_path / "b.yaml", [{"name": "brightness"}], seed=4)
    result = CliRunner().invoke(command, ["--config", str(other_seed), "--out", str(out)])
    assert isinstance(result.exception, ConfigError) and "other data or another seed" in str(result.exception)
    assert json.loads((out / "data.json").read_text())["seed"] == 3


def test_synthetic_options_are_validated(tmp_path):
    cases = [
        ({"synthetic_test": -1}, "data: synthetic_test must be a count >= 0, got -1"),
        ({"synthetic_validation": -2}, "synthetic_validation must be a count >= 0, got -2"),
        (
            {"synthetic_kinds": ["disc", "sphere"]},
            f"synthetic_kinds: unknown kind 'sphere'; valid kinds: {', '.join(ANOMALY_KINDS)}",
        ),
        ({"synthetic_kinds": []}, "synthetic_kinds: no kind given"),
        (
            {"synthetic_validation": 2, "synthetic_validation_patients": 0},
            "synthetic_validation needs patients to hold out",
        ),
        ({"synthetic_validation_fraction": 1.5}, "synthetic_validation_fraction must be in [0, 1], got 1.5"),
        ({"synthetic_validation_patients": 1.5}, "expected an integer, got 1.5"),
        ({"test_normal_patients": 1, "test_normal_fraction": 0.5}, "give test_normal_patients (a count) or"),
        ({"synthetic_tests": 2}, "did you mean 'synthetic_test'"),
    ]
    for data, message in cases:
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump({"data": {**TINY_DATA, **data}}))
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_config(BenchmarkConfig, path)
    no_normal_test = DataConfig(**{**TINY_DATA, "size": (128, 128), "test_normal_patients": 0, "synthetic_test": 2})
    with pytest.raises(ConfigError, match=r"data.synthetic_test: the test split holds no normal image.*test_normal"):
        split_dataset(load_dataset(no_normal_test, 1), no_normal_test, seed=1)
    one_train_patient = DataConfig(**{**TINY_DATA, "size": (128, 128), "n_normal": 2, "synthetic_validation": 2})
    with pytest.raises(ConfigError, match="or hold out fewer for synthetic validation"):
        split_dataset(load_dataset(one_train_patient, 1), one_train_patient, seed=1)


def test_split_tests_the_named_patients_of_a_fold():
    data = DataConfig(**{**TINY_DATA, "size": (128, 128), "test_normal_patients": None})
    samples = load_dataset(data, seed=1)
    patient = next(s.patient_id for s in samples if not s.is_normal)
    fold = DataConfig(**{**vars(data), "test_patients": [patient]})
    assert fold.test_patients == (patient,)
    split = split_dataset(samples, fold, seed=1)
    assert {s.patient_id for s in split.test} == {patient}
    assert {s.patient_id for s in split.train} == {s.patient_id for s in samples if s.is_normal} - {patient}
    with pytest.raises(ConfigError, match="data.test_patients: no patient 'nobody' in the dataset"):
        split_dataset(samples, DataConfig(**{**vars(data), "test_patients": ("nobody",)}), seed=1)
    with pytest.raises(ValueError, match="give test_patients or test_normal_patients, not both"):
        DataConfig(**{**vars(data), "test_patients": (patient,), "test_normal_patients": 1})


def test_split_adds_synthetic_test_images_and_holds_out_validation_patients():
    data = DataConfig(
        **{
            **TINY_DATA,
            "size": (128, 128),
            "n_normal": 7,
            "test_normal_patients": 2,
            "synthetic_test": 3,
            "synthetic_validation": 4,
            "synthetic_validation_patients": 2,
            "synthetic_kinds": ("disc", "contrast"),
        }
    )
    samples = load_dataset(data, seed=1)
    split = split_dataset(samples, data, seed=1)
    real = [s for s in split.test if not is_synthetic(s)]
    synthetic = [s for s in split.test if is_synthetic(s)]
    assert len(real) == 4 and [s.name for s in split.test[4:]] == [s.name for s in synthetic]
    normal_test = {s.name: s for s in real if s.is_normal}
    assert len(normal_test) == 2 and len(synthetic) == 3
    for index, sample in enumerate(synthetic):
        kind = ("disc", "contrast")[index % 2]
        assert sample.name == f"{sample.info['base']}_synthetic{index:04d}_{kind}" and not sample.is_normal
        loaded, base = sample.load(), normal_test[sample.info["base"]].load()
        # exact mask: every pixel outside it is the normal test image's, and it lies in the tissue
        assert loaded.lesion_mask.any() and not (loaded.lesion_mask & ~base.tissue_mask).any()
        assert np.array_equal(loaded.image[~loaded.lesion_mask], base.image[~loaded.lesion_mask])
        assert not np.array_equal(loaded.image, base.image)
    # validation: made from 2 held-out training patients, apart from the training and test patients
    assert len(split.validation) == 4 and all(is_synthetic(s) for s in split.validation)
    held_out = {s.patient_id for s in split.validation}
    assert len(split.train) == 7 - 2 - 2 and len(held_out) <= 2
    assert not held_out & {s.patient_id for s in split.train} and not held_out & {s.patient_id for s in split.test}
    again = split_dataset(samples, data, seed=1)  # seeded: the same images, anomalies and masks
    for first, second in zip(split.test + split.validation, again.test + again.validation, strict=True):
        assert first.name == second.name and np.array_equal(first.load().image, second.load().image)


def test_synthetic_validation_skips_bases_too_small_for_an_anomaly():
    # a volume's edge slices hold a rim of tissue; drawn as a base or paste source they used to stop the benchmark
    from picard_ad.data.samples import Sample

    def slice_(patient, index, side, abnormal=False):
        image, tissue = np.zeros((96, 96), np.float32), np.zeros((96, 96), bool)
        tissue[48 - side // 2 : 48 + side // 2, 48 - side // 2 : 48 + side // 2] = True
        image[tissue] = np.random.default_rng(index).uniform(0.3, 0.7, int(tissue.sum()))
        lesion = (tissue & (np.arange(96)[:, None] < 50)) if abnormal else None
        label = "abnormal" if abnormal else "normal"
        return Sample(f"{patient}_slice{index:03d}", patient, label, image, lesion, tissue)

    samples = [
        slice_(p, i, 8 if i in (0, 5) else 80, abnormal=p == "p0" and i == 2)
        for p in ("p0", "p1", "p2")
        for i in range(6)
    ]
    data = DataConfig(
        **{
            **TINY_DATA,
            "test_normal_patients": 0,
            "test_abnormal_patients": 1,
            "synthetic_validation": 12,
            "synthetic_validation_patients": 1,
        }
    )
    split = split_dataset(samples, data, seed=0)
    assert len(split.validation) == 12 and len(split.train) == 6
    used = {s.info["base"] for s in split.validation} | {s.info.get("source") for s in split.validation} - {None}
    assert used and not any(name.endswith(("slice000", "slice005")) for name in used)


def test_synthetic_test_and_validation_end_to_end_then_resume(tmp_path, monkeypatch):
    data = {
        **TINY_DATA,
        "n_normal": 6,
        "synthetic_test": 2,
        "synthetic_validation": 3,
        "synthetic_kinds": ["disc", "contrast", "blur"],
    }
    config_path = tmp_path / "bench.yaml"
    methods = [{"name": "local-contrast"}, TINY_PICARD]
    config_path.write_text(yaml.safe_dump({"data": data, "methods": methods, "seed": 3}))
    out = tmp_path / "out"
    first = _run(config_path, out)
    assert "(4 abnormal, 2 of them synthetic), 3 synthetic validation images" in first
    assert "local-contrast: 3 synthetic validation maps computed, 0 read from the cache" in first
    assert "picard: 3 synthetic validation maps computed, 0 read from the cache" in first

    metrics = json.loads((out / "metrics.json").read_text())
    summary = metrics["data"]
    assert summary["n_test_synthetic"] == 2 and summary["n_validation_synthetic"] == 3
    synthetic_names = summary["synthetic_test_images"]
    assert all(re.search(r"_synthetic000[01]_(disc|contrast)$", name) for name in synthetic_names)
    assert not set(summary["validation_images"]) & set(summary["test_images"])
    for name, values in metrics["methods"].items():
        assert set(synthetic_names) <= set(values["per_image_tissue_pixel_auroc"])
        for key in ("mean", "calibration_mean_dice"):
            assert 0.0 <= values["dice"][key] <= 1.0, (name, key)
        assert 0.0 <= values["best_dice_optimistic"]["mean"] <= 1.0
        assert values["dice"]["threshold"] is not None and values["dice"]["n_calibration_images"] == 3
        fifth = values["dice_fifth_of_test_optimistic"]  # 4 abnormal test images: 1 chooses, 3 are scored
        assert (fifth["n_threshold_images"], fifth["n_images"]) == (1, 3) and 0.0 <= fifth["mean"] <= 1.0
        origins = values["real_vs_synthetic"]
        assert set(origins) == {"real", "synthetic"}
        for origin in origins.values():
            assert 0.0 <= origin["tissue_pixel_auroc_pooled"] <= 1.0 and 0.0 <= origin["dice"]["mean"] <= 1
    # the validation maps are cached beside the test maps, under their own names
    for name in summary["validation_images"]:
        assert (out / "maps" / "picard" / f"{name}.npy").is_file()
    page = (out / "report.html").read_text()
    assert "Real vs synthetic anomalies" in page and "Label-free Dice threshold (synthetic validation)" in page
    assert "optimistic upper bound" in page
    assert "Dice, threshold from 1/5 of test (optimistic: threshold from labelled test images)" in page
    markdown = (out / "metrics.md").read_text()
    assert "Label-free Dice threshold" in markdown and "real: tissue pixel AUROC" in markdown
    assert "| local-contrast |" in markdown and "2 of them synthetic), 3 synthetic validation images" in markdown

    # The "real" metrics are what a benchmark without synthetic test images reports.
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump({"data": TINY_DATA | {"n_normal": 6}, "methods": [], "seed": 3}))
    _run(plain, tmp_path / "plain")
    without = json.loads((tmp_path / "plain" / "metrics.json").read_text())["methods"]["brightness"]
    real = metrics["methods"]["brightness"]["real_vs_synthetic"]["real"]
    for key in ("tissue_pixel_auroc_pooled", "tissue_pixel_ap_pooled", "image_auroc", "best_dice_optimistic"):
        assert real[key] == without[key], key
    assert without["dice"] is None and without["real_vs_synthetic"] == {}

    # A rerun recomputes nothing, validation maps included.
    stamps = _map_stamps(out)
    second = _run(config_path, out)
    assert "0 synthetic validation maps computed, 3 read from the cache" in second
    assert not re.search(r"[1-9] (synthetic validation|score) maps computed", second) and "fitted in" not in second
    assert _map_stamps(out) == stamps
    resumed = json.loads((out / "metrics.json").read_text())["methods"]
    for name, values in resumed.items():
        assert values["reused_fit"] and values["maps_computed"] == 0
        assert {**values, "reused_fit": False, "maps_computed": 0} == {**metrics["methods"][name], "maps_computed": 0}

    # The threshold is chosen without the test labels: other test masks change the test Dice, not the threshold.
    def other_masks(data_config, seed):
        samples = load_dataset(data_config, seed)
        square = np.zeros((128, 128), bool)
        square[40:60, 40:60] = True
        return [s if s.is_normal else dataclasses.replace(s, lesion_mask=square) for s in samples]

    monkeypatch.setattr("picard_ad.benchmark.run.load_dataset", other_masks)
    moved = run_benchmark(load_config(BenchmarkConfig, config_path), out)
    for method in moved.methods:
        before = metrics["methods"][method.name]
        assert method.maps_computed == 0
        assert method.metrics["dice"]["threshold"] == before["dice"]["threshold"]
        assert method.metrics["dice"]["calibration_mean_dice"] == before["dice"]["calibration_mean_dice"]
        assert method.metrics["best_dice_optimistic"]["mean"] != before["best_dice_optimistic"]["mean"]


def test_a_fit_is_not_reused_once_synthetic_validation_holds_its_images_out(tmp_path):
    out = tmp_path / "out"
    _run(_write_config(tmp_path / "a.yaml", [{"name": "brightness"}]), out)
    (out / "data.json").unlink()  # as from a version without the data record, which would refuse the folder first
    path = tmp_path / "b.yaml"
    path.write_text(yaml.safe_dump({"data": {**TINY_DATA, "synthetic_validation": 1}, "seed": 3}))
    result = CliRunner().invoke(command, ["--config", str(path), "--out", str(out)])
    assert isinstance(result.exception, ConfigError)
    assert "'brightness' was fitted on other training images (3 then, 2 now)" in str(result.exception)


def test_a_folder_of_normal_images_is_benchmarked_with_synthetic_anomalies(tmp_path):
    phantoms = load_dataset(DataConfig(**{**TINY_DATA, "size": (128, 128), "n_abnormal": 0, "n_normal": 5}), 2)
    for sample in phantoms:
        write_png(tmp_path / "scans" / f"{sample.name}.png", sample.load_image())
    config = tmp_path / "folder.yaml"
    data = {
        "kind": "folder",
        "images_dir": str(tmp_path / "scans"),
        "test_normal_patients": 2,
        "synthetic_test": 2,
        "synthetic_validation": 2,
        "synthetic_validation_patients": 1,
    }
    config.write_text(yaml.safe_dump({"data": data, "seed": 1}))
    output = _run(config, tmp_path / "out")
    assert "warning: folder dataset without patient_pattern: every image counts as its own patient" in output
    assert "2 normal training images, 4 test images (2 abnormal, 2 of them synthetic)" in output
    page = (tmp_path / "out" / "report.html").read_text()
    assert '<p class="flag">&#9888; folder dataset without patient_pattern' in page
    assert "**Warning:** folder dataset without patient_pattern" in (tmp_path / "out" / "metrics.md").read_text()
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["data"]["n_test_abnormal"] == metrics["data"]["n_test_synthetic"] == 2
    for values in metrics["methods"].values():
        assert 0.0 <= values["tissue_pixel_auroc_pooled"] <= 1.0 and 0.0 <= values["dice"]["mean"] <= 1.0
        assert values["real_vs_synthetic"] == {}  # no real anomaly to compare with
    assert "Real vs synthetic anomalies" not in (tmp_path / "out" / "report.html").read_text()


@pytest.mark.parametrize(
    ("name", "methods"),
    [("bench-phantoms.yaml", ["picard", "cutpaste", "cutpaste-int8", "patchsvdd"]), ("bench-brats.yaml", ["picard"])],
)
def test_shipped_configs_load(name, methods):
    config = load_config(BenchmarkConfig, REPO / "configs" / name)
    assert [entry.label for entry in config.all_methods()] == [*methods, "brightness", "local-contrast"]
    for entry in config.methods:  # every method at the phantom scale: 64 px windows at stride 16
        method = entry.create()
        assert entry.preset == "small" and method.train_config.patch_size == 64
        assert (method.settings.stride or method.train_config.bank_stride) == 16


@pytest.mark.slow
def test_picard_benchmark_with_ablations_resumes_from_its_saved_network(tmp_path):
    ablations = [
        {"method": "picard", "setting": "n_completions", "values": [1, 2]},
        {"method": "picard", "setting": "score",
         "values": ["calibrated-quantile-feature", "median-feature", "mse", "dmse"]},  # the default first
        {"method": "picard", "setting": "dropout_layers", "values": ["reference", "paper"]},
        {"method": "picard", "setting": "dropout_kind", "values": ["spatial", "element"]},
        {"method": "brightness", "setting": "sigma", "values": [1.0, 4.0]},
    ]
    config = _write_config(tmp_path / "bench.yaml", [TINY_PICARD], ablations=ablations)
    out = tmp_path / "out"
    first = _run(config, out)
    metrics = json.loads((out / "metrics.json").read_text())
    picard = metrics["methods"]["picard"]
    assert picard["fit_seconds"] > 0 and picard["beats_references"] in (True, False)

    rows = {(row["method"], row["setting"], row["value"]): row for row in metrics["ablations"]}
    assert [key[1:] for key in rows] == [
        ("n_completions", "1"),
        ("n_completions", "2"),
        ("score", "calibrated-quantile-feature"),
        ("score", "median-feature"),
        ("score", "mse"),
        ("score", "dmse"),
        ("dropout_layers", "reference"),
        ("dropout_layers", "paper"),
        ("dropout_kind", "spatial"),
        ("dropout_kind", "element"),
        ("sigma", "1.0"),
        ("sigma", "4.0"),
    ]
    for row in rows.values():
        for key in ("pixel_auroc_pooled", "pixel_ap_pooled", "tissue_pixel_auroc_pooled", "tissue_pixel_ap_pooled",
                    "tissue_pixel_auroc_mean", "tissue_pixel_ap_mean", "image_auroc", "tissue_aupro"):  # fmt: skip
            assert 0.0 <= row[key] <= 1.0
        assert row["beats_references"] in (True, False) and len(row["per_image_tissue_pixel_auroc"]) == 2
    # The variants equal to the methods' own settings are their maps, not computed again.
    own = [("picard", "n_completions", "2"), ("picard", "score", "calibrated-quantile-feature"),
           ("picard", "dropout_layers", "reference"), ("picard", "dropout_kind", "spatial"),
           ("brightness", "sigma", "4.0")]  # fmt: skip
    for key in own:
        method = metrics["methods"][key[0]]
        assert rows[key]["pixel_auroc_pooled"] == method["pixel_auroc_pooled"] and rows[key]["maps_computed"] == 0
    maps = sorted(path.name for path in (out / "maps").iterdir())
    assert maps == [
        "brightness",
        "brightness-sigma-1.0",
        "local-contrast",
        "picard",
        "picard-dropout_kind-element",
        "picard-dropout_layers-paper",
        "picard-n_completions-1",
        "picard-score-dmse",
        "picard-score-median-feature",
        "picard-score-mse",
    ]
    assert "picard score=median-feature: 3 score maps computed" in first
    # The paper preset's fine-stage dropout changes the maps. (In this 4-step network the reference preset's coarse
    # dropout, spatial or element-wise, leaves the completions unchanged to 1e-7, so the element-wise variant's maps
    # equal the default's here; tests/layers/test_dropout.py checks the element masks.)
    own_map = np.load(out / "maps" / "picard" / "abnormal_0000.npy")
    paper_map = np.load(out / "maps" / "picard-dropout_layers-paper" / "abnormal_0000.npy")
    assert np.abs(paper_map - own_map).max() > 1e-3
    assert rows["picard", "dropout_kind", "element"]["maps_computed"] == 3
    page = (out / "report.html").read_text()
    assert "<h2>Ablations</h2>" in page and "<code>dropout_kind</code>: drop whole channels" in page
    assert page.count("<td>reference: brightness</td>") == 5
    assert page.count("data:image/png;base64,") == 5  # curves, AUROC against n_completions and sigma, 2 overlays
    assert "| picard dropout_layers | paper |" in (out / "metrics.md").read_text()

    stamps = _map_stamps(out)
    second = _run(config, out)
    assert "picard: reused the saved fit" in second and "picard: 0 score maps computed" in second
    assert "picard dropout_kind=element: 0 score maps computed, 3 read from the cache" in second
    assert "score maps computed, 3 read" in second and not re.search(r"[1-9] score maps computed", second)
    assert _map_stamps(out) == stamps
    again = json.loads((out / "metrics.json").read_text())["ablations"]
    assert again[5]["pixel_auroc_pooled"] == rows["picard", "score", "dmse"]["pixel_auroc_pooled"]
