"""Turn whatever the user hands us into one uint8 BGR image, or refuse it clearly.

Everything downstream (detectors, alignment, crops) works on ``HxWx3 uint8`` BGR
arrays, so this module is the single gate where paths, bytes, numpy arrays and
PIL images are checked: missing files, empty or truncated data, enormous headers
and PNG chunks longer than the file (refused before any buffer is allocated),
grayscale, alpha, 16-bit and EXIF-rotated photos all end here as a normal image or a
typed error.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Union

import cv2
import numpy as np

from faceage import _env
from faceage.errors import ImageDecodeError, ImageNotFoundError, ImageTooLargeError
from faceage.image_headers import image_size_from_header

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
    image: ImageInput,
    *,
    color_order: ColorOrder = "bgr",
    max_pixels: int | None = None,
    source: str | None = None,
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
        source: the name errors give the input (default: its path, or its kind and size).

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
            read_image_file(Path(os.fsdecode(image))), source=os.fsdecode(image), max_pixels=limit
        )
    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode_image(bytes(image), source=source or describe_input(image), max_pixels=limit)
    if isinstance(image, np.ndarray):
        return _from_array(image, color_order=color_order, max_pixels=limit, source=source)
    if _is_pil_image(image):
        rgb = np.asarray(image.convert("RGB"))
        return _from_array(rgb, color_order="rgb", max_pixels=limit, source=source)
    raise TypeError(
        f"cannot read an image from {type(image).__name__}; pass a path, bytes, "
        "a numpy array or a PIL image"
    )


#: OpenCV's flag for a JPEG decoded at 1/n of its size by libjpeg's DCT scaling.
_REDUCED_FLAGS = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


def is_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff"


def decode_image(
    data: bytes, *, source: str = "<bytes>", max_pixels: int | None = None, reduction: int = 1
) -> np.ndarray:
    """Decode encoded image bytes to BGR uint8, applying the EXIF orientation.

    ``reduction`` (1, 2, 4 or 8; JPEG only, other formats ignore it) decodes the image at
    that fraction of its size, which libjpeg does far faster than a full decode; the
    pixel limit still applies to the full size.
    """
    if reduction not in _REDUCED_FLAGS:
        raise ValueError(f"reduction must be one of {sorted(_REDUCED_FLAGS)}, got {reduction}")
    reduction = reduction if is_jpeg(data) else 1
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
    if data[:8] == _PNG_SIGNATURE:
        overrun = _png_chunk_overrun(data)
        if overrun is not None:
            kind, claimed, left = overrun
            raise ImageDecodeError(
                f"{source}: the PNG data is corrupt or cut short (its {kind} chunk claims "
                f"{claimed} bytes, {left} are left); re-copy or re-download the file"
            )
    buffer = np.frombuffer(data, dtype=np.uint8)
    try:
        # IMREAD_COLOR turns gray, alpha, 16-bit and CMYK into 8-bit BGR and applies EXIF rotation.
        decoded = cv2.imdecode(buffer, _REDUCED_FLAGS[reduction])
    except cv2.error as exc:
        raise ImageDecodeError(f"{source}: cannot decode the image ({exc.msg.strip()})") from exc
    if decoded is None or decoded.size == 0:
        raise ImageDecodeError(
            f"{source}: not a decodable image (unknown format or corrupted data); "
            "faceage reads JPEG, PNG, WebP, BMP and TIFF"
        )
    if reduction == 1 or size is None:  # a reduced decode's header size was checked above
        height, width = decoded.shape[0] * reduction, decoded.shape[1] * reduction
        _check_pixels(width, height, source=source, max_pixels=limit)
    return np.ascontiguousarray(decoded)


def read_image_file(path: Path) -> bytes:
    """The bytes of an image file, or a typed error for what cannot be read as one."""
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


def _from_array(
    array: np.ndarray, *, color_order: ColorOrder, max_pixels: int, source: str | None = None
) -> np.ndarray:
    source = source or describe_input(array)
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


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_chunk_overrun(data: bytes) -> tuple[str, int, int] | None:
    """The first PNG chunk that claims more bytes than the file has left, if any.

    Returns ``(chunk type, claimed length, bytes left)``. OpenCV's PNG reader allocates a
    chunk's claimed length before it reads the chunk, so a few-kilobyte file claiming a
    2 GB chunk costs 2 GB of memory; such a chunk can only be corruption or truncation.
    """
    at = len(_PNG_SIGNATURE)
    while at + 8 <= len(data):
        claimed = int.from_bytes(data[at : at + 4], "big")
        kind = data[at + 4 : at + 8]
        left = max(len(data) - at - 12, 0)  # 4 length + 4 type before the data, 4 CRC after
        if claimed > left:
            return kind.decode("ascii", "backslashreplace"), claimed, left
        if kind == b"IEND":
            return None
        at += 12 + claimed
    return None
