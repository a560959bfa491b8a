"""Width and height of an encoded image read from its header, without decoding a pixel.

Knows PNG, JPEG, BMP, WebP (lossy, lossless, extended) and TIFF (classic and BigTIFF, first image); these
are the formats the SDK reads (:data:`yolov6_sdk.artifact.images.IMAGE_SUFFIXES`). Lets a reader refuse a
small file that declares a huge image before the decoder allocates it (and a PNG whose chunk lengths run past
the end of the file). :func:`jpeg_orientation` reads a JPEG's EXIF orientation the way OpenCV applies it, so
a reader can tell the size of the decoded (turned) picture from the header alone.
"""

from __future__ import annotations

import struct

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic); not DHT (C4), JPG (C8), DAC (CC)
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})  # TEM, RSTn, SOI, EOI: no length field
_TIFF_WIDTH, _TIFF_HEIGHT = 256, 257
_EXIF_SIGNATURE = b"Exif\x00\x00"
_EXIF_ORIENTATION = 0x0112
_TIFF_SHORT = 3


def image_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` in pixels declared by the header of encoded image ``data``.

    Returns None for another format or a header too short or malformed to tell.
    """
    try:
        if data.startswith(_PNG_MAGIC):
            return _png(data)
        if data.startswith(b"\xff\xd8"):
            return _jpeg(data)
        if data.startswith(b"BM"):
            return _bmp(data)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp(data)
        if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
            return _tiff(data)
    except (struct.error, IndexError, ValueError):
        return None
    return None


def _png(data: bytes) -> tuple[int, int] | None:
    """IHDR's size, provided every chunk's declared length fits in the file (the decoder allocates a chunk's
    length before reading it, so one forged length would cost gigabytes)."""
    if data[12:16] != b"IHDR":
        return None
    at = len(_PNG_MAGIC)
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        if at + 12 + length > len(data):
            return None
        if data[at + 4 : at + 8] == b"IEND":
            break
        at += 12 + length
    return struct.unpack(">II", data[16:24])


def _jpeg(data: bytes) -> tuple[int, int] | None:
    """Walk the marker segments up to the first start-of-frame (height, width at offsets 5 and 7)."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_STANDALONE:
            i += 2
            continue
        if marker == 0xDA:  # start of scan before any frame header
            return None
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if length < 2:
            return None
        i += 2 + length
    return None


def _bmp(data: bytes) -> tuple[int, int] | None:
    (header_size,) = struct.unpack("<I", data[14:18])
    if header_size == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        return struct.unpack("<HH", data[18:22])
    width, height = struct.unpack("<ii", data[18:26])
    return (abs(width), abs(height)) if header_size >= 40 else None  # a negative height is a top-down bitmap


def _webp(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 ":  # lossy: key frame start code, then 14-bit sizes
        if data[23:26] != b"\x9d\x01\x2a":
            return None
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":  # lossless: signature 0x2f, then (width - 1) and (height - 1) in 14 bits each
        if data[20] != 0x2F:
            return None
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":  # extended: canvas (width - 1) and (height - 1) in 24 bits each
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


def _tiff(data: bytes) -> tuple[int, int] | None:
    """Width and height tags of the first image file directory (classic TIFF or BigTIFF)."""
    order = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\x00", b"\x00+")
    if big:
        (offset,) = struct.unpack(order + "Q", data[8:16])
        (count,) = struct.unpack(order + "Q", data[offset : offset + 8])
        entry_size, first, value_at = 20, offset + 8, 12
    else:
        (offset,) = struct.unpack(order + "I", data[4:8])
        (count,) = struct.unpack(order + "H", data[offset : offset + 2])
        entry_size, first, value_at = 12, offset + 2, 8
    sizes = {}
    for n in range(min(count, 4096)):
        entry = data[first + n * entry_size : first + (n + 1) * entry_size]
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag in (_TIFF_WIDTH, _TIFF_HEIGHT):
            code = {3: "H", 4: "I", 16: "Q"}.get(kind)
            if code is None:
                return None
            (sizes[tag],) = struct.unpack(order + code, entry[value_at : value_at + struct.calcsize(code)])
    if len(sizes) != 2:
        return None
    return sizes[_TIFF_WIDTH], sizes[_TIFF_HEIGHT]


def jpeg_orientation(data: bytes) -> int | None:
    """EXIF orientation (1..8) of JPEG ``data``: how the decoder turns the stored picture.

    Read from the first APP1 segment that holds an ``Exif`` block (the one OpenCV reads): 1 (as stored) when
    there is no such block or it has no orientation tag. None when ``data`` is not a JPEG, its segments or its
    EXIF block are malformed, or the value is outside 1..8 (what a decoder makes of those is not for a header
    reader to guess).
    """
    if not data.startswith(b"\xff\xd8"):
        return None
    try:
        exif = _jpeg_exif_block(data)
        return 1 if exif is None else _tiff_orientation(exif)
    except (struct.error, IndexError, ValueError):
        return None


def _jpeg_exif_block(data: bytes) -> bytes | None:
    """The TIFF bytes of the first ``Exif`` APP1 segment before the first scan, or None when there is none.

    Raises:
        ValueError: the marker segments are malformed.
    """
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise ValueError("marker expected")
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in _JPEG_STANDALONE:
            i += 2
            continue
        if marker == 0xDA:
            return None
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if length < 2 or i + 2 + length > len(data):
            raise ValueError("segment runs past the end")
        payload = data[i + 4 : i + 2 + length]
        if marker == 0xE1 and payload.startswith(_EXIF_SIGNATURE):
            return payload[len(_EXIF_SIGNATURE) :]
        i += 2 + length
    return None


def _tiff_orientation(tiff: bytes) -> int | None:
    """The orientation tag of the first image file directory of an EXIF block (1 when absent).

    Raises:
        ValueError: not a TIFF structure, or the tag is not one SHORT.
    """
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or struct.unpack(order + "H", tiff[2:4])[0] != 42:
        raise ValueError("not a TIFF header")
    (offset,) = struct.unpack(order + "I", tiff[4:8])
    (count,) = struct.unpack(order + "H", tiff[offset : offset + 2])
    for n in range(min(count, 4096)):
        entry = tiff[offset + 2 + 12 * n : offset + 14 + 12 * n]
        tag, kind, values = struct.unpack(order + "HHI", entry[:8])
        if tag == _EXIF_ORIENTATION:
            if kind != _TIFF_SHORT or values != 1:
                raise ValueError("orientation is not one SHORT")
            (value,) = struct.unpack(order + "H", entry[8:10])
            return value if 1 <= value <= 8 else None
    return 1
