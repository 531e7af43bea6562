"""The method interface and registry; every registered method is fitted and scored on seeded phantoms."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from picard_ad.data.datasets import phantom_dataset
from picard_ad.data.phantoms import PhantomConfig
from picard_ad.errors import ConfigError, CorruptFileError, InputError
from picard_ad.methods import (
    AnomalyMethod,
    NotFittedError,
    create_method,
    describe_methods,
    list_methods,
    load_method,
    method_class,
    register_method,
)
from picard_ad.methods.base import METHOD_FILE
from picard_ad.methods.reference import Brightness, BrightnessSettings, LocalContrast

TINY = PhantomConfig(size=(128, 128), pixel_spacing_mm=1.0)


def _fast(name: str):
    """The method with its "tiny" training preset where it has one: every registered method fits in seconds."""
    return create_method(name, preset="tiny" if "tiny" in method_class(name).presets else None)


@pytest.fixture(scope="module")
def phantoms():
    samples = phantom_dataset(3, 2, TINY, seed=5)
    return [s for s in samples if s.is_normal], [s.load() for s in samples if not s.is_normal]


def test_training_free_methods_score_without_fit(phantoms):
    image = phantoms[1][0].image
    for name in ("brightness", "local-contrast"):
        method = create_method(name)
        assert not method.needs_training and method.fitted
        assert method.score_map(image).shape == image.shape


def test_the_reference_methods_are_registered():
    assert {"brightness", "local-contrast"} <= set(list_methods())
    assert list_methods("local-*") == ["local-contrast"]
    assert list_methods("no-such-*") == []
    assert method_class("brightness") is Brightness and Brightness.name == "brightness"


@pytest.mark.parametrize("name", list_methods())
def test_every_method_fits_and_scores_phantoms_repeatably(name, phantoms, tmp_path):
    normals, abnormals = phantoms
    method = _fast(name)
    assert method.fit(normals, run_dir=tmp_path) is method and method.fitted
    for sample in abnormals:
        heatmaps = method.heatmaps(sample.image, method.score_names)
        assert set(heatmaps) == set(method.score_names)
        for score, heatmap in heatmaps.items():
            assert heatmap.score_name == score and heatmap.array.shape == sample.image.shape
            assert heatmap.array.dtype == np.float32 and np.isfinite(heatmap.array).all()
        scores = method.score_map(sample.image)
        assert np.array_equal(scores, heatmaps[method.settings.score].array) and scores.std() > 0
        assert np.array_equal(method.score_map(sample.image), scores)
        image_score = method.image_score(sample.image, scores, sample.tissue_mask)
        assert np.isfinite(image_score)
        assert image_score == method.image_score(sample.image, tissue=sample.tissue_mask)


@pytest.mark.parametrize("name", [name for name in list_methods() if method_class(name).needs_training])
def test_an_unfitted_method_refuses_to_score_or_save(name, phantoms, tmp_path):
    image = phantoms[1][0].image
    method = _fast(name)
    with pytest.raises(NotFittedError, match=f"method '{name}' must be fitted"):
        method.score_map(image)
    with pytest.raises(NotFittedError, match=name):
        method.save(tmp_path)
    assert not (tmp_path / METHOD_FILE).exists()


@pytest.mark.parametrize("name", list_methods())
def test_save_and_load_give_identical_maps(name, phantoms, tmp_path):
    normals, abnormals = phantoms
    method = _fast(name).fit(normals, run_dir=tmp_path / "run")
    method.save(tmp_path / "saved")
    for folder in ("run", "saved"):
        for loaded in (load_method(tmp_path / folder), method_class(name).load(tmp_path / folder)):
            assert type(loaded) is type(method) and loaded.fitted
            assert (loaded.train_config, loaded.settings) == (method.train_config, method.settings)
            assert loaded.identity() == method.identity()
            for sample in abnormals:
                assert np.array_equal(loaded.score_map(sample.image), method.score_map(sample.image))


@pytest.mark.parametrize("name", list_methods())
def test_every_method_declares_its_scores_settings_and_help(name):
    cls = method_class(name)
    assert cls.settings_class().score in cls.score_names and len(set(cls.score_names)) == len(cls.score_names)
    fields = dataclasses.fields(cls.settings_class) + dataclasses.fields(cls.train_config_class)
    assert all(field.metadata.get("help") for field in fields)  # every setting says what it is
    assert any(line.startswith(f"{name} ") for line in describe_methods())


def test_an_unknown_name_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown method 'picardd'") as error:
        create_method("picardd")
    assert all(name in str(error.value) for name in list_methods())


def test_config_keywords_are_typed_and_checked():
    assert create_method("brightness", settings={"sigma": 2}).settings.sigma == 2.0
    assert create_method("local-contrast", settings={"fine_sigma": 1.5, "coarse_sigma": 8}).settings.coarse_sigma == 8
    with pytest.raises(ConfigError, match="unknown key 'sigmaa' .*did you mean 'sigma'"):
        create_method("brightness", settings={"sigmaa": 2.0})
    with pytest.raises(ConfigError, match="fine_sigma < coarse_sigma"):
        create_method("local-contrast", settings={"fine_sigma": 8.0, "coarse_sigma": 4.0})
    with pytest.raises(ConfigError, match="sigma must be > 0.0"):
        BrightnessSettings(sigma=0.0)
    with pytest.raises(ConfigError, match="takes a BrightnessSettings"):
        Brightness(settings={"sigma": 2.0})
    with pytest.raises(ConfigError, match="unknown score 'mcd-image'; its scores: brightness"):
        Brightness().heatmap(np.zeros((4, 4), np.float32), "mcd-image")
    with pytest.raises(ConfigError, match="no training preset 'small'"):
        create_method("brightness", preset="small")


def test_a_name_cannot_be_registered_twice_nor_a_method_that_scores_nothing():
    with pytest.raises(ValueError, match="'brightness' is already taken by Brightness"):
        register_method("brightness")(LocalContrast)

    class Silent(AnomalyMethod):
        settings_class = BrightnessSettings
        score_names = ("brightness",)

        def learn(self, images, run_dir, *, resume, progress, context):
            """Nothing to learn."""

    with pytest.raises(TypeError, match="'silent' must implement compute_heatmaps or compute_score_maps"):
        register_method("silent")(Silent)
    assert "silent" not in list_methods()


def test_fit_takes_normal_samples_or_arrays_only(phantoms, tmp_path):
    normals, abnormals = phantoms
    assert Brightness().fit([abnormals[0].image]).fitted
    with pytest.raises(InputError, match="at least one normal image"):
        Brightness().fit([])
    abnormal_samples = [s for s in phantom_dataset(0, 1, TINY, seed=5)]
    with pytest.raises(InputError, match="normal images only; abnormal: abnormal_0000"):
        Brightness().fit(normals + abnormal_samples)
    with pytest.raises(TypeError, match="got int at position 0"):
        Brightness().fit([3])
    with pytest.raises(InputError, match="no such folder or file"):
        Brightness().fit(tmp_path / "absent")
    with pytest.raises(ConfigError, match="method 'picard' trains a network: give fit a run folder"):
        _fast("picard").fit(normals)


def test_score_map_checks_the_image():
    method = Brightness().fit([np.zeros((8, 8), np.float32)])
    for bad, problem in [
        (np.zeros((2, 8, 8)), "expected a non-empty \\(H, W\\) image"),
        (np.full((8, 8), 1.5), "in \\[0, 1\\], got \\[1.5, 1.5\\]"),
        (np.full((8, 8), np.nan), "finite and in \\[0, 1\\]"),
    ]:
        with pytest.raises(ValueError, match=f"method 'brightness': .*{problem}"):
            method.score_map(bad)
    assert method.score_map(np.ones((8, 8), np.float64)).dtype == np.float32


def test_image_score_is_the_099_quantile_over_tissue():
    method = Brightness().fit([np.zeros((4, 4), np.float32)])
    scores = np.arange(100, dtype=np.float32).reshape(10, 10)
    tissue = np.zeros((10, 10), bool)
    tissue[:5] = True  # scores 0..49
    image = np.zeros((10, 10), np.float32)
    assert method.image_score(image, scores, tissue) == pytest.approx(np.quantile(np.arange(50), 0.99))
    # no tissue at all: the whole map
    no_tissue = np.zeros((10, 10), bool)
    assert method.image_score(image, scores, no_tissue) == pytest.approx(np.quantile(np.arange(100), 0.99))
    # tissue derived from the image: only the bright rows count
    image[5:] = 0.5
    assert method.image_score(image, scores) == pytest.approx(np.quantile(np.arange(50, 100), 0.99))


def test_local_contrast_is_higher_on_phantom_lesions_than_on_their_tissue(phantoms):
    method = create_method("local-contrast", settings={"fine_sigma": 1.0, "coarse_sigma": 8.0}).fit(phantoms[0])
    for sample in phantoms[1]:
        scores = method.score_map(sample.image)
        background = sample.tissue_mask & ~sample.lesion_mask
        assert scores[sample.lesion_mask].mean() > scores[background].mean() + 0.01


def test_load_names_what_is_wrong(phantoms, tmp_path):
    with pytest.raises(InputError, match="holds no fitted method"):
        AnomalyMethod.load(tmp_path)
    Brightness().fit(phantoms[0]).save(tmp_path / "b")
    with pytest.raises(InputError, match="holds method 'brightness', not 'local-contrast'"):
        LocalContrast.load(tmp_path / "b")
    record_path = tmp_path / "b" / METHOD_FILE
    record = json.loads(record_path.read_text())
    record_path.write_text(json.dumps({**record, "name": "gone"}))
    with pytest.raises(ConfigError, match="unknown method 'gone'"):
        AnomalyMethod.load(tmp_path / "b")
    record_path.write_text(json.dumps({**record, "name": "brightness", "settings": {"sigma": -1.0}}))
    with pytest.raises(ConfigError, match=f"{record_path}: settings: sigma must be > 0.0"):
        AnomalyMethod.load(tmp_path / "b")
    record_path.write_text(json.dumps({**record, "format_version": 1}))
    with pytest.raises(CorruptFileError, match="version"):
        AnomalyMethod.load(tmp_path / "b")
    record_path.write_text("{not json")
    with pytest.raises(CorruptFileError, match="not valid JSON"):
        AnomalyMethod.load(Path(tmp_path / "b"))
