"""What the VAE's networks see: the resized input, the z-score inside the tissue, augmentation, the slice bank."""

from __future__ import annotations

import numpy as np
import pytest

from picard_ad.data.patches import list_training_images
from picard_ad.io.writers import write_png
from picard_ad.localize import resized_heatmap
from picard_ad.methods.vae import Augmentation, Preprocessing, SliceBank, augmented, fit_to_input, normalise
from picard_ad.methods.vae.data import MIN_STD


def test_the_training_input_is_what_resized_heatmap_hands_the_scorer():
    image = np.random.default_rng(0).random((90, 60), dtype=np.float32)
    seen = {}

    def scorer(model_input):
        seen["input"] = model_input
        return {"s": np.zeros_like(model_input)}

    resized_heatmap(image, scorer, input_size=32)
    assert np.array_equal(fit_to_input(image, 32), seen["input"])
    assert np.array_equal(fit_to_input(image[:32, :32], 32), image[:32, :32])


def test_normalise_z_scores_inside_the_tissue_and_clips():
    image = np.zeros((32, 32), np.float32)
    image[8:24, 8:24] = np.linspace(0.3, 0.7, 256, dtype=np.float32).reshape(16, 16)
    tissue = image[8:24, 8:24]
    z = normalise(image, Preprocessing(32, clip=1.5))
    np.testing.assert_allclose(z[8:24, 8:24], np.clip((tissue - tissue.mean()) / tissue.std(), -1.5, 1.5), rtol=1e-5)
    assert z[0, 0] == -1.5 and z.max() == pytest.approx(1.5)
    flat = normalise(np.full((32, 32), 0.5, np.float32), Preprocessing(32, clip=3.0))
    assert np.all(flat == 0.0)  # a flat image divides by the floor MIN_STD, not by 0
    assert MIN_STD > 0


def test_augmentation_follows_its_generator_and_stays_in_the_clip_range():
    image = fit_to_input(np.random.default_rng(1).random((40, 40), dtype=np.float32) * 0.8 + 0.1, 32)
    augmentation = Augmentation(mirror=True, rotation=10.0, brightness=(0.9, 1.1), noise_std=0.2)
    preprocessing = Preprocessing(32, clip=1.5)
    first = augmented(image, np.random.default_rng(3), augmentation, preprocessing)
    again = augmented(image, np.random.default_rng(3), augmentation, preprocessing)
    assert np.array_equal(first, again) and first.shape == (32, 32) and first.dtype == np.float32
    assert np.abs(first).max() <= 1.5
    plain = augmented(image, np.random.default_rng(3), Augmentation(False, 0.0, (1.0, 1.0), 0.0), preprocessing)
    np.testing.assert_allclose(plain, normalise(image, preprocessing), atol=1e-6)


def test_the_slice_bank_draws_epochs_in_a_seeded_order_and_resumes(tmp_path):
    for index in range(3):
        image = np.zeros((48, 40), np.float32)
        image[4:44, 4:36] = 0.2 + 0.2 * index
        write_png(tmp_path / f"image_{index}.png", image, bit_depth=16)
    write_png(tmp_path / "empty.png", np.zeros((48, 40), np.float32), bit_depth=16)
    entries = list_training_images(tmp_path)
    bank = SliceBank(entries, 16, min_tissue_fraction=0.1, tissue_threshold=0.02, seed=1)
    assert len(bank) == 3 and bank.excluded_images == [tmp_path / "empty.png"]
    epoch = bank.draw(3)
    assert sorted(np.round(epoch[:, 8, 8], 2).tolist()) == pytest.approx([0.2, 0.4, 0.6], abs=0.01)
    state = bank.state_dict()
    following = bank.draw(4)
    resumed = SliceBank(entries, 16, min_tissue_fraction=0.1, tissue_threshold=0.02, seed=1)
    resumed.load_state_dict(state)
    assert np.array_equal(resumed.draw(4), following)
    assert bank.spread(10).shape == (3, 16, 16)
