import numpy as np

from picard_ad.methods.reference.maps import brightness_map, local_contrast_map


def test_brightness_preserves_mean_and_smooths():
    image = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    smoothed = brightness_map(image, sigma=3)
    assert smoothed.shape == image.shape and smoothed.dtype == np.float32
    assert abs(smoothed.mean() - image.mean()) < 1e-3
    assert smoothed.std() < 0.3 * image.std()


def test_local_contrast_peaks_on_a_bright_blob_and_ignores_a_flat_offset():
    image = np.full((128, 128), 0.3, dtype=np.float32)
    image[60:68, 60:68] = 0.8
    contrast = local_contrast_map(image, fine_sigma=2, coarse_sigma=16)
    assert np.unravel_index(np.argmax(contrast), contrast.shape) in {(63, 63), (63, 64), (64, 63), (64, 64)}
    flat = local_contrast_map(np.full((64, 64), 0.7, dtype=np.float32))
    assert np.abs(flat).max() < 1e-5
