import json

import pytest

from picard_ad.errors import CorruptFileError, InputError
from picard_ad.io.records import read_json_object, read_record


def test_a_record_of_the_right_format_and_version_is_read(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"format": "thing", "format_version": 2, "value": 7}))
    assert read_record(path, "thing", 2, "thing record")["value"] == 7


@pytest.mark.parametrize(
    ("content", "error", "message"),
    [
        (None, InputError, "thing record not found"),
        ("{not json", CorruptFileError, "not valid JSON"),
        ("[1, 2]", CorruptFileError, "expected a JSON object"),
        ('{"format": "other", "format_version": 2}', CorruptFileError, "not a picard-ad thing record.*'other'"),
        ('{"format": "thing", "format_version": 1}', CorruptFileError, "format version 1; this picard-ad reads 2"),
    ],
)
def test_bad_records_name_the_file_and_the_problem(tmp_path, content, error, message):
    path = tmp_path / "r.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(error, match=message) as caught:
        read_record(path, "thing", 2, "thing record")
    assert str(path) in str(caught.value)


def test_missing_json_object_uses_the_given_message(tmp_path):
    with pytest.raises(InputError, match="missing from the checkpoint"):
        read_json_object(tmp_path / "state.json", "missing from the checkpoint")
