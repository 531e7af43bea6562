"""Large images: picard-ad's memory-based pixel limit replaces Pillow's fixed decompression-bomb limit."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from picard_ad import memory as process_memory
from picard_ad.errors import InputError
from picard_ad.io import base, read_header, read_image
from picard_ad.io.writers import write_png

GIB = 2**30


def write_blank_png(path: Path, width: int, height: int) -> Path:
    """A 1-bit black PNG of any size in kilobytes, written row by row (never held in memory)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


@pytest.fixture
def memory(monkeypatch):
    """Set the memory the limit sees, in bytes."""

    def set_memory(available: int | None) -> None:
        monkeypatch.setattr(base, "available_memory", lambda: available)

    return set_memory


def test_header_of_an_image_over_pillows_limit_reads_when_memory_allows(tmp_path, memory):
    path = write_blank_png(tmp_path / "huge.png", 20_000, 10_000)  # 200 megapixels, over Pillow's 179
    assert path.stat().st_size < 100_000
    memory(200_000_000 * base.BYTES_PER_PIXEL)  # exactly enough
    header = read_header(path)
    assert (header.rows, header.cols, header.stored_dtype) == (10_000, 20_000, "bool")


def test_image_over_the_memory_limit_is_refused_with_the_rule(tmp_path, memory):
    path = write_blank_png(tmp_path / "huge.png", 20_000, 10_000)
    memory(3 * GIB)  # 3 GiB / 24 bytes = 134 megapixels
    with pytest.raises(InputError) as error:
        read_header(path)
    assert str(error.value) == (
        f"{path}: image of 20000 x 10000 pixels (200 megapixels) is too large for the memory available: reading "
        f"and scoring it needs about 4.5 GiB (24 bytes per pixel), 3.0 GiB is available, so the limit now is 134 "
        "megapixels"
    )
    with pytest.raises(InputError, match="too large for the memory available"):
        read_image(path)


def test_pillows_own_limit_no_longer_refuses_decoding(tmp_path, monkeypatch, memory):
    # Pillow's limit scaled down to 100 pixels stands for its 179-megapixel one: a 64 x 48 image is over twice it.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    memory(GIB)
    values = np.linspace(0, 1, 64 * 48).reshape(48, 64)
    write_png(tmp_path / "a.png", values, bit_depth=16)
    image = read_image(tmp_path / "a.png")
    np.testing.assert_allclose(image.pixels, values, atol=1 / 65535)
    assert Image.MAX_IMAGE_PIXELS == 100  # lifted only while picard-ad reads


def test_available_memory_is_the_least_of_what_is_known(monkeypatch):
    monkeypatch.setattr(process_memory, "meminfo_available", lambda: 8 * GIB)
    monkeypatch.setattr(process_memory, "cgroup_available", lambda: 5 * GIB)
    monkeypatch.setattr(process_memory, "address_space_available", lambda: None)
    assert process_memory.available_memory() == 5 * GIB
    monkeypatch.setattr(process_memory, "address_space_available", lambda: 0)
    assert process_memory.available_memory() == 0
    monkeypatch.setattr(process_memory, "meminfo_available", lambda: None)
    monkeypatch.setattr(process_memory, "cgroup_available", lambda: None)
    monkeypatch.setattr(process_memory, "address_space_available", lambda: None)
    assert process_memory.available_memory() is None  # nothing known: no limit


def test_meminfo_is_parsed_exactly_and_a_malformed_file_is_reported(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       32000000 kB\nMemFree:  100 kB\nMemAvailable:   12345678 kB\n")
    assert process_memory.meminfo_available(str(meminfo)) == 12345678 * 1024
    meminfo.write_text("MemTotal:       32000000 kB\nMemAvailable:   lots kB\n")
    assert process_memory.meminfo_available(str(meminfo)) is None
    meminfo.write_text("MemTotal:       32000000 kB\n")
    assert process_memory.meminfo_available(str(meminfo)) is None
    assert process_memory.meminfo_available(str(tmp_path / "absent")) is None


def test_this_machine_reports_its_memory_without_a_fallback():
    real = process_memory.meminfo_available()
    assert real is not None and 2**27 < real < 2**50  # Linux CI: /proc/meminfo is there and parsed
