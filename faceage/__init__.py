"""faceage: the age (and gender) of the faces in a photo, with compact models on a CPU.

    >>> import faceage
    >>> estimator = faceage.AgeEstimator.from_pretrained("c3ae")
    >>> faces = estimator.predict("family.jpg")
    >>> [(round(f.age), f.box) for f in faces]

Heavy modules (onnxruntime, OpenCV) load on first use of the API, so
``import faceage`` and ``faceage --version`` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from faceage._version import __version__
from faceage.errors import (
    CameraError,
    FaceageError,
    ImageDecodeError,
    ImageNotFoundError,
    ImageTooLargeError,
    ModelSpecError,
    UnknownModelError,
    VideoDecodeError,
    VideoNotFoundError,
    WeightsIntegrityError,
    WeightsNotFoundError,
)

if TYPE_CHECKING:
    from faceage.estimator import AgeEstimator
    from faceage.images import ImageInput
    from faceage.results import Face, ImageResult
    from faceage.spec import ModelSpec
    from faceage.video_results import FrameResult, TrackedFace, TrackSummary

__all__ = [
    "AgeEstimator",
    "CameraError",
    "Face",
    "FaceageError",
    "FrameResult",
    "ImageDecodeError",
    "ImageNotFoundError",
    "ImageResult",
    "ImageTooLargeError",
    "ModelSpec",
    "ModelSpecError",
    "TrackSummary",
    "TrackedFace",
    "UnknownModelError",
    "VideoDecodeError",
    "VideoNotFoundError",
    "WeightsIntegrityError",
    "WeightsNotFoundError",
    "__version__",
    "list_models",
    "predict",
]

_LAZY = {
    "AgeEstimator": "faceage.estimator",
    "Face": "faceage.results",
    "ImageResult": "faceage.results",
    "ModelSpec": "faceage.spec",
    "FrameResult": "faceage.video_results",
    "TrackedFace": "faceage.video_results",
    "TrackSummary": "faceage.video_results",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'faceage' has no attribute {name!r}")


def list_models() -> list[ModelSpec]:
    """Specs of every registered model, sorted by name."""
    from faceage.spec import load_manifest

    models = load_manifest().models
    return [models[name] for name in sorted(models)]


_estimators: dict[tuple[str, str | None], AgeEstimator] = {}


def predict(
    image: ImageInput,
    *,
    model: str = "c3ae",
    detector: str | None = "retinaface",
    color_order: str = "bgr",
) -> list[Face]:
    """One-liner: faces of ``image`` with ``model`` (the estimator is cached per model)."""
    from faceage.estimator import AgeEstimator

    key = (model, detector)
    estimator = _estimators.get(key)
    if estimator is None:
        estimator = _estimators[key] = AgeEstimator.from_pretrained(model, detector=detector)
    return estimator.predict(image, color_order=color_order)  # type: ignore[arg-type]
