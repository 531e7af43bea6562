"""The VAE family's per-patient z-score (``zscore: volume``): the statistics of a whole volume's tissue against numpy,
the network input of a volume slice scored with its origin, the slice bank's statistics, the origins of training
samples written to files, and the callers (MOOD volumes, benchmark samples) passing each slice's origin."""

from __future__ import annotations

import nibabel
import numpy as np
import pytest
from vae_networks import SIZE, captured_inputs, untrained_vae

from picard_ad.benchmark.cache import ScoreTask
from picard_ad.data.normal_images import NormalImages
from picard_ad.data.patches import list_training_images
from picard_ad.data.samples import Sample, VolumeSlice
from picard_ad.data.tissue import tissue_mask
from picard_ad.io import SliceOrigin, iter_slices
from picard_ad.io.writers import write_png
from picard_ad.jobs.mood import score_volume
from picard_ad.methods import create_method
from picard_ad.methods.vae import Preprocessing, SliceBank, normalise
from picard_ad.methods.vae.data import RAW_CHAIN, volume_statistics, written_statistics

BRIGHT_SLICE = 2


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    """A (32, 32, 6) NIfTI whose slices differ in tissue brightness, with a bright block in slice 2."""
    rng = np.random.default_rng(0)
    data = np.zeros((SIZE, SIZE, 6), np.float32)
    for k in range(6):
        data[4:28, 4:28, k] = 100 + 20 * k + rng.normal(0, 5, (24, 24))
    data[10:20, 10:20, BRIGHT_SLICE] = 400
    path = tmp_path_factory.mktemp("volume") / "case.nii.gz"
    nibabel.save(nibabel.Nifti1Image(data, np.eye(4)), path)
    return path


def _pooled_tissue(path) -> tuple[float, float]:
    """(mean, std) by numpy of the tissue pixels of every slice of a volume already at the model size."""
    values = np.concatenate([scan.pixels[tissue_mask(scan.pixels, 0.02)] for scan in iter_slices(path)])
    return float(values.mean()), float(values.std())


def test_volume_statistics_pool_the_tissue_of_every_slice(volume):
    expected = _pooled_tissue(volume)
    statistics = volume_statistics(SliceOrigin(volume, 4), RAW_CHAIN, Preprocessing(SIZE, zscore="volume"))
    assert statistics == pytest.approx(expected, rel=1e-6)
    slice_alone = next(iter_slices(volume, [BRIGHT_SLICE])).pixels
    assert slice_alone[tissue_mask(slice_alone)].mean() > expected[0] + 0.05  # the bright block lifts its own mean


def test_a_volume_slice_is_z_scored_by_its_volume_and_a_lone_image_by_itself(volume, tmp_path):
    pixels = next(iter_slices(volume, [BRIGHT_SLICE])).pixels
    mean, std = _pooled_tissue(volume)
    by_volume = np.clip((pixels - mean) / std, -1.5, 1.5)
    by_slice = normalise(pixels, Preprocessing(SIZE))
    assert np.abs(by_volume - by_slice).max() > 0.2

    method = untrained_vae("volume")
    seen = captured_inputs(method)
    origin = SliceOrigin(volume, BRIGHT_SLICE)
    heatmap = method.heatmap(pixels, "rec", origin=origin)
    method.image_score(pixels, origin=origin)
    method.heatmap(pixels, "rec")
    write_png(tmp_path / "slice.png", pixels, bit_depth=16)
    alone = next(iter_slices(tmp_path / "slice.png")).pixels
    method.heatmap(alone, "rec", origin=SliceOrigin(tmp_path / "slice.png"))  # a 2-D image is its own volume
    assert [x.shape for x in seen] == [(1, 1, SIZE, SIZE)] * 4
    np.testing.assert_allclose(seen[0][0, 0].numpy(), by_volume, atol=1e-5)
    np.testing.assert_allclose(seen[1][0, 0].numpy(), by_volume, atol=1e-5)
    np.testing.assert_allclose(seen[2][0, 0].numpy(), by_slice, atol=1e-6)
    assert np.array_equal(seen[3][0, 0].numpy(), normalise(alone, Preprocessing(SIZE)))
    assert heatmap.settings["zscore_statistics"] == pytest.approx((mean, std), rel=1e-6)

    per_slice = untrained_vae("slice")
    seen = captured_inputs(per_slice)
    per_slice.heatmap(pixels, "rec", origin=origin)  # the origin changes nothing for a per-slice run
    np.testing.assert_allclose(seen[0][0, 0].numpy(), by_slice, atol=1e-6)


def test_the_slice_bank_keeps_each_slice_s_volume_statistics(volume, tmp_path):
    options = dict(min_tissue_fraction=0.1, tissue_threshold=0.02, seed=0)
    bank = SliceBank(list_training_images(volume), SIZE, zscore="volume", **options)
    assert len(bank) == 6
    assert bank.statistics == pytest.approx(np.tile(_pooled_tissue(volume), (6, 1)), rel=1e-6)
    batch = bank.draw_batch(4)
    expected = [normalise(image, Preprocessing(SIZE), statistics=s) for image, s in zip(batch.images, batch.statistics)]
    np.testing.assert_allclose(batch.network_inputs(Preprocessing(SIZE)), np.stack(expected))
    assert SliceBank(list_training_images(volume), SIZE, **options).statistics is None

    image = np.zeros((SIZE, SIZE), np.float32)
    image[4:28, 4:28] = 0.5
    for name in ("a.png", "b.png"):
        write_png(tmp_path / name, image, bit_depth=16)
    given = {(tmp_path / "a.png").resolve(): (0.25, 0.125)}  # the volume a.png was written from
    bank = SliceBank(list_training_images(tmp_path), SIZE, zscore="volume", statistics=given, **options)
    assert bank.spread_batch(2).statistics == [(0.25, 0.125), None]  # b.png, a 2-D image, is its own slice
    assert volume_statistics(SliceOrigin(tmp_path / "b.png"), RAW_CHAIN, Preprocessing(SIZE, zscore="volume")) is None


def test_written_training_samples_keep_the_volume_they_came_from(volume, tmp_path):
    samples = [Sample(name=f"case/slice{k}", patient_id="case", label="normal", image=VolumeSlice(volume, k, 2, "auto"),
                      path=volume, slice_index=k) for k in (1, 3)]  # fmt: skip
    samples.append(Sample(name="generated", patient_id="generated", label="normal", image=np.full((8, 8), 0.5)))
    images = NormalImages.of(samples)
    files = [entry.path for entry in images.files(tmp_path)]
    origins = images.written_origins(tmp_path)
    assert origins == {files[0]: SliceOrigin(volume, 1, 2, "auto"), files[1]: SliceOrigin(volume, 3, 2, "auto")}
    statistics = written_statistics(images, tmp_path, RAW_CHAIN, Preprocessing(SIZE, zscore="volume"))
    assert statistics == {path.resolve(): pytest.approx(_pooled_tissue(volume), rel=1e-6) for path in files[:2]}
    assert written_statistics(images, tmp_path, RAW_CHAIN, Preprocessing(SIZE)) is None


def test_a_fit_on_volume_slices_scores_with_the_volume_statistics(volume, tmp_path):
    samples = [Sample(name=f"slice{k}", patient_id="case", label="normal", image=VolumeSlice(volume, k, 2, "auto"),
                      path=volume, slice_index=k) for k in (0, 1, 3, 4, 5)]  # fmt: skip
    method = create_method("vae", preset="tiny", train={"zscore": "volume", "input_size": SIZE},
                           settings={"device": "cpu"})  # fmt: skip
    method.fit(samples, run_dir=tmp_path / "run")
    assert method.train_config.zscore == "volume"
    pixels = next(iter_slices(volume, [BRIGHT_SLICE])).pixels
    heatmap = method.heatmap(pixels, origin=SliceOrigin(volume, BRIGHT_SLICE))
    assert heatmap.settings["zscore_statistics"] == pytest.approx(_pooled_tissue(volume), rel=1e-6)
    assert np.isfinite(heatmap.array).all()


def test_mood_volumes_and_benchmark_samples_hand_each_slice_its_origin(volume):
    seen = []

    def score_map(image, origin):
        seen.append(origin)
        return np.zeros_like(image)

    score_volume(volume, score_map, axis=2)
    assert seen == [SliceOrigin(volume, k, 2) for k in range(6)]

    sample = Sample(name="s", patient_id="case", label="normal", image=VolumeSlice(volume, 1, 2, "auto"), path=volume,
                    slice_index=1, axis=2, normalization="auto")  # fmt: skip
    received = []
    ScoreTask(lambda image, names, origin: received.append(origin) or {"m": image}).run((sample, ("m",)))
    assert received == [SliceOrigin(volume, 1, 2, "auto")] and sample.origin == received[0]
    assert Sample(name="g", patient_id="g", label="normal", image=np.zeros((4, 4))).origin is None
