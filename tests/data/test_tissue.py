import numpy as np

from picard_ad.data.tissue import tissue_mask


def test_tissue_mask_fills_holes_and_drops_specks():
    image = np.zeros((100, 100), dtype=np.float32)
    image[10:90, 0:60] = 0.5
    image[40:50, 20:30] = 0.0  # a dark hole inside tissue is still tissue
    image[95, 95] = 0.9  # an isolated bright speck (a label pixel) is not
    mask = tissue_mask(image, threshold=0.02, min_fraction=0.001)
    assert mask[10:90, 0:60].all()
    assert mask.sum() == 80 * 60
    assert not mask[95, 95]
