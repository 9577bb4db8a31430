"""Keep every core busy: decode, detect and cut the next images while the model scores
the current ones, and hand the results back in input order.

A stream of images is cut into chunks of ``chunk_size`` (one model call each, as in a
sequential run, so the faces of a chunk are scored in the same batch whatever the
worker count). With ``workers`` > 1 each chunk is split into pieces that a pool of
threads prepares (:class:`Preparer`: decode at the scale the detector needs, detect,
cut the crops; OpenCV and onnxruntime release the GIL), while the calling thread runs
the model on the oldest finished chunk and yields its results. At most
``LOOKAHEAD + 1`` chunks are in flight, and a prepared image keeps only its crops, not
its pixels, so memory stays bounded however long the stream. ``workers=1`` runs the
same stages one after the other in the calling thread, with no thread at all.

An image that fails to load or detect gets an error result in its place; a model call
that fails gives every image of its chunk an error result; neither ends the stream.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from typing import Final, Protocol

import numpy as np

from faceage.alignment import crop_landmarks
from faceage.detection import Detection, FaceDetector
from faceage.images import ColorOrder, ImageInput
from faceage.preprocess import face_crops
from faceage.results import Face, ImageResult
from faceage.scaled_images import ScaledImage, crop_reduction, crop_zoom, load_scaled, to_reduced

logger = logging.getLogger(__name__)

#: Chunks prepared ahead of the one the model is scoring.
LOOKAHEAD: Final = 2


def default_workers() -> int:
    """The cores this process may run on (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def check_workers(workers: int | None) -> int:
    """``workers``, or :func:`default_workers` for None; refuses a number below 1."""
    if workers is None:
        return default_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a whole number >= 1 or None, got {workers!r}")
    return workers


@dataclass(frozen=True)
class PreparedImage:
    """One image ready for the model: its size, its faces and their crops.

    Attributes:
        source: the image's name in its result.
        width, height: full-resolution size in pixels (after EXIF rotation).
        detections: the faces kept, in full-resolution pixels.
        crops: uint8 BGR crops ``(F, K, S, S, 3)``, one row per detection.
    """

    source: str
    width: int
    height: int
    detections: tuple[Detection, ...]
    crops: np.ndarray


class CropSpec(Protocol):
    """What :class:`Preparer` reads of a model or ensemble spec."""

    @property
    def input_size(self) -> int: ...

    @property
    def crop_scales(self) -> tuple[float, ...]: ...

    @property
    def num_crops(self) -> int: ...


class Preparer:
    """The per-image stages before the model: load, detect, crop. Safe to call from
    several threads at once (the detector's session is; everything else is local).

    Args:
        detector: the face detector, or None when every image is a face crop.
        spec: the model's (or ensemble's) spec: crop size and scales.
        max_faces: keep at most this many faces per image (best scores first).
        reduced_decoding: decode large JPEGs at the scale the detector and the crops
            need (see :mod:`faceage.scaled_images`); False always decodes in full.
        thread_detector: makes the detector the worker threads share (see
            :meth:`for_threads`); None: they share ``detector``.
    """

    def __init__(
        self,
        detector: FaceDetector | None,
        spec: CropSpec,
        *,
        max_faces: int | None = None,
        reduced_decoding: bool = True,
        thread_detector: Callable[[], FaceDetector | None] | None = None,
    ) -> None:
        self.detector = detector
        self.spec = spec
        self.max_faces = max_faces
        self.reduced_decoding = reduced_decoding
        self._thread_detector = thread_detector
        self._for_threads: Preparer | None = None
        self._lock = threading.Lock()
        #: The longest side the detector sees, where it can be handed a reduced image.
        self.input_side = _input_side(detector) if reduced_decoding else None

    def for_threads(self) -> Preparer:
        """The preparer worker threads use: one whose detector session runs each call on
        its calling thread alone, since the threads already keep every core busy (made
        once, on first use; this one when no ``thread_detector`` was given)."""
        if self._thread_detector is None:
            return self
        with self._lock:
            if self._for_threads is None:
                self._for_threads = Preparer(
                    self._thread_detector(),
                    self.spec,
                    max_faces=self.max_faces,
                    reduced_decoding=self.reduced_decoding,
                )
            return self._for_threads

    def __call__(
        self, image: ImageInput, source: str, *, color_order: ColorOrder = "bgr"
    ) -> PreparedImage:
        """Raises the typed errors of :func:`faceage.images.load_image` for bad input."""
        scaled = load_scaled(
            image, color_order=color_order, source=source, input_side=self.input_side
        )
        detections = self.detect(scaled)
        return PreparedImage(
            source=source,
            width=scaled.width,
            height=scaled.height,
            detections=tuple(detections),
            crops=self.crops(scaled, detections),
        )

    def detect(self, scaled: ScaledImage) -> list[Detection]:
        if self.detector is None:
            points = crop_landmarks(scaled.width, scaled.height, self.spec.input_size)
            box = (0.0, 0.0, float(scaled.width), float(scaled.height))
            return [Detection(box, tuple((float(x), float(y)) for x, y in points), 1.0)]
        if scaled.reduction == 1:
            found = self.detector.detect(scaled.pixels)
        else:
            found = self.detector.detect(  # type: ignore[call-arg]
                scaled.pixels,
                reduction=scaled.reduction,
                original_size=(scaled.width, scaled.height),
            )
        return found[: self.max_faces] if self.max_faces else found

    def crops(self, scaled: ScaledImage, detections: Sequence[Detection]) -> np.ndarray:
        """Each face's crops, cut from the coarsest decode holding enough pixels."""
        points = [np.asarray(d.landmarks, dtype=np.float64) for d in detections]
        if scaled.reduction == 1 or not points:
            return face_crops(scaled.pixels, points, self.spec)  # type: ignore[arg-type]
        size, scales = self.spec.input_size, self.spec.crop_scales
        zoom = max(crop_zoom(p, size=size, scales=scales) for p in points)
        reduction = crop_reduction(zoom, at_most=scaled.reduction)
        pixels = scaled.at_reduction(reduction)
        reduced = [to_reduced(p, reduction) for p in points]
        return face_crops(pixels, reduced, self.spec)  # type: ignore[arg-type]


def _input_side(detector: FaceDetector | None) -> int | None:
    """``detector.input_side`` where it takes a reduced image (a
    :class:`~faceage.detection.base.ScalingDetector`, as the built-in ones are), else None."""
    side = getattr(detector, "input_side", None)
    if detector is None or not isinstance(side, int):
        return None
    try:
        parameters = inspect.signature(detector.detect).parameters
    except (TypeError, ValueError):
        return None
    return side if {"reduction", "original_size"} <= parameters.keys() else None


PrepareFn = Callable[[ImageInput, str], PreparedImage]
#: Faces of each prepared image, from one model call over all their crops.
ScoreFn = Callable[[Sequence[PreparedImage]], list[list[Face]]]


def stream(
    items: Iterable[tuple[ImageInput, str]],
    *,
    prepare: PrepareFn,
    score: ScoreFn,
    chunk_size: int = 32,
    workers: int = 1,
) -> Iterator[ImageResult]:
    """One :class:`ImageResult` per ``(image, source)`` item, in input order."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    chunks = _chunks(items, chunk_size)
    if workers <= 1:
        for chunk in chunks:
            yield from _finish(_prepare_all(prepare, chunk), score)
        return
    piece = math.ceil(chunk_size / workers)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="faceage-prepare")
    pending: deque[list[Future[list[PreparedImage | ImageResult]]]] = deque()
    try:
        for chunk in chunks:
            pending.append(
                [
                    pool.submit(_prepare_all, prepare, chunk[start : start + piece])
                    for start in range(0, len(chunk), piece)
                ]
            )
            if len(pending) > LOOKAHEAD:
                yield from _finish(_gather(pending.popleft()), score)
        while pending:
            yield from _finish(_gather(pending.popleft()), score)
    finally:  # also when the caller stops early: no thread outlives the stream
        pool.shutdown(wait=True, cancel_futures=True)


def _chunks(
    items: Iterable[tuple[ImageInput, str]], size: int
) -> Iterator[list[tuple[ImageInput, str]]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _gather(
    futures: Sequence[Future[list[PreparedImage | ImageResult]]],
) -> list[PreparedImage | ImageResult]:
    return [item for future in futures for item in future.result()]


def _prepare_all(
    prepare: PrepareFn, chunk: Sequence[tuple[ImageInput, str]]
) -> list[PreparedImage | ImageResult]:
    out: list[PreparedImage | ImageResult] = []
    for image, source in chunk:
        try:
            out.append(prepare(image, source))
        except Exception as exc:  # one bad image never ends a batch
            out.append(error_result(source, exc))
    return out


def _finish(items: Sequence[PreparedImage | ImageResult], score: ScoreFn) -> list[ImageResult]:
    ready = [item for item in items if isinstance(item, PreparedImage)]
    try:
        faces = score(ready) if ready else []
    except Exception as exc:
        logger.exception("model call failed for %d images", len(ready))
        return [
            item if isinstance(item, ImageResult) else error_result(item.source, exc)
            for item in items
        ]
    found = iter(faces)
    return [
        item
        if isinstance(item, ImageResult)
        else ImageResult(
            source=item.source, faces=tuple(next(found)), width=item.width, height=item.height
        )
        for item in items
    ]


def error_result(source: str, exc: BaseException) -> ImageResult:
    """The result of an image that could not be scored: the error's first line and type."""
    message = str(exc) or type(exc).__name__
    logger.warning("skipped %s: %s", source, message)
    return ImageResult(source=source, error=message.splitlines()[0], error_type=type(exc).__name__)
