"""Typed errors of faceage.

Every error inherits a built-in type, so ``except ValueError`` or
``except FileNotFoundError`` keeps working for callers who do not know our
classes, and every message says what went wrong, with which input, and how to
fix it.
"""

from __future__ import annotations


class FaceageError(Exception):
    """Base class of every error raised on purpose by faceage."""


class ImageNotFoundError(FaceageError, FileNotFoundError):
    """An image path does not exist or is not a file."""


class ImageDecodeError(FaceageError, ValueError):
    """The input is not an image faceage can decode (empty, truncated, wrong format)."""


class ImageTooLargeError(ImageDecodeError):
    """The image has more pixels than the configured limit allows."""


class UnknownModelError(FaceageError, ValueError):
    """A model or detector name is not in the registry."""


class ModelSpecError(FaceageError, ValueError):
    """A model spec (``faceage.json`` or manifest entry) or its ONNX graph is invalid."""


class WeightsNotFoundError(FaceageError, FileNotFoundError):
    """A weight file is neither bundled nor cached and cannot be downloaded."""


class WeightsIntegrityError(FaceageError, OSError):
    """A weight file does not match the sha256 pinned in the manifest."""


class DetectorPackageError(FaceageError, ImportError):
    """The package that ships the default detector's bytes is missing or is the wrong one."""


class VideoNotFoundError(FaceageError, FileNotFoundError):
    """A video path does not exist or is not a file."""


class VideoDecodeError(FaceageError, ValueError):
    """The input is not a video OpenCV can read (not a video, unknown codec, no frame)."""


class CameraError(FaceageError, OSError):
    """A camera index cannot be opened or gives no frame."""
