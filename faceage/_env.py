"""The one place faceage reads environment variables of its own.

Hugging Face variables (``HF_HOME``, ``HF_HUB_OFFLINE``, ``HF_ENDPOINT``) are read by
huggingface_hub itself; faceage only passes ``local_files_only`` through.
"""

from __future__ import annotations

import os

#: Directory searched for weight files before the package data and the Hub cache.
FACEAGE_WEIGHTS_DIR_ENV = "FACEAGE_WEIGHTS_DIR"
#: Largest image (in pixels) faceage decodes; bigger headers are refused before allocation.
FACEAGE_MAX_PIXELS_ENV = "FACEAGE_MAX_PIXELS"
#: "1" lets onnxruntime's idle intra-op threads spin between calls (off by default).
FACEAGE_ORT_SPINNING_ENV = "FACEAGE_ORT_SPINNING"

DEFAULT_MAX_PIXELS = 100_000_000


def weights_dir() -> str | None:
    """Return ``$FACEAGE_WEIGHTS_DIR`` if set and non-empty."""
    value = os.environ.get(FACEAGE_WEIGHTS_DIR_ENV, "").strip()
    return value or None


def max_pixels() -> int:
    """Return the pixel limit for decoded images (``$FACEAGE_MAX_PIXELS`` or 100 MP)."""
    raw = os.environ.get(FACEAGE_MAX_PIXELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(
            f"{FACEAGE_MAX_PIXELS_ENV}={raw!r} is not an integer; set it to a pixel count "
            f"such as {DEFAULT_MAX_PIXELS}"
        ) from exc
    if value <= 0:
        raise ValueError(f"{FACEAGE_MAX_PIXELS_ENV} must be positive, got {value}")
    return value


def ort_spinning() -> bool:
    """Return whether ``$FACEAGE_ORT_SPINNING`` asks for spinning threads (default: no)."""
    raw = os.environ.get(FACEAGE_ORT_SPINNING_ENV, "").strip()
    if raw in ("", "0"):
        return False
    if raw == "1":
        return True
    raise ValueError(f"{FACEAGE_ORT_SPINNING_ENV}={raw!r}: set it to 1 (spin) or 0 (do not)")
