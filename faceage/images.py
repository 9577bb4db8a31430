"""Turn whatever the user hands us into one uint8 BGR image, or refuse it clearly.

Everything downstream (detectors, alignment, crops) works on ``HxWx3 uint8`` BGR
arrays, so this module is the single gate where paths, bytes, numpy arrays and
PIL images are checked: missing files, empty or truncated data, enormous headers
(refused before any pixel buffer is allocated), grayscale, alpha, 16-bit and
EXIF-rotated photos all end here as a normal image or a typed error.
"""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path
from typing import Any, Literal, Union

import cv2
import numpy as np

from faceage import _env
from faceage.errors import ImageDecodeError, ImageNotFoundError, ImageTooLargeError

ColorOrder = Literal["bgr", "rgb"]
ImageInput = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, np.ndarray, Any]

#: File suffixes :func:`faceage.batch.iter_image_files` treats as images.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".jp2", ".pgm", ".ppm"}
)


def describe_input(image: object) -> str:
    """A short, log-safe name for an input: its path, or its kind and size."""
    if isinstance(image, (str, os.PathLike)):
        return os.fsdecode(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return f"<{len(image)} bytes>"
    if isinstance(image, np.ndarray):
        return f"<array shape={image.shape} dtype={image.dtype}>"
    return f"<{type(image).__name__}>"


def load_image(
    image: ImageInput, *, color_order: ColorOrder = "bgr", max_pixels: int | None = None
) -> np.ndarray:
    """Return ``image`` as a contiguous ``HxWx3`` uint8 BGR array.

    Args:
        image: a path (``str`` or ``os.PathLike``), encoded bytes (JPEG, PNG, WebP,
            BMP, TIFF, ...), a numpy array (``HxW``, ``HxWx3`` or ``HxWx4``; uint8,
            uint16 or float in ``[0, 1]``) or a ``PIL.Image.Image``.
        color_order: channel order of a numpy array input, ``"bgr"`` (OpenCV) or
            ``"rgb"`` (PIL, imageio, matplotlib). Ignored for other inputs.
        max_pixels: largest width*height accepted; defaults to ``$FACEAGE_MAX_PIXELS``
            or 100 megapixels.

    Raises:
        ImageNotFoundError: a path that does not exist or is a directory.
        ImageDecodeError: data that is not a decodable, complete image.
        ImageTooLargeError: an image above ``max_pixels``.
    """
    limit = _env.max_pixels() if max_pixels is None else max_pixels
    if color_order not in ("bgr", "rgb"):
        raise ValueError(f"color_order must be 'bgr' or 'rgb', got {color_order!r}")
    if isinstance(image, (str, os.PathLike)):
        return decode_image(
            _read_file(Path(os.fsdecode(image))), source=os.fsdecode(image), max_pixels=limit
        )
    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode_image(bytes(image), source=describe_input(image), max_pixels=limit)
    if isinstance(image, np.ndarray):
        return _from_array(image, color_order=color_order, max_pixels=limit)
    if _is_pil_image(image):
        rgb = np.asarray(image.convert("RGB"))
        return _from_array(rgb, color_order="rgb", max_pixels=limit)
    raise TypeError(
        f"cannot read an image from {type(image).__name__}; pass a path, bytes, "
        "a numpy array or a PIL image"
    )


def decode_image(
    data: bytes, *, source: str = "<bytes>", max_pixels: int | None = None
) -> np.ndarray:
    """Decode encoded image bytes to BGR uint8, applying the EXIF orientation."""
    limit = _env.max_pixels() if max_pixels is None else max_pixels
    if not data:
        raise ImageDecodeError(f"{source}: the file is empty (0 bytes); pass a JPEG/PNG/WebP image")
    size = image_size_from_header(data)
    if size is not None:
        _check_pixels(size[0], size[1], source=source, max_pixels=limit)
    if data[:2] == b"\xff\xd8" and _jpeg_is_truncated(data):
        raise ImageDecodeError(
            f"{source}: the JPEG data is truncated (no end-of-image marker); "
            "the file was cut short, re-copy or re-download it"
        )
    buffer = np.frombuffer(data, dtype=np.uint8)
    try:
        # IMREAD_COLOR turns gray, alpha, 16-bit and CMYK into 8-bit BGR and applies EXIF rotation.
        decoded = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ImageDecodeError(f"{source}: cannot decode the image ({exc.msg.strip()})") from exc
    if decoded is None or decoded.size == 0:
        raise ImageDecodeError(
            f"{source}: not a decodable image (unknown format or corrupted data); "
            "faceage reads JPEG, PNG, WebP, BMP and TIFF"
        )
    _check_pixels(decoded.shape[1], decoded.shape[0], source=source, max_pixels=limit)
    return np.ascontiguousarray(decoded)


def _read_file(path: Path) -> bytes:
    if not path.exists():
        raise ImageNotFoundError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise ImageNotFoundError(f"{path}: is a directory, not an image file")
    if not path.is_file():  # reading a FIFO blocks for ever, /dev/zero never ends
        raise ImageDecodeError(
            f"{path}: not a regular file (a pipe, socket or device); pass an image file"
        )
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:  # deleted since the checks above
        raise ImageNotFoundError(f"{path}: no such file (deleted while reading)") from exc
    except OSError as exc:
        raise ImageDecodeError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc


def _check_pixels(width: int, height: int, *, source: str, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"{source}: the image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{source}: {width}x{height} = {width * height} pixels is over the limit of "
            f"{max_pixels}; downscale the image or raise ${_env.FACEAGE_MAX_PIXELS_ENV}"
        )


def _from_array(array: np.ndarray, *, color_order: ColorOrder, max_pixels: int) -> np.ndarray:
    source = describe_input(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageDecodeError(
            f"{source}: expected an HxW, HxWx3 or HxWx4 array, got shape {array.shape}"
        )
    _check_pixels(array.shape[1], array.shape[0], source=source, max_pixels=max_pixels)
    array = _to_uint8(array, source=source)
    if array.ndim == 2:
        return cv2.cvtColor(array, cv2.COLOR_GRAY2BGR)
    if array.shape[2] == 4:
        code = cv2.COLOR_BGRA2BGR if color_order == "bgr" else cv2.COLOR_RGBA2BGR
        return cv2.cvtColor(array, code)
    if color_order == "rgb":
        return cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    return np.ascontiguousarray(array)


def _to_uint8(array: np.ndarray, *, source: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return (array >> 8).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise ImageDecodeError(f"{source}: the float array holds NaN or infinite values")
        return np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    raise ImageDecodeError(
        f"{source}: unsupported dtype {array.dtype}; pass uint8, uint16 or float in [0, 1]"
    )


def _is_pil_image(obj: object) -> bool:
    return any(
        cls.__module__.startswith("PIL.") and cls.__name__ == "Image" for cls in type(obj).__mro__
    )


def _jpeg_is_truncated(data: bytes) -> bool:
    # Entropy-coded data stuffs every 0xFF with 0x00, so an end-of-image marker after
    # the last start-of-scan marker is only there when the file is complete.
    last_scan = data.rfind(b"\xff\xda")
    return data.rfind(b"\xff\xd9") < max(last_scan, 0)


def image_size_from_header(data: bytes) -> tuple[int, int] | None:
    """Read ``(width, height)`` from an image header without decoding.

    Knows every format OpenCV decodes: PNG, JPEG, GIF, BMP, WebP, TIFF (and BigTIFF),
    JPEG 2000 (JP2 and raw codestream), PBM/PGM/PPM/PAM, PFM, Sun raster, Radiance HDR
    and AVIF, so a small file claiming a huge image (a decompression bomb) is refused
    before OpenCV allocates its pixels. Returns None when the format is unknown or the
    header cannot be parsed; the decoder then gets the final word.
    """
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
            width, height = struct.unpack(">II", data[16:24])
            return int(width), int(height)
        if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
            width, height = struct.unpack("<HH", data[6:10])
            return int(width), int(height)
        if data[:2] == b"BM" and len(data) >= 26:
            if struct.unpack("<I", data[14:18])[0] == 12:  # OS/2 core header: 16-bit sizes
                width, height = struct.unpack("<HH", data[18:22])
            else:
                width, height = struct.unpack("<ii", data[18:26])
            return abs(int(width)), abs(int(height))
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp_size(data)
        if data[:2] == b"\xff\xd8":
            return _jpeg_size(data)
        if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
            return _tiff_size(data)
        if data[:12] == _JP2_SIGNATURE or data[:4] == b"\xff\x4f\xff\x51":
            return _jpeg2000_size(data)
        if data[:1] == b"P" and data[1:2] in b"1234567Ff" and len(data) >= 2:
            return _netpbm_size(data)
        if data[:4] == b"\x59\xa6\x6a\x95" and len(data) >= 12:
            width, height = struct.unpack(">II", data[4:12])
            return int(width), int(height)
        if data[:10] == b"#?RADIANCE" or data[:6] == b"#?RGBE":
            return _radiance_size(data)
        if data[4:8] == b"ftyp":
            return _isobmff_size(data)
    except (struct.error, ValueError):
        return None
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        width = 1 + int.from_bytes(data[24:27], "little")
        height = 1 + int.from_bytes(data[27:30], "little")
        return width, height
    if chunk == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack("<HH", data[26:30])
        return int(width) & 0x3FFF, int(height) & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


_JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    offset = 2
    while offset + 4 <= len(data):
        if data[offset] != 0xFF:
            # libjpeg skips stray bytes before a marker, so a frame header hidden behind
            # them is still decoded: look for it the same way.
            offset = data.find(b"\xff", offset)
            if offset < 0:
                return None
            continue
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            offset += 2
            continue
        (length,) = struct.unpack(">H", data[offset + 2 : offset + 4])
        if marker in _JPEG_SOF_MARKERS and offset + 9 <= len(data):
            height, width = struct.unpack(">HH", data[offset + 5 : offset + 9])
            return int(width), int(height)
        if marker == 0xDA:  # start of scan before any frame header
            return None
        offset += 2 + length
    return None


_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
# How far into a file the size-bearing boxes of JPEG 2000 and AVIF are looked for.
_BOX_SEARCH_BYTES = 1 << 16


def _largest(sizes: list[tuple[int, int]]) -> tuple[int, int] | None:
    return max(sizes, key=lambda size: size[0] * size[1]) if sizes else None


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    # The first IFD is the image OpenCV decodes; its ImageWidth (256) and ImageLength (257).
    order = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\x00", b"\x00+")
    if big:
        (offset,) = struct.unpack(order + "Q", data[8:16])
        (count,) = struct.unpack(order + "Q", data[offset : offset + 8])
        entries, entry_size, head = offset + 8, 20, order + "HHQ"
    else:
        (offset,) = struct.unpack(order + "I", data[4:8])
        (count,) = struct.unpack(order + "H", data[offset : offset + 2])
        entries, entry_size, head = offset + 2, 12, order + "HHI"
    found: dict[int, int] = {}
    for index in range(min(count, 4096)):
        start = entries + index * entry_size
        tag, kind, _ = struct.unpack(head, data[start : start + struct.calcsize(head)])
        if tag in (256, 257):
            value_at = start + struct.calcsize(head)
            fmt = {3: "H", 4: "I", 16: "Q"}.get(kind)
            if fmt is None:
                return None
            (found[tag],) = struct.unpack(
                order + fmt, data[value_at : value_at + struct.calcsize(fmt)]
            )
    if 256 in found and 257 in found:
        return found[256], found[257]
    return None


def _jpeg2000_size(data: bytes) -> tuple[int, int] | None:
    # OpenJPEG sizes the image from the codestream's SIZ segment; a JP2 file also states
    # it in its ihdr box. Both are checked, so neither can understate the other.
    head = data[:_BOX_SEARCH_BYTES]
    sizes: list[tuple[int, int]] = []
    ihdr = head.find(b"ihdr")
    if ihdr >= 4:
        height, width = struct.unpack(">II", head[ihdr + 4 : ihdr + 12])
        sizes.append((int(width), int(height)))
    siz = head.find(b"\xff\x4f\xff\x51")
    if siz >= 0:
        xsiz, ysiz, x0, y0 = struct.unpack(">IIII", head[siz + 8 : siz + 24])
        sizes.append((max(int(xsiz) - int(x0), 0), max(int(ysiz) - int(y0), 0)))
    return _largest(sizes)


_NETPBM_TOKEN = re.compile(rb"(?:\s|#[^\n]*\n?)*(\S+)")


def _netpbm_size(data: bytes) -> tuple[int, int] | None:
    head = data[:4096]
    if head[1:2] == b"7":  # PAM: WIDTH and HEIGHT lines before ENDHDR
        width = re.search(rb"\nWIDTH\s+(\d+)", head)
        height = re.search(rb"\nHEIGHT\s+(\d+)", head)
        if width is None or height is None:
            return None
        return int(width[1]), int(height[1])
    tokens = []
    position = 2
    for _ in range(2):  # width, then height, after the magic number; comments skipped
        match = _NETPBM_TOKEN.match(head, position)
        if match is None:
            return None
        tokens.append(int(match[1]))
        position = match.end()
    return tokens[0], tokens[1]


_RADIANCE_RESOLUTION = re.compile(rb"\n([-+])([XY]) +(\d+) +([-+])([XY]) +(\d+)")


def _radiance_size(data: bytes) -> tuple[int, int] | None:
    match = _RADIANCE_RESOLUTION.search(data[:8192])
    if match is None or match[2] == match[5]:
        return None
    first, second = int(match[3]), int(match[6])
    return (second, first) if match[2] == b"Y" else (first, second)


def _isobmff_size(data: bytes) -> tuple[int, int] | None:
    # AVIF (and HEIF): every image item states its size in an 'ispe' property.
    head = data[:_BOX_SEARCH_BYTES]
    if head[8:12] not in (b"avif", b"avis", b"heic", b"heix", b"mif1", b"msf1"):
        return None
    sizes = []
    start = head.find(b"ispe")
    while start >= 0:
        width, height = struct.unpack(">II", head[start + 8 : start + 16])
        sizes.append((int(width), int(height)))
        start = head.find(b"ispe", start + 4)
    return _largest(sizes)
