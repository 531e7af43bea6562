"""Annotation readers (boxes, circles, MIAS, BCS-DBT, mask folders) and their pixel masks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from picard_ad.errors import AnnotationError, ConfigError
from picard_ad.io.annotations import (
    AnnotationSet,
    Box,
    Circle,
    annotation_key,
    image_key,
    lesion_slices,
    masks_from_shapes,
    near_misses,
    read_annotations,
    read_bcs_dbt_boxes,
    read_boxes_csv,
    read_circles_csv,
    read_mias_info,
    write_boxes_csv,
)
from picard_ad.io.orientation import Orientation
from picard_ad.io.writers import write_dicom


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- Box and Circle -----------------------------------------------------------------------------------------------


def test_box_convention_on_a_drawn_example():
    mask = Box(x=2, y=1, width=3, height=2).to_mask((5, 6))
    expected = np.array(
        [
            [0, 0, 0, 0, 0, 0],
            [0, 0, 1, 1, 1, 0],
            [0, 0, 1, 1, 1, 0],
            [0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0],
        ],
        dtype=bool,
    )
    np.testing.assert_array_equal(mask, expected)
    assert mask.sum() == 3 * 2


@pytest.mark.parametrize(("radius", "pixels"), [(0.5, 1), (1.0, 5), (math.sqrt(2), 9), (2.0, 13), (3.0, 29)])
def test_circle_exact_small_pixel_counts(radius, pixels):
    circle = Circle(x=10, y=10, radius=radius)
    assert circle.to_mask((21, 21)).sum() == pixels


def test_circle_radius_one_is_a_plus_sign():
    mask = Circle(x=1, y=2, radius=1).to_mask((4, 3))
    expected = np.array([[0, 0, 0], [0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)
    np.testing.assert_array_equal(mask, expected)


@pytest.mark.parametrize("radius", [10.0, 25.5, 60.0])
def test_circle_area_matches_pi_r_squared(radius):
    area = Circle(x=100.3, y=99.6, radius=radius).to_mask((200, 200)).sum()
    assert abs(area - math.pi * radius**2) / (math.pi * radius**2) < 0.03


def test_circle_box_is_tight_bounding_box():
    circle = Circle(x=10, y=20, radius=3)
    assert circle.box == Box(x=7, y=17, width=7, height=7)
    off_grid = Circle(x=10.5, y=20.5, radius=1)
    mask = off_grid.to_mask((40, 40))
    rows, columns = np.nonzero(mask)
    box = off_grid.box
    assert (box.y, box.x, box.height, box.width) == (
        rows.min(), columns.min(), rows.max() - rows.min() + 1, columns.max() - columns.min() + 1
    )
    np.testing.assert_array_equal(box.to_mask((40, 40)), mask)  # four pixels forming a 2 x 2 square


def test_circle_rejects_non_positive_radius_and_empty_circles():
    with pytest.raises(ValueError, match="positive"):
        Circle(x=1, y=1, radius=0)
    with pytest.raises(ValueError, match="no pixel"):
        Circle(x=0.5, y=0.5, radius=0.6)


# --- masks_from_shapes --------------------------------------------------------------------------------------------


def test_masks_from_shapes_unions_and_clips():
    shapes = [Box(x=-2, y=-1, width=4, height=3), Box(x=1, y=0, width=2, height=1), Circle(x=9, y=4, radius=1)]
    mask = masks_from_shapes(shapes, (5, 10))
    # The first box keeps columns 0..1 and rows 0..1 (4 pixels); the second adds (0, 2); the circle loses (4, 10)
    # and keeps (3, 9), (4, 8), (4, 9).
    assert mask.sum() == 4 + 1 + 3
    assert mask[0, 2] and mask[1, 1] and not mask[2, 0]
    assert mask[3, 9] and mask[4, 8] and mask[4, 9]


def test_shape_entirely_outside_is_an_error_naming_it(tmp_path):
    source = tmp_path / "boxes.csv"
    with pytest.raises(AnnotationError) as info:
        masks_from_shapes([Box(x=50, y=2, width=5, height=5)], (20, 30), source=source, image_name="case_7")
    message = str(info.value)
    assert str(source) in message and "case_7" in message and "x=50" in message and "20 x 30" in message
    with pytest.raises(AnnotationError, match="outside"):
        masks_from_shapes([Circle(x=-3, y=-3, radius=2)], (20, 30))


# --- Boxes CSV ----------------------------------------------------------------------------------------------------


def test_boxes_csv_several_rows_per_image_label_and_extra_columns(tmp_path):
    path = _write(
        tmp_path / "boxes.csv",
        "image,x,y,width,height,label,reader\n"
        "abnormal_0001.png,10,20,5,4,mass,A\n"
        "abnormal_0001.png,0,0,2.0,3,,B\n"
        "abnormal_0002.png,1,2,3,4,calc,A\n",
    )
    boxes = read_boxes_csv(path)
    assert boxes == {
        "abnormal_0001.png": [Box(10, 20, 5, 4, "mass"), Box(0, 0, 2, 3, None)],
        "abnormal_0002.png": [Box(1, 2, 3, 4, "calc")],
    }


def test_boxes_csv_round_trip(tmp_path):
    boxes = {"a.png": [Box(1, 2, 3, 4, "mass, spiculated"), Box(5, 6, 7, 8)], "b.dcm": [Box(0, 0, 1, 1, "x")]}
    path = tmp_path / "out" / "boxes.csv"
    write_boxes_csv(path, boxes)
    assert read_boxes_csv(path) == boxes
    assert [p.name for p in path.parent.iterdir()] == ["boxes.csv"]  # no temporary left behind


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty file"),
        ("\n\n", "empty file"),
        ("image,x,y,width\na.png,1,2,3\n", "missing columns height"),
        ("image,x,y,width,height\na.png,1,2,3,4\na.png,1,two,3,4\n", "line 3: column 'y' is not a number"),
        ("image,x,y,width,height\na.png,1,2,0,4\n", "line 2: box width and height must be positive"),
        ("image,x,y,width,height\na.png,1,2,-3,4\n", "line 2: box width and height must be positive"),
        ("image,x,y,width,height\na.png,1.5,2,3,4\n", "line 2: column 'x' must be a whole number"),
        ("image,x,y,width,height\na.png,1,2,3\n", "line 2: no value in column 'height'"),
        ("image,x,y,width,height\na.png,nan,2,3,4\n", "line 2: column 'x' is not finite"),
    ],
)
def test_boxes_csv_errors_name_file_and_line(tmp_path, text, problem):
    path = _write(tmp_path / "bad.csv", text)
    with pytest.raises(AnnotationError) as info:
        read_boxes_csv(path)
    assert str(info.value).startswith(f"{path}: ")
    assert problem in str(info.value)


def test_missing_annotation_file_is_an_annotation_error(tmp_path):
    with pytest.raises(AnnotationError, match="file not found") as info:
        read_boxes_csv(tmp_path / "nowhere.csv")
    assert "nowhere.csv" in str(info.value)


# --- Circles CSV and MIAS -----------------------------------------------------------------------------------------


def test_circles_csv(tmp_path):
    path = _write(tmp_path / "circles.csv", "image,x,y,radius\nc1.png,10.5,20,3\nc1.png,4,4,1\nc2.png,0,0,2\n")
    circles = read_circles_csv(path)
    assert circles == {"c1.png": [Circle(10.5, 20, 3), Circle(4, 4, 1)], "c2.png": [Circle(0, 0, 2)]}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("image,x,y\nc.png,1,2\n", "missing columns radius"),
        ("image,x,y,radius\nc.png,1,2,0\n", "line 2: radius must be positive"),
        ("image,x,y,radius\nc.png,1,2,-4\n", "line 2: radius must be positive"),
        ("image,x,y,radius\n\nc.png,1,2,big\n", "line 3: column 'radius' is not a number"),
    ],
)
def test_circles_csv_errors_name_file_and_line(tmp_path, text, problem):
    path = _write(tmp_path / "bad_circles.csv", text)
    with pytest.raises(AnnotationError) as info:
        read_circles_csv(path)
    assert str(info.value).startswith(f"{path}: ") and problem in str(info.value)


MIAS_INFO = """REFNUM BG CLASS SEVERITY X Y RADIUS
mdb001 G CIRC B 535 425 197
mdb003 D NORM
mdb005 F CIRC B 477 133 30
mdb005 F CIRC B 500 168 26
mdb059 F CIRC B
"""


def test_mias_info_flips_y_and_groups_lesions(tmp_path):
    films = read_mias_info(_write(tmp_path / "Info.txt", MIAS_INFO))
    assert set(films) == {"mdb001", "mdb003", "mdb005", "mdb059"}
    assert films["mdb001"].lesions == (Circle(x=535, y=1024 - 425, radius=197, label="CIRC B"),)
    assert films["mdb001"].tissue == "G"
    assert [c.y for c in films["mdb005"].lesions] == [1024 - 133, 1024 - 168]
    assert not films["mdb003"].abnormal and films["mdb003"].lesions == ()
    # Abnormal without coordinates: no circle, but not normal either.
    assert films["mdb059"].lesions == () and films["mdb059"].unlocalised == ("CIRC B",)
    assert films["mdb059"].abnormal


def test_mias_y_flip_on_the_mask(tmp_path):
    path = _write(tmp_path / "Info.txt", "mdb010 F CIRC B 30 10 2\n")
    mask = AnnotationSet.from_mias_info(path, image_height=64).mask_for("mdb010.pgm", (64, 64))
    rows, columns = np.nonzero(mask)
    assert mask.sum() == 13
    assert (rows.mean(), columns.mean()) == (54.0, 30.0)  # 10 px above the bottom edge


def test_mias_unlocalised_film_cannot_be_scored_as_normal(tmp_path):
    annotations = AnnotationSet.from_mias_info(_write(tmp_path / "Info.txt", MIAS_INFO))
    assert annotations.names() == ["mdb001", "mdb005", "mdb059"]
    assert not annotations.mask_for("mdb003.pgm", (1024, 1024)).any()
    with pytest.raises(AnnotationError, match="without coordinates") as info:
        annotations.mask_for("mdb059.pgm", (1024, 1024))
    assert "Info.txt" in str(info.value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty file"),
        ("mdb001 G CIRC B 535 425\n", "line 1: expected"),
        ("mdb003 D NORM\nmdb001 G CIRC B 535 x 197\n", "line 2: column 'y' is not a number"),
        ("mdb001 G CIRC B 535 425 0\n", "line 1: radius must be positive"),
        ("mdb001 G CIRC B 535 425 9\nmdb001 G NORM\n", "line 2: film mdb001 is listed both"),
    ],
)
def test_mias_errors_name_file_and_line(tmp_path, text, problem):
    path = _write(tmp_path / "Info.txt", text)
    with pytest.raises(AnnotationError) as info:
        read_mias_info(path)
    assert str(info.value).startswith(f"{path}: ") and problem in str(info.value)


# --- BCS-DBT ------------------------------------------------------------------------------------------------------

DBT_BOXES = (
    "PatientID,StudyUID,View,Subject,Slice,X,Y,Width,Height,Class,AD,VolumeSlices\n"
    "DBT-P00013,DBT-S00163,rmlo,0,16,1116,1724,218,105,cancer,0,52\n"
    "DBT-P00024,DBT-S04378,lcc,0,39,257,1057,141,151,benign,0,65\n"
    "DBT-P00024,DBT-S04378,lcc,1,20,400,500,10,12,benign,1,65\n"
)
DBT_PATHS = (
    "PatientID,StudyUID,View,descriptive_path,classic_path\n"
    "DBT-P00013,DBT-S00163,rmlo,P00013/rmlo/1-1.dcm,P00013/1.2.3/1-1.dcm\n"
    "DBT-P00024,DBT-S04378,lcc,P00024/lcc/1-1.dcm,P00024/1.2.4/1-1.dcm\n"
    "DBT-P00099,DBT-S00001,rcc,P00099/rcc/1-1.dcm,P00099/1.2.5/1-1.dcm\n"
)


def test_bcs_dbt_join(tmp_path):
    boxes = _write(tmp_path / "boxes.csv", DBT_BOXES)
    paths = _write(tmp_path / "paths.csv", DBT_PATHS)
    records = read_bcs_dbt_boxes(boxes, paths, root=tmp_path / "data")
    assert len(records) == 3
    first = records[0]
    assert (first.patient_id, first.study_uid, first.view, first.slice, first.volume_slices) == (
        "DBT-P00013", "DBT-S00163", "rmlo", 16, 52
    )
    assert first.box == Box(x=1116, y=1724, width=218, height=105, label="cancer")
    assert first.label == "cancer"
    assert first.path == tmp_path / "data" / "P00013/rmlo/1-1.dcm"
    assert first.name == "DBT-P00013_DBT-S00163_rmlo"
    classic = read_bcs_dbt_boxes(boxes, paths, path_column="classic_path")
    assert classic[1].path == Path("P00024/1.2.4/1-1.dcm") and classic[1].slice == 39


def test_bcs_dbt_annotation_set_by_name_and_path(tmp_path):
    boxes = _write(tmp_path / "boxes.csv", DBT_BOXES)
    paths = _write(tmp_path / "paths.csv", DBT_PATHS)
    annotations = AnnotationSet.from_bcs_dbt(boxes, paths, root=tmp_path)
    assert annotations.names() == ["DBT-P00013_DBT-S00163_rmlo", "DBT-P00024_DBT-S04378_lcc"]
    by_name = annotations.mask_for("DBT-P00024_DBT-S04378_lcc", (2457, 1996), index=30)  # both boxes apply
    assert by_name.sum() == 141 * 151 + 10 * 12
    by_path = annotations.mask_for(tmp_path / "P00024/lcc/1-1.dcm", (2457, 1996), index=30)
    np.testing.assert_array_equal(by_name, by_path)
    assert len(annotations.boxes_for("DBT-P00024_DBT-S04378_lcc")) == 2
    assert not annotations.mask_for("DBT-P00099_DBT-S00001_rcc", (2457, 1996), index=30).any()
    assert annotations.match([tmp_path / "P00024/lcc/1-1.dcm", tmp_path / "P00013/rmlo/1-1.dcm"]) == [
        "DBT-P00024_DBT-S04378_lcc", "DBT-P00013_DBT-S00163_rmlo"
    ]


def test_bcs_dbt_boxes_apply_within_a_quarter_of_the_volume_of_their_central_slice(tmp_path):
    boxes = _write(tmp_path / "boxes.csv", DBT_BOXES)
    annotations = AnnotationSet.from_bcs_dbt(boxes, _write(tmp_path / "paths.csv", DBT_PATHS), root=tmp_path)
    name, shape = "DBT-P00024_DBT-S04378_lcc", (2457, 1996)
    central, near = Box(257, 1057, 141, 151, "benign"), Box(400, 500, 10, 12, "benign")  # slices 39 and 20 of 65
    # 65 / 4 = 16.25 slices either side: 39 covers 23..55 and 20 covers 4..36.
    for index, expected in [(39, [central]), (20, [near]), (30, [central, near]), (23, [central, near]),
                            (55, [central]), (56, []), (4, [near]), (3, []), (0, [])]:
        assert annotations.boxes_for(name, index=index) == expected, index
        mask = annotations.mask_for(name, shape, index=index)
        assert mask.sum() == sum(box.width * box.height for box in expected), index
    assert annotations.boxes_for(name) == [central, near]  # no slice: every box of the volume
    with pytest.raises(AnnotationError, match="the slice index is needed"):
        annotations.mask_for(name, shape)


@pytest.mark.parametrize(
    ("central", "n_slices", "expected"),
    [(16, 52, range(3, 30)), (55, 64, range(39, 64)), (0, 10, range(0, 3)), (9, 10, range(7, 10)), (0, 3, range(1))],
)
def test_lesion_slices_follow_the_dbtex_rule(central, n_slices, expected):
    assert lesion_slices(central, n_slices) == expected
    assert list(expected) == [i for i in range(n_slices) if abs(i - central) <= n_slices / 4]


def test_bcs_dbt_without_volume_slices_uses_the_dicom_slice_count(tmp_path):
    write_dicom(tmp_path / "vol.dcm", np.zeros((9, 16, 12), dtype=np.float32))
    boxes = _write(tmp_path / "boxes.csv", "PatientID,StudyUID,View,X,Y,Width,Height,Slice\nP,S,lcc,1,2,3,4,4\n")
    paths = _write(tmp_path / "paths.csv", "PatientID,StudyUID,View,descriptive_path\nP,S,lcc,vol.dcm\n")
    annotations = AnnotationSet.from_bcs_dbt(boxes, paths, root=tmp_path)
    # 9 slices: the box on slice 4 applies to slices 2..6 (|i - 4| <= 2.25).
    drawn = [i for i in range(9) if annotations.mask_for(tmp_path / "vol.dcm", (16, 12), index=i).any()]
    assert drawn == [2, 3, 4, 5, 6]
    _write(boxes, "PatientID,StudyUID,View,X,Y,Width,Height,Slice\nP,S,lcc,1,2,3,4,9\n")
    with pytest.raises(AnnotationError, match="slice 9 is outside the volume"):
        AnnotationSet.from_bcs_dbt(boxes, paths, root=tmp_path).mask_for("P_S_lcc", (16, 12), index=0)
    (tmp_path / "vol.dcm").unlink()
    with pytest.raises(AnnotationError, match="no VolumeSlices column, and the slice count of P_S_lcc cannot be read"):
        AnnotationSet.from_bcs_dbt(boxes, paths, root=tmp_path).boxes_for("P_S_lcc", index=0)


def test_bcs_dbt_missing_columns_name_the_file(tmp_path):
    boxes = _write(tmp_path / "boxes.csv", DBT_BOXES)
    paths = _write(tmp_path / "paths.csv", "PatientID,StudyUID,classic_path\nDBT-P00013,DBT-S00163,a.dcm\n")
    with pytest.raises(AnnotationError) as info:
        read_bcs_dbt_boxes(boxes, paths)
    message = str(info.value)
    assert message.startswith(f"{paths}: ") and "View" in message and "descriptive_path" in message
    no_slice = _write(tmp_path / "no_slice.csv", "PatientID,StudyUID,View,X,Y,Width,Height\nP,S,lcc,1,2,3,4\n")
    with pytest.raises(AnnotationError, match="missing columns Slice") as info:
        read_bcs_dbt_boxes(no_slice, _write(tmp_path / "p.csv", DBT_PATHS))
    assert str(info.value).startswith(f"{no_slice}: ")


def test_bcs_dbt_unmatched_row_names_the_row(tmp_path):
    boxes = _write(tmp_path / "boxes.csv", DBT_BOXES + "DBT-P00777,DBT-S00777,rcc,0,3,1,2,3,4,benign,0,40\n")
    paths = _write(tmp_path / "paths.csv", DBT_PATHS)
    with pytest.raises(AnnotationError) as info:
        read_bcs_dbt_boxes(boxes, paths)
    message = str(info.value)
    assert message.startswith(f"{boxes}: line 5:") and "PatientID=DBT-P00777" in message and str(paths) in message


def test_bcs_dbt_slice_outside_volume(tmp_path):
    boxes = _write(tmp_path / "boxes.csv", DBT_BOXES.replace(",16,1116", ",52,1116"))
    with pytest.raises(AnnotationError, match="line 2: slice 52 is outside the volume"):
        read_bcs_dbt_boxes(boxes, _write(tmp_path / "paths.csv", DBT_PATHS))


# --- AnnotationSet ------------------------------------------------------------------------------------------------


def test_annotation_set_from_boxes_matches_by_name_without_suffix(tmp_path):
    path = _write(
        tmp_path / "boxes.csv",
        "image,x,y,width,height\nabnormal_0001.png,2,3,4,5\nabnormal_0001.dcm,0,0,1,1\n",
    )
    with pytest.raises(AnnotationError, match="name the same image 'abnormal_0001'"):
        AnnotationSet.from_boxes_csv(path)
    _write(path, "image,x,y,width,height\nabnormal_0001.png,2,3,4,5\nabnormal_0001.png,0,0,1,1\n")
    annotations = AnnotationSet.from_boxes_csv(path)
    assert annotations.names() == ["abnormal_0001"]
    mask = annotations.mask_for(Path("/data/images/abnormal_0001.dcm"), (10, 10))
    assert mask.sum() == 4 * 5 + 1
    assert annotations.boxes_for("abnormal_0001.png") == [Box(2, 3, 4, 5), Box(0, 0, 1, 1)]
    assert annotations.boxes_for("normal_0001.png") == []
    normal = annotations.mask_for("normal_0001.png", (10, 12))
    assert normal.shape == (10, 12) and normal.dtype == bool and not normal.any()


def test_annotation_set_from_circles(tmp_path):
    path = _write(tmp_path / "circles.csv", "image,x,y,radius\ncase.png,5,5,2\n")
    annotations = AnnotationSet.from_circles_csv(path)
    assert annotations.mask_for("case.png", (11, 11)).sum() == 13
    assert annotations.boxes_for("case") == [Box(3, 3, 5, 5)]


def test_annotation_set_error_for_box_outside_its_image(tmp_path):
    path = _write(tmp_path / "boxes.csv", "image,x,y,width,height\nsmall.png,300,300,10,10\n")
    with pytest.raises(AnnotationError) as info:
        AnnotationSet.from_boxes_csv(path).mask_for("small.png", (256, 256))
    assert str(info.value).startswith(f"{path}: ") and "small.png" in str(info.value)


def test_orientation_hook_flips_the_mask(tmp_path):
    path = _write(tmp_path / "boxes.csv", "image,x,y,width,height\nrcc.png,0,1,2,1\n")
    annotations = AnnotationSet.from_boxes_csv(path)
    plain = annotations.mask_for("rcc.png", (3, 5))
    flipped = annotations.mask_for("rcc.png", (3, 5), orientation=Orientation(flip_horizontal=True))
    assert np.argwhere(plain).tolist() == [[1, 0], [1, 1]]
    assert np.argwhere(flipped).tolist() == [[1, 3], [1, 4]]
    assert flipped.dtype == bool and flipped.flags.c_contiguous


def test_boxes_name_images_by_relative_path(tmp_path):
    path = _write(tmp_path / "boxes.csv", "image,x,y,width,height\np1/img.png,2,3,4,5\n")
    annotations = AnnotationSet.from_boxes_csv(path)
    assert annotations.names() == ["p1/img"]
    assert annotations.mask_for(tmp_path / "data/p1/img.png", (10, 10)).sum() == 20
    assert not annotations.mask_for(tmp_path / "data/p2/img.png", (10, 10)).any()
    assert annotations.boxes_for("data/p2/img.png") == [] and annotations.boxes_for("p1/img") == [Box(2, 3, 4, 5)]
    assert annotations.match([tmp_path / "data/p1/img.png", tmp_path / "data/p2/img.png"]) == ["p1/img", None]


def test_a_bare_name_matches_any_folder_unless_ambiguous(tmp_path):
    path = _write(tmp_path / "boxes.csv", "image,x,y,width,height\nimg.png,2,3,4,5\n")
    annotations = AnnotationSet.from_boxes_csv(path)
    assert annotations.match([tmp_path / "p1/img.png", tmp_path / "p1/other.png"]) == ["img", None]
    assert annotations.match([tmp_path / "p1/img.png", tmp_path / "p1/img.png"]) == ["img", "img"]  # one image
    with pytest.raises(AnnotationError) as info:
        annotations.match([tmp_path / "p1/img.png", tmp_path / "p2/img.png"])
    message = str(info.value)
    assert message.startswith(f"{path}: 'img' would name 2 images")
    assert str(tmp_path / "p1/img.png") in message and str(tmp_path / "p2/img.png") in message
    assert "path relative to the annotated root, such as 'p1/img.png'" in message


def test_each_image_takes_its_most_specific_name(tmp_path):
    path = _write(tmp_path / "boxes.csv", "image,x,y,width,height\np1/img.png,0,0,1,1\nimg.png,2,3,4,5\n")
    annotations = AnnotationSet.from_boxes_csv(path)
    images = [tmp_path / "images/p1/img.png", tmp_path / "images/p2/img.png"]
    assert annotations.match(images) == ["p1/img", "img"]
    assert annotations.boxes_for(images[0]) == [Box(0, 0, 1, 1)]
    assert annotations.boxes_for(images[1]) == [Box(2, 3, 4, 5)]
    with pytest.raises(AnnotationError, match="'img' would name 2 images"):
        annotations.match([*images, tmp_path / "images/p3/img.png"])


@pytest.mark.parametrize(
    ("name", "key"),
    [("p1/img.png", "p1/img"), ("./case_01.dcm", "case_01"), ("p1\\img.PNG", "p1/img"), ("a/b.nii.gz", "a/b"),
     ("P_00173.1-130", "P_00173.1-130"), ("/data/x.tif", "/data/x")],
)
def test_annotation_key_keeps_folders_and_drops_the_image_suffix(name, key):
    assert annotation_key(name) == key


def test_an_absolute_name_matches_that_file_only(tmp_path):
    path = _write(tmp_path / "boxes.csv", f"image,x,y,width,height\n{tmp_path / 'a' / 'img.png'},0,0,1,1\n")
    annotations = AnnotationSet.from_boxes_csv(path)
    assert annotations.match([tmp_path / "a/img.dcm", tmp_path / "b/img.dcm"]) == [str(tmp_path / "a/img"), None]


def test_near_misses_differ_only_in_case_zero_padding_or_separators():
    names = ["case_01", "Case02", "p1/lesion-3", "abnormal_0003", "case_07"]
    images = ["x/case_1.png", "x/case_02.png", "x/P1/Lesion_003.dcm", "x/p2/lesion-3.dcm", "x/normal_0003.png",
              "x/case_08.png"]
    assert near_misses(images, names) == [
        ("x/case_1.png", "case_01"), ("x/case_02.png", "Case02"), ("x/P1/Lesion_003.dcm", "p1/lesion-3")
    ]


def test_image_key():
    assert image_key("images/abnormal_0001.png") == "abnormal_0001"
    assert image_key(Path("/x/brats_0003.nii.gz")) == "brats_0003"
    assert image_key("mdb001") == "mdb001"
    assert image_key("P_00173.1-130") == "P_00173.1-130"  # a dot inside a name is not a suffix
    assert image_key("P_00173.1-130.DCM") == "P_00173.1-130"


# --- Mask folders (need picard_ad.io.read_mask) -------------------------------------------------------------------


def _png_mask(path: Path, mask: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(mask.astype(np.uint8) * 255).save(path)


def test_mask_folder_matches_png_and_nifti_by_stem(tmp_path):
    nibabel = pytest.importorskip("nibabel")
    folder = tmp_path / "masks"
    folder.mkdir()
    png_mask = np.zeros((6, 8), dtype=bool)
    png_mask[1:3, 2:7] = True
    _png_mask(folder / "abnormal_0001.png", png_mask)
    labels = np.zeros((6, 8, 3), dtype=np.uint8)  # NIfTI volume indexed (row, column, slice) along axis 2
    labels[4, 1:4, 1] = 2
    labels[0, 0, 2] = 1
    nibabel.save(nibabel.Nifti1Image(labels, np.eye(4)), folder / "brats_0003.nii.gz")

    _write(folder / "README.txt", "outlines by reader A\n")
    _png_mask(folder / ".half_written.png", np.ones((6, 8), dtype=bool))  # hidden files are skipped
    annotations = AnnotationSet.from_mask_folder(folder)
    assert annotations.names() == ["abnormal_0001", "brats_0003"]
    np.testing.assert_array_equal(annotations.mask_for("images/abnormal_0001.dcm", (6, 8)), png_mask)
    np.testing.assert_array_equal(annotations.mask_for("abnormal_0001.png", (6, 8)), png_mask)
    slice_1 = annotations.mask_for("images/brats_0003.nii.gz", (6, 8), index=1)
    assert np.argwhere(slice_1).tolist() == [[4, 1], [4, 2], [4, 3]]
    assert annotations.mask_for("brats_0003", (6, 8), index=2).sum() == 1
    assert not annotations.mask_for("normal_0009.png", (6, 8)).any()
    flipped = annotations.mask_for("abnormal_0001.png", (6, 8), orientation=Orientation(flip_horizontal=True))
    np.testing.assert_array_equal(flipped, png_mask[:, ::-1])
    with pytest.raises(AnnotationError, match="mask image, not by boxes"):
        annotations.boxes_for("abnormal_0001")


def test_mask_folder_errors_name_the_files(tmp_path):
    folder = tmp_path / "masks"
    folder.mkdir()
    _png_mask(folder / "case.png", np.ones((4, 4), dtype=bool))
    annotations = AnnotationSet.from_mask_folder(folder)
    with pytest.raises(AnnotationError) as info:
        annotations.mask_for("case.png", (5, 4))
    assert str(info.value).startswith(f"{folder / 'case.png'}: ") and "4 x 4" in str(info.value)
    _png_mask(folder / "case.tif", np.ones((4, 4), dtype=bool))
    with pytest.raises(AnnotationError, match="name the same image 'case'") as info:
        AnnotationSet.from_mask_folder(folder)
    assert str(info.value).startswith(f"{folder}: ")
    with pytest.raises(AnnotationError, match="no image files"):
        AnnotationSet.from_mask_folder(_empty(tmp_path / "empty"))
    with pytest.raises(AnnotationError, match="not found"):
        AnnotationSet.from_mask_folder(tmp_path / "absent")


def test_mask_folder_is_searched_recursively_and_names_by_relative_path(tmp_path):
    folder = tmp_path / "masks"
    (folder / "p1").mkdir(parents=True)
    (folder / "p2").mkdir()
    (folder / ".cache").mkdir()
    first, second = np.zeros((4, 5), dtype=bool), np.zeros((4, 5), dtype=bool)
    first[0, 0], second[3, 4] = True, True
    _png_mask(folder / "p1" / "img.png", first)
    _png_mask(folder / "p2" / "img.png", second)
    _png_mask(folder / ".cache" / "img.png", np.ones((4, 5), dtype=bool))
    annotations = AnnotationSet.from_mask_folder(folder)
    assert annotations.names() == ["p1/img", "p2/img"]
    np.testing.assert_array_equal(annotations.mask_for(tmp_path / "images/p1/img.dcm", (4, 5)), first)
    np.testing.assert_array_equal(annotations.mask_for(tmp_path / "images/p2/img.dcm", (4, 5)), second)
    assert not annotations.mask_for(tmp_path / "images/img.dcm", (4, 5)).any()


def _empty(folder: Path) -> Path:
    folder.mkdir()
    return folder


def test_mask_folder_binarises_lossy_jpeg_at_mid_grey(tmp_path):
    from PIL import Image

    folder = tmp_path / "masks"
    folder.mkdir()
    grey = np.zeros((8, 8), dtype=np.uint8)
    grey[2:5, 3:6] = 255
    grey[0, 0] = 20  # compression noise
    grey[7, 7] = 120
    Image.fromarray(grey).save(folder / "lesion.jpg", quality=100)
    mask = AnnotationSet.from_mask_folder(folder).mask_for("lesion.png", (8, 8))
    assert mask.sum() == 9 and mask[2:5, 3:6].all()


SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.mark.realdata
def test_cdd_cesm_masks_follow_their_images():
    folder = SHARED_DATA / "cdd-cesm"
    if not (folder / "masks").is_dir():
        pytest.skip("CDD-CESM sample not available in ../shared/data")
    from picard_ad.io import read_image

    annotations = AnnotationSet.from_mask_folder(folder / "masks")
    images = sorted((folder / "images").glob("*.jpg"))
    assert len(images) == len(annotations.names()) == 20
    for image_path in images:
        image = read_image(image_path)
        mask = annotations.mask_for(image_path, image.pixels.shape)
        assert 0.0005 < mask.mean() < 0.5, image_path.name  # every image is abnormal, lesions are local


# --- Annotation specs -----------------------------------------------------------------------------------------------


def test_read_annotations_of_every_spec(tmp_path):
    boxes = _write(tmp_path / "boxes.csv", "image,x,y,width,height\np1/a.png,1,1,2,2\n")
    circles = _write(tmp_path / "circles.csv", "\ufeffimage,x,y, radius\nb.png,5,5,2\n")
    (tmp_path / "masks").mkdir()
    _png_mask(tmp_path / "masks" / "c.png", np.ones((3, 3), dtype=bool))
    dbt = f"bcs-dbt:{_write(tmp_path / 'dbt.csv', DBT_BOXES)},{_write(tmp_path / 'paths.csv', DBT_PATHS)},{tmp_path}"
    read = {spec: read_annotations(spec) for spec in (boxes, str(circles), tmp_path / "masks", dbt)}
    assert [loaded.lesions_are_boxes for loaded in read.values()] == [True, True, False, True]
    assert read[boxes].annotations.names() == ["p1/a"]
    assert read[str(circles)].annotations.boxes_for("b") == [Circle(5, 5, 2).box]
    assert read[tmp_path / "masks"].annotations.names() == ["c"]
    assert read[dbt].annotations.boxes_for(tmp_path / "P00013/rmlo/1-1.dcm", index=16) == [
        Box(1116, 1724, 218, 105, "cancer")
    ]


def test_read_annotations_errors_name_the_spec(tmp_path):
    with pytest.raises(AnnotationError, match="annotation file or folder not found") as info:
        read_annotations(tmp_path / "absent.csv")
    assert str(info.value).startswith(str(tmp_path / "absent.csv"))
    with pytest.raises(AnnotationError, match="expected a mask folder, a boxes or circles CSV"):
        read_annotations(_write(tmp_path / "boxes.txt", "image,x,y,width,height\n"))
    with pytest.raises(ConfigError, match="expected bcs-dbt:BOXES.csv,FILE_PATHS.csv"):
        read_annotations("bcs-dbt:only_boxes.csv")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("image,x,y,width,height\nf\xe9e.png,1,1,2,2\n".encode("latin-1"))
    with pytest.raises(AnnotationError, match="not a UTF-8 text file"):
        read_annotations(latin)
