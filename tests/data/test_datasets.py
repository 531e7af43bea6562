"""Dataset adapters, samples, patient-level splits and the synthetic validation set, on tiny generated files."""

from __future__ import annotations

import dataclasses
import pickle
import subprocess
import sys
from pathlib import Path

import nibabel
import numpy as np
import pytest

from picard_ad.data.datasets import (
    bcs_dbt_dataset,
    folder_dataset,
    nifti_label_dataset,
    phantom_dataset,
)
from picard_ad.data.phantoms import PhantomConfig, write_phantom_dataset
from picard_ad.data.samples import Sample, split_by_patient, synthetic_validation_set
from picard_ad.data.synthetic import ANOMALY_KINDS, make_synthetic_set
from picard_ad.errors import AnnotationError, InputError
from picard_ad.io import read_image
from picard_ad.io.annotations import Box, Circle, write_boxes_csv
from picard_ad.io.writers import (
    atomic_write_text,
    write_dicom,
    write_mask_png,
    write_png,
)

TINY = PhantomConfig(size=(128, 128), pixel_spacing_mm=1.0)
SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def _image(seed: int, shape=(32, 24)) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.2, 0.8, shape).astype(np.float32)


# --- Sample ---------------------------------------------------------------------------------------------------------


def test_a_sample_holds_a_lesion_mask_exactly_when_abnormal():
    image = _image(0)
    with pytest.raises(ValueError, match="normal sample has no lesion mask"):
        Sample("a", "p", "normal", image, lesion_mask=np.zeros(image.shape, bool))
    with pytest.raises(ValueError, match="abnormal one needs one"):
        Sample("a", "p", "abnormal", image)
    with pytest.raises(ValueError, match="label must be"):
        Sample("a", "p", "lesion", image, lesion_mask=np.zeros(image.shape, bool))


def test_load_derives_missing_masks_and_checks_shapes():
    image = np.zeros((20, 20), np.float32)
    image[5:15, 2:12] = 0.5
    loaded = Sample("a", "p", "normal", image).load()
    assert loaded.image.dtype == np.float32 and not loaded.lesion_mask.any()
    assert loaded.tissue_mask.sum() == 100 and loaded.tissue_mask[5:15, 2:12].all()
    wrong = Sample("a", "p", "abnormal", image, lesion_mask=lambda: np.zeros((20, 21), bool), path=Path("x.png"))
    with pytest.raises(InputError, match=r"x.png: sample 'a': lesion mask is \(20, 21\) but the image is \(20, 20\)"):
        wrong.load()


def test_left_aligned_flips_image_and_masks_together():
    rows, cols = np.ogrid[:40, :30]
    image = np.where((rows - 20) ** 2 + (cols - 29) ** 2 < 15**2, 0.6, 0.0).astype(np.float32)  # breast on the right
    lesion = np.zeros((40, 30), bool)
    lesion[18:22, 25:28] = True
    sample = Sample("a", "p", "abnormal", image, lesion_mask=lesion)
    aligned = sample.left_aligned()
    loaded = aligned.load()
    assert aligned.orientation.flip_horizontal and np.array_equal(loaded.image, image[:, ::-1])
    assert np.array_equal(aligned.orientation.undo(loaded.lesion_mask), lesion)
    assert np.array_equal(loaded.lesion_mask, lesion[:, ::-1])
    again = aligned.left_aligned()  # already on the left: no further flip
    assert again.orientation.flip_horizontal and np.array_equal(again.load().image, loaded.image)


# --- phantoms -------------------------------------------------------------------------------------------------------


def test_phantom_dataset_matches_the_written_phantoms(tmp_path):
    samples = phantom_dataset(2, 2, TINY, seed=3)
    assert [s.name for s in samples] == ["normal_0000", "normal_0001", "abnormal_0000", "abnormal_0001"]
    assert [s.label for s in samples] == ["normal", "normal", "abnormal", "abnormal"]
    assert len({s.patient_id for s in samples}) == 4
    rows = write_phantom_dataset(tmp_path, 2, 2, TINY, seed=3)
    for sample, row in zip(samples, rows, strict=True):
        loaded = sample.load()
        assert sample.info["seed"] == row["seed"] and sample.info["n_lesions"] == row["n_lesions"]
        assert np.abs(loaded.image - read_image(row["image"]).pixels).max() <= 0.5 / 65535 + 1e-7
        assert np.array_equal(loaded.lesion_mask, read_image(row["mask"]).pixels > 0.5)
        assert loaded.lesion_mask.any() == (sample.label == "abnormal")
        assert not (loaded.lesion_mask & ~loaded.tissue_mask).any()
    assert pickle.loads(pickle.dumps(samples[2])).load().lesion_mask.sum() == samples[2].load().lesion_mask.sum()


# --- folders of images ----------------------------------------------------------------------------------------------


@pytest.fixture()
def image_folder(tmp_path):
    """Five 32 x 24 PNGs of three patients; p1_a and p2_a carry lesions."""
    names = ["p1_a", "p1_b", "p2_a", "p2_b", "p3_a"]
    for seed, name in enumerate(names):
        write_png(tmp_path / "images" / f"{name}.png", _image(seed))
    return tmp_path, names


def test_folder_dataset_with_a_boxes_csv(image_folder):
    root, names = image_folder
    boxes = {"p1_a.png": [Box(2, 3, 5, 4), Box(10, 20, 3, 3)], "p2_a.png": [Box(0, 0, 24, 2)]}
    write_boxes_csv(root / "boxes.csv", boxes)
    samples = folder_dataset(root / "images", root / "boxes.csv", patient_pattern=r"^(p\d)_")
    assert [s.name for s in samples] == names
    assert [s.label for s in samples] == ["abnormal", "normal", "abnormal", "normal", "normal"]
    assert [s.patient_id for s in samples] == ["p1", "p1", "p2", "p2", "p3"]
    for sample in samples:
        loaded = sample.load()
        assert sample.slice_index == 0 and loaded.image.shape == (32, 24)
        assert np.abs(loaded.image - _image(names.index(sample.name))).max() < 1e-4
        expected = np.zeros((32, 24), bool)
        for box in boxes.get(f"{sample.name}.png", []):
            expected |= box.to_mask((32, 24))
        assert np.array_equal(loaded.lesion_mask, expected)
    assert [s.patient_id for s in folder_dataset(root / "images")] == names
    with pytest.raises(InputError, match="p3_a.png: file name does not match patient_pattern"):
        folder_dataset(root / "images", patient_pattern=r"^(p[12])_")


def test_folder_dataset_with_a_mask_folder_treats_empty_masks_as_normal(image_folder):
    root, names = image_folder
    masks = {name: np.zeros((32, 24), bool) for name in names[:4]}  # p3_a has no mask file at all
    masks["p1_b"][4:9, 6:10] = True
    for name, mask in masks.items():
        write_mask_png(root / "masks" / f"{name}.png", mask)
    samples = folder_dataset(root / "images", root / "masks")
    assert [s.label for s in samples] == ["normal", "abnormal", "normal", "normal", "normal"]
    assert np.array_equal(samples[1].load().lesion_mask, masks["p1_b"])
    write_mask_png(root / "masks" / "p2_a.png", np.zeros((8, 8), bool))
    with pytest.raises(AnnotationError, match="mask is 8 x 8 but image"):
        folder_dataset(root / "images", root / "masks")


def test_folder_dataset_with_a_circles_csv(image_folder):
    root, _ = image_folder
    atomic_write_text(root / "circles.csv", "image,x,y,radius\np2_b.png,10,12,3\n")
    samples = folder_dataset(root / "images", root / "circles.csv")
    assert [s.name for s in samples if s.label == "abnormal"] == ["p2_b"]
    mask = samples[3].load().lesion_mask
    assert np.array_equal(mask, Circle(10, 12, 3).to_mask((32, 24))) and mask.sum() == 29


def test_folder_dataset_matches_annotations_by_relative_path(tmp_path):
    for index, folder in enumerate(("p1", "p2")):
        write_png(tmp_path / "images" / folder / "img.png", _image(index))
    write_boxes_csv(tmp_path / "boxes.csv", {"p1/img.png": [Box(2, 3, 5, 4)]})
    samples = folder_dataset(tmp_path / "images", tmp_path / "boxes.csv")
    assert [(s.name, s.label) for s in samples] == [("p1/img", "abnormal"), ("p2/img", "normal")]
    assert np.array_equal(samples[0].load().lesion_mask, Box(2, 3, 5, 4).to_mask((32, 24)))
    write_mask_png(tmp_path / "masks" / "p2" / "img.png", Box(0, 0, 3, 3).to_mask((32, 24)))
    samples = folder_dataset(tmp_path / "images", tmp_path / "masks")
    assert [(s.name, s.label) for s in samples] == [("p1/img", "normal"), ("p2/img", "abnormal")]
    write_boxes_csv(tmp_path / "bare.csv", {"img.png": [Box(2, 3, 5, 4)]})
    with pytest.raises(AnnotationError, match="bare.csv: 'img' would name 2 images .* relative to the annotated root"):
        folder_dataset(tmp_path / "images", tmp_path / "bare.csv")


def test_folder_dataset_does_not_import_the_evaluation_package(image_folder):
    root, _ = image_folder
    write_boxes_csv(root / "boxes.csv", {"p1_a.png": [Box(2, 3, 5, 4)]})
    script = (
        "import sys\nfrom picard_ad.data.datasets import folder_dataset\n"
        f"folder_dataset({str(root / 'images')!r}, {str(root / 'boxes.csv')!r})\n"
        "print(sorted(name for name in sys.modules if name.startswith('picard_ad.evaluation')))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_folder_dataset_reads_the_central_slice_of_a_volume(tmp_path):
    volume = np.stack([_image(seed) for seed in range(5)])
    write_dicom(tmp_path / "vol.dcm", volume)
    (sample,) = folder_dataset(tmp_path)
    assert sample.slice_index == 2 and sample.label == "normal"
    assert np.abs(sample.load_image() - volume[2]).max() < 1 / 4095


# --- BCS-DBT --------------------------------------------------------------------------------------------------------


def test_bcs_dbt_dataset_gives_annotated_and_normal_slices(tmp_path):
    volumes = {name: np.stack([_image(10 * k + s) for s in range(5)]) for k, name in enumerate(("A", "B", "C"))}
    for name, volume in volumes.items():
        write_dicom(tmp_path / "dbt" / f"{name}.dcm", volume)
    atomic_write_text(
        tmp_path / "paths.csv",
        "PatientID,StudyUID,View,descriptive_path\nDBT-P1,S1,lcc,dbt/A.dcm\nDBT-P2,S2,rmlo,dbt/B.dcm\n"
        "DBT-P3,S3,lcc,dbt/C.dcm\n",
    )
    atomic_write_text(
        tmp_path / "boxes.csv",
        "PatientID,StudyUID,View,X,Y,Width,Height,Slice,Class\nDBT-P1,S1,lcc,2,3,6,5,1,benign\n"
        "DBT-P1,S1,lcc,10,20,4,4,4,cancer\nDBT-P1,S1,lcc,0,0,2,2,2,benign\n",
    )
    atomic_write_text(
        tmp_path / "labels.csv",
        "PatientID,StudyUID,View,Normal,Actionable\nDBT-P2,S2,rmlo,1,0\nDBT-P3,S3,lcc,0,1\n",
    )
    samples = bcs_dbt_dataset(tmp_path / "boxes.csv", tmp_path / "paths.csv", tmp_path, tmp_path / "labels.csv")
    assert [(s.name, s.label, s.patient_id, s.slice_index) for s in samples] == [
        ("DBT-P1_S1_lcc_slice001", "abnormal", "DBT-P1", 1),
        ("DBT-P1_S1_lcc_slice002", "abnormal", "DBT-P1", 2),
        ("DBT-P1_S1_lcc_slice004", "abnormal", "DBT-P1", 4),
        ("DBT-P2_S2_rmlo_slice002", "normal", "DBT-P2", 2),
    ]
    # 5 slices (no VolumeSlices column: the DICOM's count): a box applies within 5 / 4 = 1.25 slices of its own.
    on_1, on_4, on_2 = (box.to_mask((32, 24)) for box in (Box(2, 3, 6, 5), Box(10, 20, 4, 4), Box(0, 0, 2, 2)))
    expected = {1: on_1 | on_2, 2: on_1 | on_2, 4: on_4, None: np.zeros((32, 24), bool)}
    for sample in samples:
        loaded = sample.load()
        volume = volumes[sample.path.stem]
        assert np.abs(loaded.image - volume[sample.slice_index]).max() < 1 / 4095
        assert np.array_equal(loaded.lesion_mask, expected[sample.slice_index if sample.label == "abnormal" else None])
    assert [sample.info.get("classes") for sample in samples] == [["benign"], ["benign"], ["cancer"], None]
    atomic_write_text(tmp_path / "normals.csv", "PatientID,StudyUID,View,Slice\nDBT-P1,S1,lcc,4\n")
    with pytest.raises(AnnotationError, match="listed as normal but has lesion boxes"):
        bcs_dbt_dataset(tmp_path / "boxes.csv", tmp_path / "paths.csv", tmp_path, tmp_path / "normals.csv")
    atomic_write_text(tmp_path / "normals.csv", "PatientID,StudyUID,View,Slice\nDBT-P3,S3,LCC,7\n")
    with pytest.raises(AnnotationError, match="line 2: slice 7 is outside the volume"):
        bcs_dbt_dataset(tmp_path / "boxes.csv", tmp_path / "paths.csv", tmp_path, tmp_path / "normals.csv")


# --- NIfTI cases ----------------------------------------------------------------------------------------------------


def _write_nifti(path: Path, data: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nibabel.save(nibabel.Nifti1Image(data, np.eye(4)), path)


@pytest.fixture()
def nifti_cases(tmp_path):
    """Two 16 x 12 x 6 cases: case_a has tumour labels in slices 2 and 3; slice 0 of both has no brain."""
    rng = np.random.default_rng(0)
    cases = {}
    for name, tumour_slices in (("case_a", (2, 3)), ("case_b", ())):
        image = rng.normal(size=(16, 12, 6)).astype(np.float32)
        labels = np.zeros((16, 12, 6), np.uint8)
        for index in tumour_slices:
            labels[4:8, 3:6, index] = index  # label values 2 and 3
        brain = np.zeros((16, 12, 6), np.uint8)
        brain[2:14, 1:11, 1:] = 1
        _write_nifti(tmp_path / name / "Flair_x.nii.gz", image)
        _write_nifti(tmp_path / name / "OTMultiClass.nii.gz", labels)
        _write_nifti(tmp_path / name / "brainmask.nii.gz", brain)
        cases[name] = image, labels, brain
    return tmp_path, cases


def test_nifti_label_dataset_labels_slices_and_aligns_masks(nifti_cases):
    root, cases = nifti_cases
    samples = nifti_label_dataset(root, brain_mask_glob="*/brainmask.nii.gz")
    assert len(samples) == 10  # 5 slices with brain per case
    assert [s.name for s in samples[:2]] == ["case_a_slice001", "case_a_slice002"]
    assert [s.name for s in samples if s.label == "abnormal"] == ["case_a_slice002", "case_a_slice003"]
    assert {s.patient_id for s in samples} == {"case_a", "case_b"}
    for sample in samples:
        image, labels, brain = cases[sample.patient_id]
        loaded = sample.load()
        index = sample.slice_index
        assert np.array_equal(loaded.lesion_mask, labels[:, :, index] > 0)
        assert np.array_equal(loaded.tissue_mask, brain[:, :, index] > 0)
        volume = image - image.min()
        expected = np.clip(volume[:, :, index] / np.percentile(volume, 99.9), 0, 1)
        assert np.abs(loaded.image - expected).max() < 1e-5  # volume-wide "auto" normalisation
    without_brain = nifti_label_dataset(root)
    assert len(without_brain) == 12 and without_brain[0].tissue_mask is None
    along_rows = nifti_label_dataset(root, axis=0)
    assert len(along_rows) == 32 and [s.slice_index for s in along_rows if s.label == "abnormal"] == [4, 5, 6, 7]
    assert along_rows[4].load().lesion_mask.shape == (12, 6)


def test_nifti_label_dataset_needs_a_label_for_every_case(nifti_cases):
    root, _ = nifti_cases
    (root / "case_b" / "OTMultiClass.nii.gz").unlink()
    with pytest.raises(AnnotationError, match="without both an image .* and a label .*: case_b"):
        nifti_label_dataset(root)
    with pytest.raises(InputError, match="no files match"):
        nifti_label_dataset(root, image_glob="*/T1*.nii.gz")


# --- patient-level splits -------------------------------------------------------------------------------------------


def _patients_samples(counts: list[int]) -> list[Sample]:
    image = np.zeros((4, 4), np.float32)
    return [Sample(f"p{p}_{k}", f"p{p}", "normal", image) for p, n in enumerate(counts) for k in range(n)]


@pytest.mark.parametrize("sizes", [{"train": 0.6, "val": 0.2, "test": 0.2}, {"train": 7, "val": 2, "test": 1}])
def test_split_by_patient_never_separates_a_patient(sizes):
    samples = _patients_samples([1, 5, 2, 3, 8, 1, 1, 4, 2, 6])
    splits = split_by_patient(samples, sizes, seed=4)
    patients = {name: {s.patient_id for s in part} for name, part in splits.items()}
    expected_patients = [6, 2, 2] if isinstance(sizes["train"], float) else [7, 2, 1]
    assert [len(p) for p in patients.values()] == expected_patients
    assert not (patients["train"] & patients["val"] or patients["train"] & patients["test"]
                or patients["val"] & patients["test"])
    assert sorted(s.name for part in splits.values() for s in part) == sorted(s.name for s in samples)
    shuffled = split_by_patient(samples[::-1], sizes, seed=4)
    assert {k: {s.name for s in v} for k, v in shuffled.items()} == {k: {s.name for s in v} for k, v in splits.items()}
    other = split_by_patient(samples, sizes, seed=5)
    assert any({s.name for s in other[k]} != {s.name for s in splits[k]} for k in splits)


def test_split_by_patient_rejects_sizes_that_do_not_add_up():
    samples = _patients_samples([1, 1, 1])
    for sizes, problem in [
        ({"a": 2, "b": 2}, "sum to the 3 patients"),
        ({"a": 0.5, "b": 0.4}, "sum to 1"),
        ({"a": 2, "b": 0.5}, "all sizes as patient counts"),
        ({}, "at least one split"),
    ]:
        with pytest.raises(ValueError, match=problem):
            split_by_patient(samples, sizes)


# --- synthetic validation -------------------------------------------------------------------------------------------


def test_synthetic_validation_masks_are_exact_and_follow_make_synthetic_set():
    normals = phantom_dataset(3, 0, TINY, seed=2)
    made = synthetic_validation_set(normals, 8, ANOMALY_KINDS, seed=6)
    loaded_bases = [s.load() for s in normals]
    reference = make_synthetic_set(
        [b.image for b in loaded_bases], [b.tissue_mask for b in loaded_bases], ANOMALY_KINDS, n=8, seed=6
    )
    for index, (sample, expected) in enumerate(zip(made, reference, strict=True)):
        base = normals[expected.info["image_index"]]
        kind = ANOMALY_KINDS[index % len(ANOMALY_KINDS)]
        assert sample.name == f"{base.name}_synthetic{index:04d}_{kind}" and sample.label == "abnormal"
        assert sample.patient_id == base.patient_id and sample.info["kind"] == kind
        loaded, original = sample.load(), base.load()
        assert np.array_equal(loaded.image, expected.image) and np.array_equal(loaded.lesion_mask, expected.mask)
        assert np.array_equal(loaded.image[~loaded.lesion_mask], original.image[~loaded.lesion_mask])
        assert loaded.lesion_mask.any() and not (loaded.lesion_mask & ~original.tissue_mask).any()
        assert np.array_equal(loaded.tissue_mask, original.tissue_mask)
    with pytest.raises(ValueError, match="normal samples only; abnormal: abnormal_0000"):
        synthetic_validation_set(phantom_dataset(1, 1, TINY), 2)
    with pytest.raises(ValueError, match="unknown|non-empty list"):
        synthetic_validation_set(normals, 2, kinds=("sphere",))


# --- real data ------------------------------------------------------------------------------------------------------

BRATS = SHARED_DATA / "brats2015"


@pytest.mark.realdata
@pytest.mark.skipif(not (BRATS / "brats_2013_pat0003_1" / "OTMultiClass.nii.gz").is_file(), reason="no BraTS data")
def test_brats_slices_are_counted_and_aligned():
    samples = nifti_label_dataset(
        BRATS, "*/Flair_subtrMeanDivStd.nii.gz", "*/OTMultiClass.nii.gz", "*/brainmask.nii.gz"
    )
    by_case: dict[str, list[Sample]] = {}
    for sample in samples:
        by_case.setdefault(sample.patient_id, []).append(sample)
    # slices with brain and slices with tumour per case, counted from the volumes with nibabel
    expected = {"0003": (140, 82), "0004": (130, 73), "0005": (138, 76), "0006": (145, 84)}
    assert sorted(by_case) == [f"brats_2013_pat{number}_1" for number in expected]
    for number, (n_brain, n_tumour) in expected.items():
        case_samples = by_case[f"brats_2013_pat{number}_1"]
        assert len(case_samples) == n_brain and sum(s.label == "abnormal" for s in case_samples) == n_tumour
    case = "brats_2013_pat0004_1"
    labels = np.asarray(nibabel.load(BRATS / case / "OTMultiClass.nii.gz").dataobj)
    abnormal = [s for s in by_case[case] if s.label == "abnormal"]
    assert [s.slice_index for s in abnormal] == list(np.flatnonzero((labels > 0).any(axis=(0, 1))))
    assert np.array_equal(abnormal[0].load_image(), read_image(abnormal[0].path, abnormal[0].slice_index).pixels)
    for sample in abnormal[:: max(1, len(abnormal) // 3)]:
        loaded = sample.load()
        assert loaded.image.shape == loaded.lesion_mask.shape == loaded.tissue_mask.shape == (240, 240)
        assert np.array_equal(loaded.lesion_mask, labels[:, :, sample.slice_index] > 0)
        assert (loaded.lesion_mask & loaded.tissue_mask).sum() >= 0.95 * loaded.lesion_mask.sum()
        # FLAIR tumour (oedema) is brighter than the rest of the brain
        assert loaded.image[loaded.lesion_mask].mean() > loaded.image[loaded.tissue_mask & ~loaded.lesion_mask].mean()
    assert dataclasses.replace(abnormal[0], label="normal", lesion_mask=None).load().lesion_mask.sum() == 0
