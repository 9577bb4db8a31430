"""Read an image's width and height from its header, without decoding a pixel.

:func:`faceage.images.decode_image` asks this module first so that a small file whose
header claims billions of pixels is refused before any buffer is allocated. It knows
every format OpenCV decodes; an unknown or unparsable header returns None and the
decoder (with a check after decoding) has the last word.
"""

from __future__ import annotations

import re
import struct


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
