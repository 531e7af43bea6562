"""``picard-ad info`` on inputs that used to fail badly: one line per bad file, the others still reported."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pydicom
from click.testing import CliRunner
from dicom_sources import pydicom_file

from picard_ad.cli import main
from picard_ad.io import base
from picard_ad.io.writers import write_dicom, write_png


def write_blank_png(path: Path, width: int, height: int) -> Path:
    """A 1-bit black PNG of any size in kilobytes, written row by row (never held in memory)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" * (1 + (width + 7) // 8)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path



def info(*args):
    return CliRunner().invoke(main, ["info", *[str(a) for a in args]], catch_exceptions=False)


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("picard-ad: error:")]


def test_malformed_header_value_is_one_line_and_the_next_file_is_reported():
    bad, good = pydicom_file("badVR.dcm"), pydicom_file("CT_small.dcm")
    result = info(bad, good)
    assert result.exit_code == 2
    assert error_lines(result) == [f"picard-ad: error: {bad}: NumberOfFrames '1A' is not a whole number"]
    assert f"{good}\n" in result.stdout and "128 rows x 128 cols, 1 slice" in result.stdout
    assert "1 of 2 file(s) could not be read" in result.stderr and "Traceback" not in result.output


def test_pixel_data_shorter_than_the_header_fails_info_as_it_fails_heatmap(tmp_path):
    truncated = pydicom_file("MR_truncated.dcm")
    mismatch = tmp_path / "mismatch.dcm"
    write_dicom(mismatch, np.zeros((20, 30)), bits_stored=16)
    ds = pydicom.dcmread(mismatch)
    ds.PixelData = np.full((20, 30), 7, dtype=np.uint8).tobytes()  # 8-bit bytes under a 16-bit header
    ds.save_as(mismatch, enforce_file_format=True)
    write_dicom(tmp_path / "fine.dcm", np.zeros((8, 6)))
    result = info(truncated, mismatch, tmp_path / "fine.dcm")
    assert result.exit_code == 2
    assert error_lines(result) == [
        (
            f"picard-ad: error: {truncated}: truncated file: the pixel data ends after 8130 of its 8192 bytes "
            "(8192 needed for 64 x 64 x 1 frame(s) x 1 sample(s) x 16 bits)"
        ),
        (
            f"picard-ad: error: {mismatch}: pixel data holds 600 bytes, but the header (20 x 30 x 1 frame(s) x 1 "
            "sample(s) x 16 bits) needs 1200: the header does not describe the data"
        ),
    ]
    assert "8 rows x 6 cols" in result.stdout


def test_image_over_the_pixel_limit_is_one_line_and_the_next_file_is_reported(tmp_path, monkeypatch):
    huge = write_blank_png(tmp_path / "huge.png", 20_000, 10_000)  # over Pillow's 179 megapixels
    write_png(tmp_path / "small.png", np.zeros((16, 12)), bit_depth=8)
    monkeypatch.setattr(base, "available_memory", lambda: 250_000_000 * base.BYTES_PER_PIXEL)
    fits = info(huge, tmp_path / "small.png")
    assert fits.exit_code == 0, fits.output
    assert "10000 rows x 20000 cols" in fits.stdout
    monkeypatch.setattr(base, "available_memory", lambda: 100_000_000 * base.BYTES_PER_PIXEL)
    refused = info(huge, tmp_path / "small.png")
    assert refused.exit_code == 2
    (line,) = error_lines(refused)
    assert line.startswith(f"picard-ad: error: {huge}: image of 20000 x 10000 pixels (200 megapixels) is too large")
    assert "limit now is 100 megapixels" in line
    assert "16 rows x 12 cols" in refused.stdout


def test_notes_are_printed_and_library_warnings_are_not_multi_line():
    path = pydicom_file("SC_rgb_jpeg.dcm")
    result = info(path)
    assert result.exit_code == 0
    assert "  note:           Expected explicit VR, but found implicit VR - using implicit VR for reading" in (
        result.stdout
    )
    assert result.stderr == ""  # the note is not repeated as a warning, and pydicom's warning is not printed
    record = json.loads(info("--json", path).stdout)
    assert record["notes"] == ["Expected explicit VR, but found implicit VR - using implicit VR for reading"]
