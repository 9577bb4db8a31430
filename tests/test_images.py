"""Image loading: every kind of input becomes uint8 BGR, or a typed error naming it."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceage.errors import ImageDecodeError, ImageNotFoundError, ImageTooLargeError
from faceage.image_headers import image_size_from_header
from faceage.images import load_image


def _png(array: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", array)
    assert ok
    return data.tobytes()


def _jpeg(array: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", array)
    assert ok
    return data.tobytes()


@pytest.fixture
def colour() -> np.ndarray:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, size=(40, 60, 3), dtype=np.uint8)
    image[:, :, 0] = 200  # a blue cast, so channel order mistakes show
    return image


def test_path_bytes_and_array_agree(tmp_path: Path, colour: np.ndarray) -> None:
    data = _png(colour)
    path = tmp_path / "x.png"
    path.write_bytes(data)
    for source in (str(path), path, data, bytearray(data), memoryview(data), colour):
        out = load_image(source)
        assert out.dtype == np.uint8 and out.shape == (40, 60, 3)
        np.testing.assert_array_equal(out, colour)


def test_rgb_array_is_converted(colour: np.ndarray) -> None:
    rgb = colour[:, :, ::-1].copy()
    np.testing.assert_array_equal(load_image(rgb, color_order="rgb"), colour)


def test_pil_image(colour: np.ndarray) -> None:
    pil = pytest.importorskip("PIL.Image")
    image = pil.fromarray(colour[:, :, ::-1].copy())
    np.testing.assert_array_equal(load_image(image), colour)


def test_grayscale_rgba_16bit_float(colour: np.ndarray) -> None:
    gray = colour[:, :, 1]
    assert load_image(_png(gray)).shape == (40, 60, 3)
    assert load_image(gray).shape == (40, 60, 3)
    rgba = np.dstack([colour, np.full(colour.shape[:2], 128, np.uint8)])
    np.testing.assert_array_equal(load_image(_png(rgba)), colour)
    sixteen = colour.astype(np.uint16) * 257
    np.testing.assert_array_equal(load_image(_png(sixteen)), colour)
    np.testing.assert_array_equal(load_image(sixteen), colour)
    floats = colour.astype(np.float32) / 255.0
    np.testing.assert_array_equal(load_image(floats), colour)


def test_exif_orientation_is_applied(colour: np.ndarray) -> None:
    jpeg = _jpeg(colour)
    # An APP1 Exif segment with Orientation = 6 (rotate 90 degrees clockwise).
    ifd = struct.pack(">HHHIHH", 1, 0x0112, 3, 1, 6, 0) + struct.pack(">I", 0)
    tiff = b"MM" + struct.pack(">HI", 42, 8) + ifd
    payload = b"Exif\x00\x00" + tiff
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    rotated = load_image(jpeg[:2] + app1 + jpeg[2:])
    assert rotated.shape == (60, 40, 3)


def test_missing_path_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageNotFoundError, match="no such file"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageNotFoundError, match="directory"):
        load_image(tmp_path)
    with pytest.raises(FileNotFoundError):  # the built-in type still catches it
        load_image(str(tmp_path / "nope.jpg"))


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"hello, I am a text file\n", "not a decodable image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "image"),
    ],
)
def test_not_an_image(data: bytes, message: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.jpg"
    path.write_bytes(data)
    with pytest.raises(ImageDecodeError, match=message) as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_truncated_jpeg(colour: np.ndarray) -> None:
    data = _jpeg(colour)
    with pytest.raises(ImageDecodeError, match="truncated"):
        load_image(data[: len(data) // 2])


def test_enormous_header_is_refused_before_decoding() -> None:
    # A PNG header claiming 100000 x 100000 pixels, with no pixel data behind it.
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    data = b"\x89PNG\r\n\x1a\n" + chunk
    assert image_size_from_header(data) == (100_000, 100_000)
    with pytest.raises(ImageTooLargeError, match="FACEAGE_MAX_PIXELS"):
        load_image(data)


def test_pixel_limit_is_configurable(colour: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACEAGE_MAX_PIXELS", "100")
    with pytest.raises(ImageTooLargeError):
        load_image(_png(colour))
    assert load_image(_png(colour), max_pixels=10_000).shape == (40, 60, 3)


def test_header_sizes_of_common_formats(colour: np.ndarray) -> None:
    for ext in (".png", ".jpg", ".bmp", ".webp"):
        ok, data = cv2.imencode(ext, colour)
        assert ok
        assert image_size_from_header(data.tobytes()) == (60, 40), ext


def test_bad_arrays() -> None:
    with pytest.raises(ImageDecodeError, match="shape"):
        load_image(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(ImageDecodeError, match="no pixels"):
        load_image(np.zeros((0, 4, 3), np.uint8))
    with pytest.raises(ImageDecodeError, match="NaN"):
        load_image(np.full((4, 4, 3), np.nan, np.float32))
    with pytest.raises(TypeError, match="path, bytes"):
        load_image(12345)


def test_tiny_image_decodes() -> None:
    assert load_image(_png(np.zeros((1, 1, 3), np.uint8))).shape == (1, 1, 3)


def test_pil_bytes_io_roundtrip(colour: np.ndarray) -> None:
    pil = pytest.importorskip("PIL.Image")
    buffer = io.BytesIO()
    pil.fromarray(colour[:, :, ::-1].copy()).save(buffer, format="WEBP", lossless=True)
    np.testing.assert_array_equal(load_image(buffer.getvalue()), colour)
