"""YuNet, the small fast detector: 0.23 MB, 5 landmarks, anchor-free.

The 2023mar export takes a fixed 1x3x640x640 BGR tensor of raw 0..255 pixels. Photos
are shrunk (never stretched) so the longer side fits, and padded bottom/right, so a
face keeps its shape and a box maps back with one scale factor. Exports with a dynamic
input size (``yunet_n``) are padded to a multiple of 32 instead.

Decoding, per stride ``s`` of 8, 16 and 32 and grid cell ``(col, row)``:
score ``sqrt(cls * obj)``, box centre ``((col, row) + bbox[:2]) * s``, box size
``exp(bbox[2:]) * s``, landmark ``k`` at ``((col, row) + kps[2k:2k+2]) * s``.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from faceage.detection.base import (
    Detection,
    fit_scale,
    original_shape,
    pad_to_multiple,
    resize_for_detector,
    to_detections,
)
from faceage.errors import ModelSpecError
from faceage.runtime import ProviderList, create_session

logger = logging.getLogger(__name__)

_STRIDES = (8, 16, 32)
#: Registry name of YuNet in ``weights_manifest.json``'s detectors.
YUNET_NAME = "yunet"


@lru_cache(maxsize=16)
def _grid(rows: int, cols: int) -> np.ndarray:
    """``(rows * cols, 2)`` cell coordinates ``(col, row)``, row-major like YuNet's outputs."""
    ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)


class YuNetDetector:
    """YuNet face detector with 5 landmarks, in RetinaFace's order.

    Args:
        model_path: the ONNX file; None resolves the manifest's pinned ``yunet`` file
            through :mod:`faceage.hub` (local folders, cache, then the Hub).
        score_threshold: keep faces scoring at least this.
        nms_threshold: IoU above which a lower-scoring overlapping face is dropped.
        min_face_size: drop faces whose box is smaller than this many pixels (shorter side).
        max_side: longer side the image is shrunk to for models with a dynamic input;
            a fixed-size model uses its own input size.
        providers, intra_op_num_threads: passed to onnxruntime.
        local_dir, cache_dir, local_files_only: where to look for the weights (see
            :func:`faceage.hub.resolve_weight_file`); ignored with ``model_path``.
    """

    name = YUNET_NAME

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.3,
        min_face_size: float = 16.0,
        max_side: int = 640,
        providers: ProviderList | None = None,
        intra_op_num_threads: int | None = None,
        local_dir: str | os.PathLike[str] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool | None = None,
    ) -> None:
        if model_path is None:
            from faceage import hub
            from faceage.spec import load_manifest

            spec = load_manifest().detector(YUNET_NAME)
            model_path = hub.resolve_weight_file(
                spec.file,
                name=YUNET_NAME,
                local_dir=local_dir,
                cache_dir=cache_dir,
                local_files_only=local_files_only,
            )
        self.model_path = Path(model_path)
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.min_face_size = min_face_size
        self.max_side = max_side
        self._session = create_session(
            self.model_path, providers=providers, intra_op_num_threads=intra_op_num_threads
        )
        model_input = self._session.get_inputs()[0]
        self._input_name = model_input.name
        height, width = model_input.shape[2:4]
        self._fixed_size = (
            (height, width) if isinstance(height, int) and isinstance(width, int) else None
        )
        names = {o.name for o in self._session.get_outputs()}
        missing = [
            f"{kind}_{stride}"
            for stride in _STRIDES
            for kind in ("cls", "obj", "bbox", "kps")
            if f"{kind}_{stride}" not in names
        ]
        if missing:
            raise ModelSpecError(
                f"{self.model_path} is not a YuNet export faceage can decode: it lacks the "
                f"outputs {missing}. Use face_detection_yunet_2023mar.onnx (model_path=None)."
            )
        self._output_names = [
            f"{kind}_{stride}" for kind in ("cls", "obj", "bbox", "kps") for stride in _STRIDES
        ]

    def _letterbox(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """Shrink keeping the aspect ratio, pad bottom/right; returns (canvas, scale)."""
        height, width = image.shape[:2]
        if self._fixed_size is None:
            scale = fit_scale(height, width, self.max_side)
            return pad_to_multiple(resize_for_detector(image, scale), 32), scale
        input_h, input_w = self._fixed_size
        scale = min(1.0, input_h / height, input_w / width)
        resized = resize_for_detector(image, scale)
        # Rounding may overshoot by one pixel; never past the input.
        resized = resized[:input_h, :input_w]
        canvas = np.zeros((input_h, input_w, 3), dtype=image.dtype)
        canvas[: resized.shape[0], : resized.shape[1]] = resized
        return canvas, scale

    @property
    def input_side(self) -> int | None:
        """The longest side the network ever sees (None for a fixed-size export, whose
        letterbox could need more pixels along one side than this)."""
        return None if self._fixed_size is not None else self.max_side

    def detect(
        self, image: np.ndarray, *, reduction: int = 1, original_size: tuple[int, int] | None = None
    ) -> list[Detection]:
        """Faces in a BGR uint8 image, best score first, in the image's pixel coordinates
        (those of ``original_size`` when ``image`` was decoded at ``1/reduction``)."""
        canvas, scale = self._letterbox(image)
        blob = np.ascontiguousarray(canvas.transpose(2, 0, 1)[None], dtype=np.float32)
        outputs = dict(
            zip(
                self._output_names,
                self._session.run(self._output_names, {self._input_name: blob}),
            )
        )
        height, width = canvas.shape[:2]
        boxes, points, scores = [], [], []
        for stride in _STRIDES:
            grid = _grid(height // stride, width // stride)
            cls = np.clip(outputs[f"cls_{stride}"][0, :, 0], 0.0, 1.0)
            obj = np.clip(outputs[f"obj_{stride}"][0, :, 0], 0.0, 1.0)
            bbox = outputs[f"bbox_{stride}"][0]
            kps = outputs[f"kps_{stride}"][0].reshape(-1, 5, 2)
            centers = (grid + bbox[:, :2]) * stride
            sizes = np.exp(bbox[:, 2:]) * stride
            boxes.append(np.concatenate([centers - sizes / 2, centers + sizes / 2], axis=1))
            points.append((grid[:, None, :] + kps) * stride)
            scores.append(np.sqrt(cls * obj))
        return to_detections(
            np.concatenate(boxes),
            np.concatenate(points),
            np.concatenate(scores),
            scale=scale / reduction,
            image_shape=original_shape(image.shape, original_size),
            score_threshold=self.score_threshold,
            nms_threshold=self.nms_threshold,
            min_face_size=self.min_face_size,
        )
