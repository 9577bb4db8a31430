"""Reliability, input side: whatever bytes or file a user hands faceage, the answer is an
image, a typed :class:`~faceage.errors.FaceageError` or an error row; never another
exception, a crash, a hang or a huge allocation.

The fuzz budget is ``$FACEAGE_FUZZ_EXAMPLES`` hypothesis examples per fuzz test (200 by
default, the CI budget); ``FACEAGE_FUZZ_EXAMPLES=5000 pytest tests/test_reliability_inputs.py``
runs a long campaign.
"""

from __future__ import annotations

import contextlib
import faulthandler
import io
import os
import re
import signal
import struct
import sys
import zlib
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faceage import errors
from faceage.errors import FaceageError, ImageDecodeError, ImageNotFoundError, ImageTooLargeError
from faceage.estimator import AgeEstimator
from faceage.image_headers import image_size_from_header
from faceage.images import load_image
from faceage.spec import load_spec_file
from tests._shared import utkface_image, utkface_rows
from tests.tiny_models import write_tiny_model

Image = pytest.importorskip("PIL.Image")

#: Hypothesis examples per fuzz test: 200 in the default run (CI), more on demand.
FUZZ_EXAMPLES = int(os.environ.get("FACEAGE_FUZZ_EXAMPLES", "200"))
#: Pixel limit while fuzzing, so a mutated header cannot make a legal 100 MP allocation.
FUZZ_MAX_PIXELS = 1_000_000
#: One example may take this long before it counts as a hang (then the process is
#: killed with a traceback after HARD_TIMEOUT_S, should the hang be inside C code).
SOFT_TIMEOUT_S = 20
HARD_TIMEOUT_S = 120
#: Peak memory one example may add. A 100 MP image is 300 MB; a bomb stands out.
PEAK_GROWTH_LIMIT_MB = 150

FUZZ_SETTINGS = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=timedelta(seconds=10),
    database=None,  # no .hypothesis folder in the checkout; failures print their seed
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: Names of every typed error faceage raises on purpose (what error rows may say).
FACEAGE_ERROR_NAMES = frozenset(
    name
    for name, value in vars(errors).items()
    if isinstance(value, type) and issubclass(value, FaceageError)
)


# --- guards -----------------------------------------------------------------------------


class ExampleTimeout(Exception):
    """Raised in the main thread when one example runs past SOFT_TIMEOUT_S."""


@contextlib.contextmanager
def time_limit(seconds: float = SOFT_TIMEOUT_S) -> Iterator[None]:
    """Fail an example that hangs: SIGALRM for Python code, faulthandler for C code."""

    def expire(signum: int, frame: object) -> None:
        raise ExampleTimeout(f"one example ran past {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    faulthandler.dump_traceback_later(HARD_TIMEOUT_S, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _peak_rss_mb() -> float | None:
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(match[1]) / 1024 if match else None


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM := VmRSS
    except OSError:
        return False
    return True


@contextlib.contextmanager
def peak_growth_below(limit_mb: float) -> Iterator[None]:
    """Fail when the block raises the process's peak RSS by ``limit_mb`` or more (Linux)."""
    measured = _reset_peak_rss()
    before = _peak_rss_mb()
    yield
    after = _peak_rss_mb()
    if measured and before is not None and after is not None:
        assert after - before < limit_mb, f"peak RSS grew by {after - before:.0f} MB"


@contextlib.contextmanager
def fuzz_guard() -> Iterator[None]:
    with (
        mock.patch.dict(os.environ, {"FACEAGE_MAX_PIXELS": str(FUZZ_MAX_PIXELS)}),
        time_limit(),
        peak_growth_below(PEAK_GROWTH_LIMIT_MB),
    ):
        yield


def check_image_or_typed_error(load: Callable[[], np.ndarray], limit: int) -> None:
    """``load()`` gives a valid BGR image within ``limit`` pixels or a FaceageError."""
    try:
        image = load()
    except FaceageError as exc:
        assert str(exc)  # every error says something
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.flags.c_contiguous
    assert 0 < image.shape[0] * image.shape[1] <= limit


# --- seeds: one real face in every format and pixel layout ------------------------------


def _encode(image: Any, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _face_rgb(size: int | None = None) -> Any:
    face = Image.open(utkface_image(utkface_rows("test", limit=1)[0])).convert("RGB")
    return face if size is None else face.resize((size, size))


def _make_seeds() -> dict[str, bytes]:
    face = _face_rgb(48)  # small, so each fuzz example decodes fast
    gray16 = Image.fromarray(np.asarray(face.convert("L")).astype(np.uint16) * 257)
    seeds = {
        "jpeg": _encode(face, "JPEG"),
        "jpeg-progressive": _encode(face, "JPEG", progressive=True),
        "jpeg-cmyk": _encode(face.convert("CMYK"), "JPEG"),
        "jpeg-gray": _encode(face.convert("L"), "JPEG"),
        "png": _encode(face, "PNG"),
        "png-rgba": _encode(face.convert("RGBA"), "PNG"),
        "png-16bit": _encode(gray16, "PNG"),
        "png-palette": _encode(face.convert("P"), "PNG"),
        "webp": _encode(face, "WEBP"),
        "webp-lossless": _encode(face, "WEBP", lossless=True),
        "bmp": _encode(face, "BMP"),
        "gif": _encode(face, "GIF"),
        "tiff": _encode(face, "TIFF", compression="tiff_deflate"),
        "tiff-16bit": _encode(gray16, "TIFF"),
        "jp2": _encode(face, "JPEG2000"),
        "ppm": _encode(face, "PPM"),
    }
    with contextlib.suppress(KeyError, OSError, ValueError):  # Pillow built without AVIF
        seeds["avif"] = _encode(face, "AVIF")
    return seeds


SEEDS = _make_seeds()
SEED_NAMES = sorted(SEEDS)
MAGIC_PREFIXES = [
    b"\xff\xd8\xff",
    b"\x89PNG\r\n\x1a\n",
    b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
    b"\x00\x00\x00\x0cjP  \r\n\x87\n",
    b"\xff\x4f\xff\x51",
    b"P6\n",
    b"PF\n",
    b"\x59\xa6\x6a\x95",
    b"#?RADIANCE\n",
    b"\x00\x00\x00\x1cftypavif",
]


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    """A seed image with 1-4 mutations: bit flips, cuts, insertions, deletions, splices
    and header fields overwritten with extreme values."""
    data = bytearray(SEEDS[draw(st.sampled_from(SEED_NAMES))])
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "extreme", "splice"]))
        at = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 256))]
        elif op == "extreme":  # what a crafted header does to widths, lengths, offsets
            value = draw(st.sampled_from([0, 1, 0x7F, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF]))
            width = draw(st.sampled_from([1, 2, 4]))
            data[at : at + width] = value.to_bytes(4, "big")[-width:]
        else:
            other = SEEDS[draw(st.sampled_from(SEED_NAMES))]
            data[at:] = other[draw(st.integers(0, len(other) - 1)) :]
    return bytes(data)


random_bytes = st.one_of(
    st.binary(max_size=4096),
    st.builds(lambda magic, rest: magic + rest, st.sampled_from(MAGIC_PREFIXES), st.binary()),
)


# --- the tiny estimators ----------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _tiny(directory: Path, detector: str | None) -> AgeEstimator:
    model = write_tiny_model(directory / "tiny-model", gender=True)
    spec = load_spec_file(model / "faceage.json")
    return AgeEstimator(spec, model / "model.onnx", detector=detector, intra_op_num_threads=1)


@pytest.fixture(scope="module")
def estimators(fuzz_dir: Path) -> dict[str, AgeEstimator]:
    return {"none": _tiny(fuzz_dir, None), "retinaface": _tiny(fuzz_dir, "retinaface")}


# --- fuzzing ----------------------------------------------------------------------------


@FUZZ_SETTINGS
@given(data=mutated_images())
def test_fuzz_load_image_with_mutated_images(data: bytes) -> None:
    with fuzz_guard():
        check_image_or_typed_error(lambda: load_image(data), FUZZ_MAX_PIXELS)


@FUZZ_SETTINGS
@given(data=random_bytes)
def test_fuzz_load_image_with_random_bytes(data: bytes) -> None:
    with fuzz_guard():
        check_image_or_typed_error(lambda: load_image(data), FUZZ_MAX_PIXELS)


def _check_predict(estimator: AgeEstimator, data: bytes, path: Path) -> None:
    path.write_bytes(data)
    for source in (data, path):
        try:
            faces = estimator.predict(source)
        except FaceageError:
            faces = None
        for face in faces or []:
            assert 0 <= face.age <= 116
    results = estimator.predict_batch([data, str(path)])
    assert len(results) == 2
    for result in results:
        assert result.ok or (result.error and result.error_type in FACEAGE_ERROR_NAMES), result


@pytest.mark.parametrize("detector", ["none", "retinaface"])
def test_fuzz_predict_with_mutated_images(
    estimators: dict[str, AgeEstimator], fuzz_dir: Path, detector: str
) -> None:
    estimator = estimators[detector]
    path = fuzz_dir / f"fuzzed-{detector}.jpg"

    @FUZZ_SETTINGS
    @given(data=st.one_of(mutated_images(), random_bytes))
    def run(data: bytes) -> None:
        with fuzz_guard():
            _check_predict(estimator, data, path)

    run()


# --- named cases: what a photo folder really holds --------------------------------------


def test_every_seed_decodes_to_the_face() -> None:
    reference = np.asarray(_face_rgb(48))[:, :, ::-1].astype(int)
    for name, data in SEEDS.items():
        image = load_image(data)
        assert image.shape == (48, 48, 3), name
        # Grey, palette and 16-bit copies lose colour, not the picture.
        tolerance = 20 if any(k in name for k in ("gray", "16bit", "palette")) else 6
        assert np.abs(image.astype(int) - reference).mean() < tolerance, name


@pytest.mark.parametrize("name", ["jpeg", "jpeg-progressive", "png", "webp", "webp-lossless"])
@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, 0.99])
def test_truncated_files_are_decode_errors(tmp_path: Path, name: str, fraction: float) -> None:
    data = SEEDS[name]
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ImageDecodeError) as caught:
        load_image(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("name", SEED_NAMES)
def test_corrupted_middles_never_escape(name: str) -> None:
    data = bytearray(SEEDS[name])
    rng = np.random.default_rng(len(data))
    for _ in range(20):
        corrupt = bytearray(data)
        start = int(rng.integers(len(data) // 4, len(data)))
        corrupt[start : start + 32] = rng.integers(0, 256, 32, dtype=np.uint8).tobytes()
        check_image_or_typed_error(lambda c=bytes(corrupt): load_image(c), 10**8)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("empty.jpg", b""),
        ("text.jpg", b"this is a text file named like a photo\n"),
        ("html.png", b"<!doctype html><title>404 Not Found</title>"),
        ("zeros.webp", bytes(4096)),
        ("json.jpg", b'{"not": "an image"}'),
    ],
)
def test_files_that_are_not_images(tmp_path: Path, name: str, data: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ImageDecodeError, match=re.escape(str(path))):
        load_image(path)


# A header for every format OpenCV decodes, claiming WIDTH x HEIGHT and holding no pixels.
WIDTH, HEIGHT = 20_000, 15_000  # 300 MP: over the default 100 MP limit


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + crc


def _jpeg_header(width: int, height: int, *, junk: bytes = b"") -> bytes:
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3)
    sof += b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8" + junk + sof + b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00" + b"\xff\xd9"


def _tiff_header(width: int, height: int, order: str) -> bytes:
    entries = [(256, 4, width), (257, 4, height), (258, 3, 8), (262, 3, 2), (277, 3, 3)]
    magic = b"II*\x00" if order == "<" else b"MM\x00*"
    ifd = struct.pack(order + "H", len(entries))
    for tag, kind, value in entries:
        if kind == 4:
            ifd += struct.pack(order + "HHII", tag, kind, 1, value)
        else:
            ifd += struct.pack(order + "HHIHH", tag, kind, 1, value, 0)
    return magic + struct.pack(order + "I", 8) + ifd + struct.pack(order + "I", 0)


def _bigtiff_header(width: int, height: int) -> bytes:
    entries = [(256, 16, width), (257, 16, height)]
    ifd = struct.pack("<Q", len(entries))
    for tag, kind, value in entries:
        ifd += struct.pack("<HHQQ", tag, kind, 1, value)
    return b"II+\x00" + struct.pack("<HHQ", 8, 0, 16) + ifd + struct.pack("<Q", 0)


def _j2k_siz(width: int, height: int) -> bytes:
    siz = struct.pack(">HIIIIIIIIH", 0, width, height, 0, 0, width, height, 0, 0, 3)
    return b"\xff\x4f\xff\x51" + struct.pack(">H", len(siz) + 2) + siz + b"\x07\x01\x01" * 3


def _jp2_header(width: int, height: int, *, ihdr_size: tuple[int, int] | None = None) -> bytes:
    box_w, box_h = ihdr_size or (width, height)
    ihdr = b"ihdr" + struct.pack(">IIHBBBB", box_h, box_w, 3, 7, 7, 0, 0)
    jp2h = b"jp2h" + struct.pack(">I", len(ihdr) + 4) + ihdr
    codestream = _j2k_siz(width, height)
    return (
        b"\x00\x00\x00\x0cjP  \r\n\x87\n"
        + struct.pack(">I", 20)
        + b"ftypjp2 \x00\x00\x00\x00jp2 "
        + struct.pack(">I", len(jp2h) + 4)
        + jp2h
        + struct.pack(">I", len(codestream) + 8)
        + b"jp2c"
        + codestream
    )


def _avif_header(width: int, height: int) -> bytes:
    ispe = b"ispe" + b"\x00\x00\x00\x00" + struct.pack(">II", width, height)
    return (
        struct.pack(">I", 28)
        + b"ftypavif\x00\x00\x00\x00avifmif1"
        + struct.pack(">I", len(ispe) + 4)
        + ispe
    )


ENORMOUS_HEADERS: dict[str, Callable[[int, int], bytes]] = {
    "png": _png_header,
    "jpeg": _jpeg_header,
    "jpeg-stray-bytes-before-frame": lambda w, h: _jpeg_header(w, h, junk=b"\x00\x13\x37"),
    "gif": lambda w, h: b"GIF89a" + struct.pack("<HH", w, h) + b"\x00\x00\x00;",
    "bmp": lambda w, h: b"BM" + bytes(12) + struct.pack("<Iii", 40, w, h) + bytes(28),
    "bmp-top-down": lambda w, h: b"BM" + bytes(12) + struct.pack("<Iii", 40, w, -h) + bytes(28),
    "webp-vp8x": lambda w, h: (
        b"RIFF\x00\x00\x00\x00WEBPVP8X"
        + bytes(8)
        + (w - 1).to_bytes(3, "little")
        + (h - 1).to_bytes(3, "little")
    ),
    "tiff-little-endian": lambda w, h: _tiff_header(w, h, "<"),
    "tiff-big-endian": lambda w, h: _tiff_header(w, h, ">"),
    "bigtiff": _bigtiff_header,
    "jp2": _jp2_header,
    "jp2-small-ihdr-big-codestream": lambda w, h: _jp2_header(w, h, ihdr_size=(10, 10)),
    "j2k-codestream": _j2k_siz,
    "ppm": lambda w, h: b"P6\n# a comment\n%d %d\n255\n" % (w, h),
    "pgm": lambda w, h: b"P5 %d %d 255\n" % (w, h),
    "pbm": lambda w, h: b"P4\n%d\n%d\n" % (w, h),
    "pam": lambda w, h: b"P7\nWIDTH %d\nHEIGHT %d\nDEPTH 3\nMAXVAL 255\nENDHDR\n" % (w, h),
    "pfm": lambda w, h: b"PF\n%d %d\n-1.0\n" % (w, h),
    "sun-raster": lambda w, h: struct.pack(">IIIIIIII", 0x59A66A95, w, h, 24, 0, 1, 0, 0),
    "radiance-hdr": lambda w, h: b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y %d +X %d\n" % (h, w),
    "avif": _avif_header,
}


@pytest.mark.parametrize("fmt", sorted(ENORMOUS_HEADERS))
def test_enormous_headers_are_refused_before_decoding(
    fmt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = ENORMOUS_HEADERS[fmt](WIDTH, HEIGHT)
    assert image_size_from_header(data) == (WIDTH, HEIGHT)

    def never(*args: object) -> None:
        raise AssertionError("the decoder ran on an image over the pixel limit")

    monkeypatch.setattr(cv2, "imdecode", never)
    path = tmp_path / f"huge.{fmt}"
    path.write_bytes(data)
    for source in (data, path):
        with pytest.raises(ImageTooLargeError, match="FACEAGE_MAX_PIXELS") as caught:
            load_image(source)
        assert f"{WIDTH}x{HEIGHT}" in str(caught.value)


@pytest.mark.parametrize("fmt", ["png", "jpeg", "tiff-little-endian", "ppm", "jp2"])
def test_pixel_limit_follows_the_environment(fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data = ENORMOUS_HEADERS[fmt](2000, 1000)  # 2 MP: fine by default, no pixels behind it
    with pytest.raises(ImageDecodeError) as caught:
        load_image(data)
    assert not isinstance(caught.value, ImageTooLargeError)
    monkeypatch.setenv("FACEAGE_MAX_PIXELS", "1000000")
    with pytest.raises(ImageTooLargeError, match="2000x1000"):
        load_image(data)


@pytest.mark.skipif(_peak_rss_mb() is None or not _reset_peak_rss(), reason="needs Linux /proc")
def test_a_compressed_bomb_costs_no_memory() -> None:
    # 4 KB of CCITT group 4 TIFF that decodes to 11000 x 11000 pixels (363 MB as BGR).
    buffer = io.BytesIO()
    Image.new("1", (11_000, 11_000)).save(buffer, format="TIFF", compression="group4")
    bomb = buffer.getvalue()
    assert len(bomb) < 100_000
    with peak_growth_below(50), pytest.raises(ImageTooLargeError, match="11000x11000"):
        load_image(bomb)


@pytest.mark.skipif(_peak_rss_mb() is None or not _reset_peak_rss(), reason="needs Linux /proc")
@pytest.mark.parametrize("extra", [1, 0x7FFFFFFF], ids=["one-byte-over", "2GB"])
def test_a_png_chunk_longer_than_the_file_costs_no_memory(tmp_path: Path, extra: int) -> None:
    # OpenCV allocates a PNG chunk's stated length before reading it: a 5 KB file whose
    # IDAT claims 2 GB cost 2 GB (found by the fuzz test above).
    data = bytearray(SEEDS["png"])
    at = data.index(b"IDAT") - 4
    length = int.from_bytes(data[at : at + 4], "big")
    data[at : at + 4] = min(len(data) - at - 12 + extra, 0x7FFFFFFF).to_bytes(4, "big")
    assert length < len(data) - at - 12 + extra
    path = tmp_path / "forged.png"
    path.write_bytes(bytes(data))
    for source in (bytes(data), path):
        with peak_growth_below(50), pytest.raises(ImageDecodeError, match="IDAT chunk") as caught:
            load_image(source)
        assert "re-download" in str(caught.value)
    assert str(path) in str(caught.value)


# --- pixel layouts and orientation, through the whole pipeline --------------------------


@pytest.mark.parametrize(
    "layout", ["rgb", "cmyk-jpeg", "gray-jpeg", "rgba-png", "16bit-png", "16bit-tiff", "la-png"]
)
def test_every_pixel_layout_finds_the_face(
    estimators: dict[str, AgeEstimator], layout: str
) -> None:
    face = _face_rgb()
    gray16 = Image.fromarray(np.asarray(face.convert("L")).astype(np.uint16) * 257)
    data = {
        "rgb": lambda: _encode(face, "PNG"),
        "cmyk-jpeg": lambda: _encode(face.convert("CMYK"), "JPEG", quality=95),
        "gray-jpeg": lambda: _encode(face.convert("L"), "JPEG", quality=95),
        "rgba-png": lambda: _encode(face.convert("RGBA"), "PNG"),
        "16bit-png": lambda: _encode(gray16, "PNG"),
        "16bit-tiff": lambda: _encode(gray16, "TIFF"),
        "la-png": lambda: _encode(face.convert("LA"), "PNG"),
    }[layout]()
    reference = estimators["retinaface"].predict(_encode(face, "PNG"))
    (found,) = estimators["retinaface"].predict(data)
    assert np.allclose(found.box, reference[0].box, atol=6), (found.box, reference[0].box)
    assert len(estimators["none"].predict(data)) == 1


def _exif_rotated_jpeg(upright: Any) -> bytes:
    """The JPEG a phone writes: pixels stored turned 90 degrees, EXIF Orientation 6
    ("rotate 90 clockwise to display"), so viewers show ``upright``."""
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # counter-clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    return _encode(stored, "JPEG", quality=95, exif=exif.tobytes())


def test_exif_rotated_photo_is_read_upright(estimators: dict[str, AgeEstimator]) -> None:
    face = _face_rgb()
    upright = Image.new("RGB", (200, 320), (90, 90, 90))  # portrait, so turns show
    upright.paste(face, (0, 0))
    data = _exif_rotated_jpeg(upright)
    stored = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_IGNORE_ORIENTATION)
    assert stored.shape[:2] == (200, 320)  # the file itself is landscape
    image = load_image(data)
    assert image.shape[:2] == (320, 200)  # displayed: portrait
    expected = np.asarray(upright)[:, :, ::-1].astype(int)
    assert np.abs(image.astype(int) - expected).mean() < 6

    (face_found,) = estimators["retinaface"].predict(data)
    x1, y1, x2, y2 = face_found.box
    assert 0 <= x1 < x2 <= 200 and 0 <= y1 < y2 <= 320
    assert y2 < 240  # the face is in the top part of the displayed photo
    eyes_y = (face_found.landmarks[0][1] + face_found.landmarks[1][1]) / 2
    mouth_y = (face_found.landmarks[3][1] + face_found.landmarks[4][1]) / 2
    assert eyes_y < mouth_y  # upright: eyes above the mouth
    (reference,) = estimators["retinaface"].predict(np.ascontiguousarray(expected, np.uint8))
    assert np.allclose(face_found.box, reference.box, atol=6)


@pytest.mark.skipif(sys.platform != "linux", reason="non-UTF-8 file names need a POSIX fs")
def test_non_utf8_file_names(tmp_path: Path, estimators: dict[str, AgeEstimator]) -> None:
    raw = os.path.join(os.fsencode(tmp_path), b"photo-\xe9\xff.jpg")
    with open(raw, "wb") as handle:
        handle.write(SEEDS["jpeg"])
    name = os.fsdecode(raw)  # lone surrogates stand for the undecodable bytes
    for source in (name, Path(name)):
        assert load_image(source).shape == (48, 48, 3)
        assert len(estimators["none"].predict(source)) == 1
    missing = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"gone-\xe9.jpg"))
    with pytest.raises(ImageNotFoundError) as caught:
        load_image(missing)
    str(caught.value).encode("utf-8", "surrogateescape")  # printable via surrogateescape
    ok, bad = estimators["none"].predict_batch([name, missing])
    assert ok.ok and ok.source == name
    assert bad.error_type == "ImageNotFoundError"
    # A bytes path is taken for encoded image data: a typed error, not a crash.
    with pytest.raises(ImageDecodeError):
        load_image(raw)
