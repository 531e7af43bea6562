import dataclasses

import numpy as np
import pytest
import torch
import yaml
from networks import lively_generator
from picard_runs import FAST, PaddedPhantom, write_tiny_run

from picard_ad.config import from_dict, to_dict
from picard_ad.errors import ConfigError, InputError
from picard_ad.io.base import ImageMeta, ScanImage
from picard_ad.layers import ChannelDropout, ConvBlock
from picard_ad.methods import load_method
from picard_ad.methods.picard import REGION_CROPPED_LAYERS, Picard, PicardSettings


@pytest.fixture(autouse=True)
def _single_thread(one_torch_thread):
    """Every test here runs torch on one thread (the shared fixture in tests/conftest.py)."""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return write_tiny_run(tmp_path_factory.mktemp("picard_run"))


@pytest.fixture(scope="module")
def phantom():
    return PaddedPhantom()


def test_load_takes_window_sizes_from_the_model_and_describes_it(run_dir):
    picard = load_method(run_dir, **FAST)
    assert isinstance(picard, Picard) and picard.settings.patch_size is None  # "the model's", as saved
    assert (picard.patch_size, picard.mask_size) == (64, 32)
    assert picard.model["step"] == 12 and picard.model["cnum"] == 4
    assert picard.model_record()["checkpoint"] == str((run_dir / "last").resolve())
    assert Picard.load(run_dir, patch_size=96, **FAST).patch_size == 96
    with pytest.raises(ConfigError, match="multiple of 8"):
        Picard.load(run_dir, patch_size=60, **FAST)


def test_the_identity_names_the_weights_and_the_settings_that_change_results(run_dir, tmp_path):
    picard = load_method(run_dir, **FAST)
    identity = picard.identity()
    assert identity["name"] == "picard" and identity["train"]["cnum"] == 4
    assert identity["settings"]["n_completions"] == 2 and "device" not in identity["settings"]
    assert load_method(run_dir, **{**FAST, "device": "auto", "batch_size": 3}).identity() == identity
    assert load_method(run_dir, **{**FAST, "n_completions": 3}).identity() != identity
    moved = tmp_path / "moved"
    picard.save(moved)  # the checkpoint is copied: a moved run keeps its identity
    assert load_method(moved, **FAST).identity() == identity
    other = write_tiny_run(tmp_path / "other", seed=1)
    assert load_method(other, **FAST).identity()["state_sha256"] != identity["state_sha256"]


def test_heatmap_of_an_image(run_dir, phantom):
    heatmap = Picard.load(run_dir, **FAST).heatmap(phantom.image)
    assert heatmap.score_name == PicardSettings().score == "calibrated-quantile-feature"  # docs/picard-study.md
    assert heatmap.array.shape == phantom.image.shape and heatmap.array.dtype == np.float32
    assert np.isfinite(heatmap.array).all()
    assert heatmap.grid.shape == (4, 6)
    assert 0 < heatmap.n_skipped_windows < heatmap.n_windows  # the phantom's background corner
    assert heatmap.settings["n_completions"] == 2 and heatmap.settings["device"] == "cpu"
    assert heatmap.timings["completions"] == 2 * (heatmap.n_windows - heatmap.n_skipped_windows)


def test_several_scores_share_one_pass(run_dir, phantom):
    picard = Picard.load(run_dir, **FAST)
    names = ("mcd-image", "mean-image", "median-image", "mcd-feature", "mean-feature", "median-feature")
    heatmaps = picard.heatmaps(phantom.image, names)
    assert set(heatmaps) == set(names)
    scored = heatmaps["mcd-image"].n_windows - heatmaps["mcd-image"].n_skipped_windows
    assert heatmaps["mcd-image"].timings["completions"] == 2 * scored  # not 6 x 2 x scored
    np.testing.assert_allclose(heatmaps["mcd-image"].array, picard.heatmap(phantom.image, "mcd-image").array,
                               rtol=1e-5)
    keep = ~heatmaps["mcd-image"].skipped
    assert np.all(heatmaps["mcd-image"].window_scores[keep] <= heatmaps["mean-image"].window_scores[keep])


def test_swiecicki_scores(run_dir, phantom):
    heatmaps = Picard.load(run_dir, **FAST).heatmaps(phantom.image, ("mse", "critic", "dmse"))
    keep = ~heatmaps["mse"].skipped
    product = heatmaps["mse"].window_scores * heatmaps["critic"].window_scores
    np.testing.assert_allclose(heatmaps["dmse"].window_scores[keep], product[keep], rtol=1e-5)
    assert np.all(heatmaps["critic"].window_scores > 0)


def test_feature_scores_resize_holes_that_differ_from_the_critic_input(run_dir, phantom):
    picard = Picard.load(run_dir, mask_size=16, **FAST)  # the critic was built for 32 px holes
    heatmap = picard.heatmaps(phantom.image, ("mcd-feature",))["mcd-feature"]
    assert heatmap.grid.mask_size == 16
    assert np.isfinite(heatmap.window_scores).all() and heatmap.window_scores.max() > 0


def test_scan_images_are_accepted_and_named_in_errors(run_dir):
    meta = ImageMeta(path="tiny.png", format="png", modality=None, spacing=None, photometric=None,
                     normalization="test", slice_index=0, n_slices=1, stored_shape=(40, 40), stored_dtype="uint8")
    with pytest.raises(InputError, match="tiny.png"):
        Picard.load(run_dir, **FAST).heatmap(ScanImage(np.ones((40, 40), np.float32), meta))


def test_same_seed_same_heatmap_other_seed_other_heatmap(run_dir, phantom):
    first = Picard.load(run_dir, **FAST).heatmap(phantom.image).array
    again = Picard.load(run_dir, batch_size=3, **FAST).heatmap(phantom.image).array
    other = Picard.load(run_dir, seed=99, **FAST).heatmap(phantom.image).array
    np.testing.assert_allclose(again, first, rtol=1e-5, atol=1e-5)
    assert np.abs(other - first).max() > 1e-3


def test_settings_validate_and_round_trip_through_yaml():
    settings = PicardSettings(score="median-feature", dropout_layers=["coarse_generator.conv3"], batch_size=12)
    loaded = from_dict(PicardSettings, yaml.safe_load(yaml.safe_dump(to_dict(settings))))
    assert loaded == settings
    for bad, message in (({"score": "mcd"}, "score must be one of mcd-image"), ({"n_completions": 0}, r"\[1, 4096\]"),
                         ({"dropout_p": 1.0}, r"\[0.0, 1.0\)"), ({"dropout_layers": "fine"}, "unknown dropout"),
                         ({"batch_size": 0}, ">= 1"), ({"device": "tpu"}, "device"),
                         ({"tissue_threshold": float("nan")}, "finite")):  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            dataclasses.replace(PicardSettings(), **bad)
    with pytest.raises(ConfigError, match="did you mean"):
        from_dict(PicardSettings, {"strides": 8})


def test_unknown_keyword_setting_is_a_config_error(run_dir):
    with pytest.raises(ConfigError, match="M"):
        Picard.load(run_dir, M=3)


def test_element_dropout_heatmaps_are_reproducible_and_differ_from_spatial_ones(run_dir, phantom):
    element = Picard.load(run_dir, dropout_kind="element", **FAST).heatmap(phantom.image)
    again = Picard.load(run_dir, dropout_kind="element", batch_size=3, **FAST).heatmap(phantom.image)
    spatial = Picard.load(run_dir, **FAST).heatmap(phantom.image)
    np.testing.assert_allclose(again.array, element.array, rtol=1e-5, atol=1e-5)
    assert element.settings["dropout_kind"] == "element"
    assert np.abs(element.array - spatial.array).max() > 1e-3


def test_dropout_kind_is_validated_and_refused_on_cropped_layers():
    settings = PicardSettings(dropout_kind="element", dropout_layers=["coarse_generator.conv3"])
    assert from_dict(PicardSettings, yaml.safe_load(yaml.safe_dump(to_dict(settings)))) == settings
    with pytest.raises(ConfigError, match="dropout_kind must be one of spatial, element"):
        PicardSettings(dropout_kind="channel")
    with pytest.raises(ConfigError, match="is not one of 'spatial', 'element'"):
        from_dict(PicardSettings, {"dropout_kind": "channel"})
    # The paper preset drops out in the attention decoder, which the engine runs on crops around the hole.
    with pytest.raises(ConfigError, match=r"fine_generator\.pmconv10, fine_generator\.pmconv9 on crops"):
        PicardSettings(dropout_kind="element", dropout_layers="paper")
    with pytest.raises(ConfigError, match="coarse_generator.conv11"):
        PicardSettings(dropout_kind="element", dropout_layers=["coarse_generator.conv11"])
    assert PicardSettings(dropout_layers="paper").dropout_kind == "spatial"


def test_region_cropped_layers_are_those_the_inference_path_crops():
    """Element dropout is refused on REGION_CROPPED_LAYERS: they must be exactly the layers that
    complete_region runs on smaller maps than forward does, whatever the dropout (each stage's conv10_atrous is
    cropped too, unless element dropout drops it)."""
    generator = lively_generator()
    image, mask = torch.zeros(1, 1, 128, 128), torch.zeros(1, 1, 128, 128)
    mask[..., 48:80, 48:80] = 1.0
    calls: list[dict[str, tuple[int, ...]]] = []
    hooks = [block.register_forward_hook(lambda m, i, out: calls[-1].update({m.layer_name: out.shape}))
             for block in generator.modules() if isinstance(block, ConvBlock)]
    last_dilated = {"coarse_generator.conv10_atrous", "fine_generator.conv10_atrous"}
    element = ChannelDropout(0.5, last_dilated, torch.arange(1), kind="element")
    with torch.no_grad():
        for run in (lambda: generator(image, mask), lambda: generator.complete_region(image, mask, (48, 48, 80, 80)),
                    lambda: generator.complete_region(image, mask, (48, 48, 80, 80), element)):
            calls.append({})
            run()
    for hook in hooks:
        hook.remove()
    full, plain, with_element = calls
    # Cropped: run on a smaller map, or only as a valid convolution of a crop (the block itself never runs).
    assert {name for name in full if plain.get(name) != full[name]} == REGION_CROPPED_LAYERS | last_dilated
    # Element dropout of the last dilated layers keeps them whole (their masks are keyed by map position).
    assert {name for name in full if with_element.get(name) != full[name]} == REGION_CROPPED_LAYERS
