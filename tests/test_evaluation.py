"""The evaluation job on a tiny generated set: whole-image vs tissue numbers, Dice calibration, errors."""

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from picard_ad.errors import AnnotationError, ConfigError, InputError
from picard_ad.evaluation import (
    ArrayImages,
    EvaluationConfig,
    evaluate,
    evaluate_images,
    find_heatmaps,
    write_evaluation,
)
from picard_ad.io.writers import write_dicom, write_png
from picard_ad.metrics.ranking import average_precision
from picard_ad.metrics.regions import aupro
from picard_ad.metrics.segmentation import calibrate_threshold, dice

SHAPE = (48, 64)
TISSUE_FROM = 24  # columns 0..23 are black background, 24..63 breast tissue
LESION = (slice(10, 20), slice(40, 50))  # rows, columns: a 10 x 10 box at x=40, y=10


def _tissue():
    tissue = np.zeros(SHAPE, dtype=bool)
    tissue[:, TISSUE_FROM:] = True
    return tissue


def _write_case(folder, heatmap_folder, name, seed, lesion, extra_peak=None):
    """Image (background 0, tissue 0.3..0.7) and a brightness-like heatmap: background 0, tissue 0.2..0.6,
    lesion 0.4..0.8 with its centre at 1.0. Returns (heatmap, lesion mask)."""
    rng = np.random.default_rng(seed)
    image = np.zeros(SHAPE)
    image[:, TISSUE_FROM:] = rng.uniform(0.3, 0.7, (SHAPE[0], SHAPE[1] - TISSUE_FROM))
    write_png(folder / f"{name}.png", image)
    heatmap = np.zeros(SHAPE, dtype=np.float32)
    heatmap[:, TISSUE_FROM:] = rng.uniform(0.2, 0.6, (SHAPE[0], SHAPE[1] - TISSUE_FROM))
    mask = np.zeros(SHAPE, dtype=bool)
    if lesion:
        mask[LESION] = True
        heatmap[LESION] = rng.uniform(0.4, 0.8, (10, 10))
        heatmap[15, 45] = 1.0
    if extra_peak is not None:
        heatmap[extra_peak[:2]] = extra_peak[2]
    heatmap_folder.mkdir(exist_ok=True)
    np.save(heatmap_folder / f"{name}_heatmap.npy", heatmap)
    sidecar = {"input": str(folder / f"{name}.png"), "slices": [{"slice_index": 0}]}
    (heatmap_folder / f"{name}.json").write_text(json.dumps(sidecar))
    return heatmap, mask


@pytest.fixture()
def dataset(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    cases = {
        "a": _write_case(images, tmp_path / "heatmaps", "a", 1, lesion=True),
        "b": _write_case(images, tmp_path / "heatmaps", "b", 2, lesion=True),
        "n1": _write_case(images, tmp_path / "heatmaps", "n1", 3, lesion=False, extra_peak=(30, 30, 0.95)),
        "n2": _write_case(images, tmp_path / "heatmaps", "n2", 4, lesion=False),
    }
    calibration = {name: _write_case(images, tmp_path / "calibration", name, 10 + i, lesion=True)
                   for i, name in enumerate(("c1", "c2"))}
    boxes = tmp_path / "boxes.csv"
    rows = [f"{name}.png,40,10,10,10" for name in ("a", "b", "c1", "c2")]
    boxes.write_text("image,x,y,width,height\n" + "\n".join(rows) + "\n")
    return tmp_path, cases, calibration


def _config(root, **changes):
    settings = {"heatmaps": str(root / "heatmaps"), "annotations": str(root / "boxes.csv"), "peak_radius": 1000.0}
    return EvaluationConfig(**{**settings, **changes})


def test_whole_image_and_tissue_numbers_match_direct_computation(dataset):
    root, cases, _ = dataset
    result = evaluate(_config(root))
    m = result.metrics
    tissue = _tissue()
    lesion_cases = [cases["a"], cases["b"]]
    whole_auroc = [roc_auc_score(mask.ravel(), h.ravel()) for h, mask in lesion_cases]
    tissue_auroc = [roc_auc_score(mask[tissue], h[tissue]) for h, mask in lesion_cases]
    tissue_ap = [average_precision_score(mask[tissue], h[tissue]) for h, mask in lesion_cases]
    assert (m["n_images"], m["n_abnormal"], m["n_normal"], m["n_scored"]) == (4, 2, 2, 2)
    assert m["pixel_auroc_mean"] == pytest.approx(np.mean(whole_auroc), abs=1e-12)
    assert m["tissue_pixel_auroc_mean"] == pytest.approx(np.mean(tissue_auroc), abs=1e-12)
    assert m["tissue_pixel_ap_mean"] == pytest.approx(np.mean(tissue_ap), abs=1e-12)
    # The black background, scored 0, ranks below every lesion pixel: each of its 1152 pixels is a won pair, so
    # whole-image AUROC = (1152 + 1820 x tissue AUROC) / 2972 (1820 normal tissue pixels), 0.88 -> 0.93 here.
    assert m["pixel_auroc_mean"] == pytest.approx((1152 + 1820 * m["tissue_pixel_auroc_mean"]) / 2972, abs=1e-12)
    assert m["tissue_pixel_auroc_mean"] < m["pixel_auroc_mean"] - 0.04
    heatmaps = [cases[name][0] for name in ("a", "b", "n1", "n2")]
    masks = [cases[name][1] for name in ("a", "b", "n1", "n2")]
    assert m["aupro"] == pytest.approx(aupro(heatmaps, masks), abs=1e-12)
    assert m["tissue_aupro"] == pytest.approx(aupro(heatmaps, masks, [tissue] * 4), abs=1e-12)
    assert m["tissue_aupro"] < m["aupro"]
    # Pooled over the four images, normal ones included: the pixels of all images ranked together.
    labels = np.concatenate([mask.ravel() for mask in masks])
    scores = np.concatenate([heatmap.ravel() for heatmap in heatmaps])
    in_tissue = np.concatenate([tissue.ravel()] * 4)
    assert m["pixel_auroc_pooled"] == roc_auc_score(labels, scores)
    assert m["pixel_ap_pooled"] == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    assert m["tissue_pixel_auroc_pooled"] == roc_auc_score(labels[in_tissue], scores[in_tissue])
    assert m["tissue_pixel_ap_pooled"] == average_precision(labels[in_tissue], scores[in_tissue])
    assert m["pooled_stride"] == 1
    # Image level: the 0.99 quantile of tissue reaches into the lesion only on abnormal images.
    assert (m["image_auroc"], m["image_ap"]) == (1.0, 1.0)
    # One peak per image (the radius covers the image): both lesions hit at value 1.0; n1's 0.95 peak and
    # n2's maximum are the false positives, 2 in 4 images at most.
    sensitivity = m["lesion_sensitivity"]
    assert sensitivity["n_lesions"] == 2 and sensitivity["sensitivity"] == [1.0, 1.0, 1.0, 1.0]
    assert result.froc["whole"].mean_fp_per_image.max() == 0.5
    assert any("no lesion pixel" in note for note in m["notes"])
    assert m["dice"] is None and m["best_dice_optimistic"]["mean"] > 0
    rows = {row["name"]: row for row in result.rows}
    assert rows["a"]["pixel_auroc"] == pytest.approx(whole_auroc[0], abs=1e-12)
    assert rows["a"]["tissue_pixels"] == tissue.sum() and rows["n1"]["abnormal"] == 0


def test_calibrated_dice_uses_the_calibration_split_and_overlap_is_refused(dataset):
    root, cases, calibration = dataset
    result = evaluate(_config(root, calibration=str(root / "calibration")))
    record = result.metrics["dice"]
    assert record["n_calibration_images"] == 2 and record["n_images"] == 2
    threshold = record["threshold"]
    expected = np.mean([dice(cases[name][0] >= threshold, cases[name][1]) for name in ("a", "b")])
    assert record["mean"] == pytest.approx(expected, abs=1e-12)
    # The threshold is exactly the one calibrate_threshold picks from the calibration images alone (100 quantile
    # candidates of their pooled pixels); the test images' own best threshold is another one.
    calibration_heatmaps = [h for h, _ in calibration.values()]
    direct = calibrate_threshold(calibration_heatmaps, [m for _, m in calibration.values()], ["c1", "c2"])
    assert threshold == direct.threshold == pytest.approx(0.5953, abs=1e-4)
    assert result.metrics["best_dice_optimistic"]["threshold"] == pytest.approx(0.5978, abs=1e-4)
    assert result.metrics["best_dice_optimistic"]["mean"] >= record["mean"] - 1e-12

    def box_mask(x, y, width, height):
        mask = np.zeros(SHAPE, dtype=bool)
        mask[y : y + height, x : x + width] = True
        return mask

    def evaluate_with_boxes(test_box, calibration_box=(40, 10, 10, 10)):
        rows = [f"{name}.png,{','.join(map(str, test_box))}" for name in ("a", "b")]
        rows += [f"{name}.png,{','.join(map(str, calibration_box))}" for name in ("c1", "c2")]
        (root / "boxes.csv").write_text("image,x,y,width,height\n" + "\n".join(rows) + "\n")
        return evaluate(_config(root, calibration=str(root / "calibration"))).metrics

    # Only the test masks change (a 4x4 core of the lesion, then an 18x18 box around it): a threshold tuned on
    # them would rise to 0.69, then fall to 0.40 (the optimistic best Dice shows it); the calibrated threshold,
    # whole-image and in tissue, must not move, while the test Dice follows the new masks.
    for test_box, tuned_on_test in (((43, 13, 4, 4), 0.6925), ((36, 6, 18, 18), 0.4004)):
        metrics = evaluate_with_boxes(test_box)
        assert metrics["best_dice_optimistic"]["threshold"] == pytest.approx(tuned_on_test, abs=1e-4)
        assert metrics["dice"]["threshold"] == threshold
        assert metrics["tissue_dice"]["threshold"] == result.metrics["tissue_dice"]["threshold"]
        expected = np.mean([dice(cases[name][0] >= threshold, box_mask(*test_box)) for name in ("a", "b")])
        assert metrics["dice"]["mean"] == pytest.approx(expected, abs=1e-12)
        assert abs(metrics["dice"]["mean"] - record["mean"]) > 0.2  # 0.626 -> 0.233, 0.281
    # Changing the calibration masks instead (to the 4x4 core) does move it, to calibrate_threshold's new choice.
    metrics = evaluate_with_boxes((40, 10, 10, 10), calibration_box=(43, 13, 4, 4))
    moved = calibrate_threshold(calibration_heatmaps, [box_mask(43, 13, 4, 4)] * 2, ["c1", "c2"]).threshold
    assert metrics["dice"]["threshold"] == moved == pytest.approx(0.6640, abs=1e-4)

    with pytest.raises(ConfigError, match="calibration split holds 4 test image"):
        evaluate(_config(root, calibration=str(root / "heatmaps")))


def _in_memory(cases, names, rows=None):
    """The cases as arrays; given ``evaluate``'s rows of the same files, with their identities and row fields."""
    return ArrayImages(
        names=names,
        heatmaps=[cases[name][0] for name in names],
        lesion_masks=[cases[name][1] for name in names],
        tissue_masks=[_tissue()] * len(names),
        identities=None if rows is None else [rows[name]["identity"] for name in names],
        fields=None if rows is None else [
            {key: rows[name][key] for key in ("source", "slice_index", "heatmap")} for name in names
        ],
    )


def test_the_core_gives_the_same_numbers_from_arrays_in_memory(dataset):
    root, cases, calibration = dataset
    config = _config(root, calibration=str(root / "calibration"))
    files = evaluate(config)
    rows = {row["name"]: row for row in files.rows}
    memory = evaluate_images(_in_memory(cases, ["a", "b", "n1", "n2"], rows), config,
                             calibration=_in_memory(calibration, ["c1", "c2"]))
    matching = {"n_unannotated_heatmaps", "unannotated_heatmaps", "n_annotations_without_heatmap",
                "annotations_without_heatmap"}
    matching_notes = [note for note in files.metrics["notes"] if "without" in note and "annotat" in note]
    assert len(matching_notes) == 2
    expected = {key: value for key, value in files.metrics.items() if key not in matching}
    expected["notes"] = [note for note in files.metrics["notes"] if note not in matching_notes]
    assert memory.metrics == expected
    assert json.dumps(memory.rows) == json.dumps(files.rows)  # as text, so NaN equals NaN
    for variant in ("whole", "tissue"):
        np.testing.assert_array_equal(memory.froc[variant].sensitivity, files.froc[variant].sensitivity)
    assert memory.metrics["dice"]["mean"] > 0 and files.pooled_tissue is None


def test_outputs_are_written(dataset, tmp_path):
    root, _, _ = dataset
    result = evaluate(_config(root, tissue_threshold=0.1))
    paths = write_evaluation(result, tmp_path / "out")
    assert {p.name for p in paths} == {"metrics.json", "per_image.csv", "metrics.md", "froc.csv", "config.yaml"}
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["pixel_auroc_mean"] == result.metrics["pixel_auroc_mean"]
    table = (tmp_path / "out" / "per_image.csv").read_text().splitlines()
    assert table[0].startswith("name,source,slice_index") and len(table) == 5
    markdown = (tmp_path / "out" / "metrics.md").read_text()
    assert "| Pixel AUROC, mean over images |" in markdown
    whole, tissue = (f"{result.metrics[key]:.3f}" for key in ("pixel_auroc_pooled", "tissue_pixel_auroc_pooled"))
    assert f"| Pixel AUROC, pooled over images | {whole} | {tissue} |" in markdown
    assert "| Pixel AP, pooled over images |" in markdown
    assert "tissue_threshold: 0.1" in (tmp_path / "out" / "config.yaml").read_text()


def test_errors_name_the_file(dataset):
    root, _, _ = dataset
    (root / "heatmaps" / "b.json").unlink()
    with pytest.raises(InputError, match="b_heatmap.npy: no sidecar b.json"):
        find_heatmaps(root / "heatmaps")
    (root / "heatmaps" / "b_heatmap.npy").unlink()
    np.save(root / "heatmaps" / "a_heatmap.npy", np.zeros((10, 10), dtype=np.float32))
    with pytest.raises(InputError, match="a_heatmap.npy: heatmap is 10 x 10 but its source image .* is 48 x 64"):
        evaluate(_config(root))
    (root / "other.csv").write_text("image,x,y,width,height\nzzz.png,1,1,2,2\n")
    with pytest.raises(AnnotationError, match="other.csv: none of the 1 annotated images is the source of a heatmap"):
        evaluate(_config(root, annotations=str(root / "other.csv")))
    empty = root / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no heatmaps"):
        evaluate(_config(root, heatmaps=str(empty)))
    with pytest.raises(ConfigError, match="not both"):
        evaluate(_config(root, tissue_threshold=0.1, tissue_masks=str(empty)))


def test_heatmaps_without_annotation_and_annotations_without_heatmap_are_reported(dataset):
    root, _, _ = dataset
    m = evaluate(_config(root)).metrics  # boxes.csv also annotates c1 and c2, whose heatmaps are elsewhere
    assert (m["n_unannotated_heatmaps"], m["unannotated_heatmaps"]) == (2, ["n1", "n2"])
    assert (m["n_annotations_without_heatmap"], m["annotations_without_heatmap"]) == (2, ["c1", "c2"])
    assert "heatmaps without annotation, evaluated as normal images: 2 (n1, n2)" in m["notes"]
    assert "annotated images without heatmap, not evaluated: 2 (c1, c2)" in m["notes"]


@pytest.mark.parametrize(("written", "source", "annotation"), [("B.png", "b.png", "B"), ("n01.png", "n1.png", "n01")])
def test_a_source_named_like_an_unmatched_annotation_is_refused(dataset, written, source, annotation):
    root, _, _ = dataset
    (root / "near.csv").write_text(f"image,x,y,width,height\na.png,40,10,10,10\n{written},40,10,10,10\n")
    with pytest.raises(AnnotationError) as info:
        evaluate(_config(root, annotations=str(root / "near.csv")))
    message = str(info.value)
    assert message.startswith(f"{root / 'near.csv'}: no annotation names heatmap source")
    assert str(root / "images" / source) in message and f"did you mean '{annotation}'?" in message


def _write_nested_cases(root):
    for folder, lesion in (("p1", True), ("p2", False)):
        (root / "images" / folder).mkdir(parents=True)
        (root / "heatmaps" / folder).mkdir(parents=True)
        _write_case(root / "images" / folder, root / "heatmaps" / folder, "img", 7, lesion=lesion)


def test_annotations_name_images_by_relative_path(tmp_path):
    _write_nested_cases(tmp_path)
    (tmp_path / "boxes.csv").write_text("image,x,y,width,height\np1/img.png,40,10,10,10\n")
    result = evaluate(_config(tmp_path))
    assert {row["name"]: row["abnormal"] for row in result.rows} == {"p1/img": 1, "p2/img": 0}
    assert result.metrics["unannotated_heatmaps"] == ["p2/img"]
    (tmp_path / "boxes.csv").write_text("image,x,y,width,height\nimg.png,40,10,10,10\n")
    with pytest.raises(AnnotationError, match="'img' would name 2 images .*p1/img.png.*p2/img.png"):
        evaluate(_config(tmp_path))


def test_bcs_dbt_boxes_count_on_the_slices_near_their_central_slice(tmp_path):
    rng = np.random.default_rng(3)
    volume = np.zeros((8, *SHAPE))
    volume[:, :, TISSUE_FROM:] = rng.uniform(0.3, 0.7, (8, SHAPE[0], SHAPE[1] - TISSUE_FROM))
    write_dicom(tmp_path / "dbt" / "vol.dcm", volume)
    (tmp_path / "heatmaps").mkdir()
    for index in (1, 3, 4, 6):
        np.save(tmp_path / "heatmaps" / f"vol_s{index}_heatmap.npy", volume[index].astype(np.float32))
        sidecar = {"input": str(tmp_path / "dbt" / "vol.dcm"), "slices": [{"slice_index": index}]}
        (tmp_path / "heatmaps" / f"vol_s{index}.json").write_text(json.dumps(sidecar))
    (tmp_path / "boxes.csv").write_text("PatientID,StudyUID,View,X,Y,Width,Height,Slice,VolumeSlices\n"
                                        "P1,S1,lcc,40,10,10,10,1,8\n")
    (tmp_path / "paths.csv").write_text("PatientID,StudyUID,View,descriptive_path\nP1,S1,lcc,dbt/vol.dcm\n")
    spec = f"bcs-dbt:{tmp_path / 'boxes.csv'},{tmp_path / 'paths.csv'},{tmp_path}"
    result = evaluate(_config(tmp_path, annotations=spec))
    # 8 slices: the box on slice 1 applies to slices 0..3 (|i - 1| <= 8 / 4).
    rows = {row["slice_index"]: (row["abnormal"], row["n_lesions"]) for row in result.rows}
    assert rows == {1: (1, 1), 3: (1, 1), 4: (0, 0), 6: (0, 0)}
    assert result.metrics["lesion_sensitivity"]["n_lesions"] == 2
    assert result.metrics["unannotated_heatmaps"] == [] and result.metrics["annotations_without_heatmap"] == []


def test_nifti_volume_heatmap_with_a_mask_folder(tmp_path):
    nibabel = pytest.importorskip("nibabel")
    rng = np.random.default_rng(5)
    volume = np.zeros((32, 40, 3), dtype=np.float32)
    volume[:, 10:, :] = rng.uniform(100, 200, (32, 30, 3))
    nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), tmp_path / "vol.nii.gz")
    lesion = np.zeros((32, 40, 3), dtype=np.uint8)
    lesion[5:9, 20:24, 2] = 1
    lesion[20:23, 30:35, 2] = 1  # a second region on the same slice
    (tmp_path / "masks").mkdir()
    nibabel.save(nibabel.Nifti1Image(lesion, np.eye(4)), tmp_path / "masks" / "vol.nii.gz")
    heatmap = np.full(volume.shape, np.nan, dtype=np.float32)  # slice 1 not computed
    for index in (0, 2):
        heatmap[:, :, index] = rng.uniform(0, 1, (32, 40)) + lesion[:, :, index]
    (tmp_path / "heatmaps").mkdir()
    nibabel.save(nibabel.Nifti1Image(heatmap, np.eye(4)), tmp_path / "heatmaps" / "vol_heatmap.nii.gz")
    sidecar = {"input": "../vol.nii.gz", "slices": [{"slice_index": 0}, {"slice_index": 2}]}
    (tmp_path / "heatmaps" / "vol.json").write_text(json.dumps(sidecar))

    result = evaluate(EvaluationConfig(heatmaps=str(tmp_path / "heatmaps"), annotations=str(tmp_path / "masks"),
                                       peak_radius=3.0, hit_min_distance=2.0))
    rows = {row["name"]: row for row in result.rows}
    assert set(rows) == {"vol_s0000", "vol_s0002"}
    assert (rows["vol_s0000"]["abnormal"], rows["vol_s0002"]["abnormal"]) == (0, 1)
    assert rows["vol_s0002"]["n_lesions"] == 2 and rows["vol_s0002"]["lesion_pixels"] == 31
    expected = roc_auc_score(lesion[:, :, 2].ravel(), heatmap[:, :, 2].ravel())
    assert rows["vol_s0002"]["pixel_auroc"] == pytest.approx(expected, abs=1e-12)
    assert result.metrics["lesion_sensitivity"]["n_lesions"] == 2


SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.mark.realdata
def test_brightness_map_on_real_mammograms_is_inflated_by_background(tmp_path):
    """On CDD-CESM mammograms the image itself used as a heatmap looks good over the whole image, less in tissue."""
    data = SHARED_DATA / "cdd-cesm"
    if not data.is_dir():
        pytest.skip(f"{data} not present")
    from picard_ad.io import find_images, read_image

    for path in find_images(data / "images")[:5]:
        np.save(tmp_path / f"{path.stem}_heatmap.npy", read_image(path).pixels)
        (tmp_path / f"{path.stem}.json").write_text(json.dumps({"input": str(path)}))
    result = evaluate(EvaluationConfig(heatmaps=str(tmp_path), annotations=str(data / "masks"), peak_radius=20.0))
    m = result.metrics
    assert m["n_images"] == m["n_abnormal"] == 5
    assert m["pixel_auroc_mean"] > 0.9
    assert m["tissue_pixel_auroc_mean"] < m["pixel_auroc_mean"] - 0.05
    assert m["tissue_aupro"] < m["aupro"]
