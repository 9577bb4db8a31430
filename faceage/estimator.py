"""The public entry point: :class:`AgeEstimator` ties detection, crops and the model together.

    image -> load -> detect -> align/crop -> normalise -> one batched model call -> Face

Single-image :meth:`AgeEstimator.predict` raises typed errors for bad input; the batch
and folder methods never raise for one bad image: they record it in that image's
:class:`~faceage.results.ImageResult` and go on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from faceage import hub
from faceage.detection import Detection, FaceDetector, get_detector
from faceage.ensemble import EnsembleModel
from faceage.folders import iter_image_files
from faceage.images import ColorOrder, ImageInput, describe_input
from faceage.inference import AgeModel, AgeOutputs
from faceage.intervals import DEFAULT_COVERAGE, Intervals, check_coverage, interval_maker
from faceage.pipeline import PreparedImage, Preparer, check_workers, stream
from faceage.preprocess import mirror_crops
from faceage.results import Face, Gender, ImageResult
from faceage.runtime import ProviderList
from faceage.smoothing import DEFAULT_HALF_LIFE
from faceage.spec import EnsembleSpec, ModelSpec, load_manifest
from faceage.tracking import DEFAULT_MAX_MISSED
from faceage.user_models import resolve_user_model

if TYPE_CHECKING:
    from faceage.video import FrameCallback, VideoRun, VideoTracker
    from faceage.video_io import VideoInput

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "c3ae"


class AgeEstimator:
    """Estimate the age (and gender, where the model has it) of every face in images.

    Build one with :meth:`from_pretrained`; it is safe to share between threads.

    Args:
        spec: the model's (or ensemble's) spec.
        model_path: its verified ONNX file; for an ensemble, each member's by name.
        detector: ``"retinaface"`` (default), ``"yunet"``, a detector object with
            ``detect(bgr) -> list[Detection]``, or None when every input is already a
            face crop (aligned like :func:`faceage.alignment.align_face` at scale 1).
        providers: onnxruntime execution providers, e.g. ``["CPUExecutionProvider"]``.
        intra_op_num_threads: threads per onnxruntime call (None: one per core).
        max_faces: keep at most this many faces per image (best detection scores).
        flip: also run each face mirrored and average (test-time augmentation); None
            (default): as the model's spec says (``spec.flip``: on for the models whose
            val error it lowered, see the README's model table).
        max_batch_size: faces per model call.
        detector_options: keyword arguments for the named detector, e.g.
            ``{"score_threshold": 0.8, "min_face_size": 32, "max_side": 1280}``.
        age_coverage: the share of faces whose true age each face's interval
            (``Face.age_low`` to ``Face.age_high``) should hold, from 0.5 to 0.99
            (default 0.8); measured by ``python -m benchmarks.intervals``. A spec
            without an ``age_interval`` calibration gives no interval (logged once).
        reduced_decoding: decode a large JPEG at the scale the detector and the face
            crops need (libjpeg's 1/2, 1/4, 1/8; see :mod:`faceage.scaled_images`);
            False decodes every image in full (slower, as before 0.2).
    """

    def __init__(
        self,
        spec: ModelSpec | EnsembleSpec,
        model_path: str | os.PathLike[str] | Mapping[str, str | os.PathLike[str]],
        *,
        detector: str | FaceDetector | None = "retinaface",
        providers: ProviderList | None = None,
        intra_op_num_threads: int | None = None,
        max_faces: int | None = None,
        flip: bool | None = None,
        max_batch_size: int = 64,
        detector_options: dict[str, Any] | None = None,
        local_files_only: bool | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        age_coverage: float = DEFAULT_COVERAGE,
        reduced_decoding: bool = True,
    ) -> None:
        if max_faces is not None and max_faces < 1:
            raise ValueError(f"max_faces must be >= 1 or None, got {max_faces}")
        self.spec = spec
        self.max_faces = max_faces
        self.flip = spec.flip if flip is None else flip
        self.age_coverage = check_coverage(age_coverage)
        self.intervals = interval_maker(
            spec.age_interval,
            model=spec.name,
            weights_sha256={m.name: m.file.sha256 for m in spec.members}
            if isinstance(spec, EnsembleSpec)
            else spec.file.sha256,
            flip=self.flip,
            coverage=self.age_coverage,
            age_range=_age_range(spec),
        )
        self.model: AgeModel | EnsembleModel
        if isinstance(spec, EnsembleSpec):
            if not isinstance(model_path, Mapping):
                raise TypeError(
                    f"ensemble {spec.name!r} needs model_path as {{member name: ONNX path}}"
                )
            self.model = EnsembleModel(
                spec,
                model_path,
                providers=providers,
                intra_op_num_threads=intra_op_num_threads,
                max_batch_size=max_batch_size,
            )
        else:
            if isinstance(model_path, Mapping):
                raise TypeError(f"model {spec.name!r} needs model_path as one ONNX path")
            self.model = AgeModel(
                spec,
                model_path,
                providers=providers,
                intra_op_num_threads=intra_op_num_threads,
                max_batch_size=max_batch_size,
            )
        thread_detector = None
        if isinstance(detector, str) or detector is None:
            make_detector = partial(
                get_detector,
                detector,
                providers=providers,
                local_files_only=local_files_only,
                cache_dir=cache_dir,
                **(detector_options or {}),
            )
            self.detector: FaceDetector | None = make_detector(
                intra_op_num_threads=intra_op_num_threads
            )
            if intra_op_num_threads is None and self.detector is not None:
                # Worker threads detect at once: each on one thread (measured in the README).
                thread_detector = partial(make_detector, intra_op_num_threads=1)
        else:
            self.detector = detector
        #: The stages before the model (load at scale, detect, crop): :mod:`faceage.pipeline`.
        self.preparer = Preparer(
            self.detector,
            spec,
            max_faces=max_faces,
            reduced_decoding=reduced_decoding,
            thread_detector=thread_detector,
        )

    @classmethod
    def from_pretrained(
        cls,
        name: str = DEFAULT_MODEL,
        *,
        detector: str | FaceDetector | None = "retinaface",
        providers: ProviderList | None = None,
        intra_op_num_threads: int | None = None,
        local_files_only: bool | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        weights_dir: str | os.PathLike[str] | None = None,
        max_faces: int | None = None,
        flip: bool | None = None,
        max_batch_size: int = 64,
        detector_options: dict[str, Any] | None = None,
        age_coverage: float = DEFAULT_COVERAGE,
        reduced_decoding: bool = True,
    ) -> AgeEstimator:
        """Load a registered model or ensemble, a ``hf-hub:owner/repo[@revision]`` model
        or a local directory with ``model.onnx`` + ``faceage.json``.

        Weights are found in ``weights_dir``, the installed package, the Hugging Face
        cache, or downloaded by pinned revision, and always checked against their sha256.
        See :class:`AgeEstimator` for the other arguments.
        """
        spec: ModelSpec | EnsembleSpec
        path: Path | dict[str, Path]
        if name.startswith("hf-hub:") or Path(name).is_dir():
            spec, path = resolve_user_model(
                name, local_files_only=local_files_only, cache_dir=cache_dir
            )
        else:
            spec = load_manifest().estimator_spec(name)
            files = spec.members if isinstance(spec, EnsembleSpec) else (spec,)
            paths = {
                member.name: hub.resolve_weight_file(
                    member.file,
                    name=member.name,
                    local_dir=weights_dir,
                    cache_dir=cache_dir,
                    local_files_only=local_files_only,
                )
                for member in files
            }
            path = paths if isinstance(spec, EnsembleSpec) else paths[spec.name]
        return cls(
            spec,
            path,
            detector=detector,
            providers=providers,
            intra_op_num_threads=intra_op_num_threads,
            max_faces=max_faces,
            flip=flip,
            max_batch_size=max_batch_size,
            detector_options=detector_options,
            local_files_only=local_files_only,
            cache_dir=cache_dir,
            age_coverage=age_coverage,
            reduced_decoding=reduced_decoding,
        )

    def __repr__(self) -> str:
        detector = getattr(self.detector, "name", None) if self.detector else None
        return f"AgeEstimator(model={self.spec.name!r}, detector={detector!r})"

    # -- public API -----------------------------------------------------------------

    def predict(self, image: ImageInput, *, color_order: ColorOrder = "bgr") -> list[Face]:
        """Faces of one image, best detection score first.

        Args:
            image: path, bytes, numpy array (``color_order`` gives its channel order;
                OpenCV arrays are BGR, PIL/imageio arrays are RGB) or PIL image.

        Raises:
            ImageNotFoundError, ImageDecodeError, ImageTooLargeError: bad input.
        """
        prepared = self.preparer(image, describe_input(image), color_order=color_order)
        return self._score([prepared])[0]

    def predict_batch(
        self,
        images: Iterable[ImageInput],
        *,
        color_order: ColorOrder = "bgr",
        sources: Sequence[str] | None = None,
        workers: int | None = None,
        chunk_size: int = 32,
    ) -> list[ImageResult]:
        """One :class:`ImageResult` per input, in order; bad inputs get an error result.

        Args:
            images: as for :meth:`predict`.
            sources: a name per image for its result and errors (e.g. where bytes came
                from); by default a path is its own name and other inputs are described.
            workers: threads that decode and detect while the model runs (None: one per
                core; 1: all in the calling thread). Results do not depend on it.
            chunk_size: images per model call.
        """
        items = list(images)
        if sources is not None and len(sources) != len(items):
            raise ValueError(f"got {len(items)} images but {len(sources)} sources")
        names = list(sources) if sources is not None else [describe_input(i) for i in items]
        workers = 1 if len(items) <= 1 else check_workers(workers)  # one image: no pool
        # A short list is one chunk either way; sized to it, every worker gets a share.
        chunk_size = min(chunk_size, max(len(items), 1))
        return list(
            self.stream(
                zip(items, names), color_order=color_order, chunk_size=chunk_size, workers=workers
            )
        )

    def predict_folder(
        self,
        path: str | os.PathLike[str],
        *,
        recursive: bool = False,
        chunk_size: int = 32,
        workers: int | None = None,
    ) -> Iterator[ImageResult]:
        """Stream one result per image file under ``path`` (sorted), errors included.

        ``workers`` threads (None: one per core) decode and detect the next images while
        the model scores ``chunk_size`` of them; results come in file order whatever it is.
        """
        files = iter_image_files(path, recursive=recursive)
        return self.stream(((f, f) for f in files), chunk_size=chunk_size, workers=workers)

    def stream(
        self,
        items: Iterable[tuple[ImageInput, str]],
        *,
        color_order: ColorOrder = "bgr",
        chunk_size: int = 32,
        workers: int | None = None,
    ) -> Iterator[ImageResult]:
        """One result per ``(image, source name)`` pair, in order, as they are scored; the
        engine of :meth:`predict_batch` and :meth:`predict_folder` (see
        :mod:`faceage.pipeline`)."""
        workers = check_workers(workers)
        preparer = self.preparer.for_threads() if workers > 1 else self.preparer
        return stream(
            items,
            prepare=partial(preparer, color_order=color_order),
            score=self._score,
            chunk_size=chunk_size,
            workers=workers,
        )

    def predict_video(
        self,
        source: VideoInput,
        *,
        every: int = 1,
        smoothing: bool = True,
        fps: float | None = None,
        max_missed: int = DEFAULT_MAX_MISSED,
        half_life: float | None = DEFAULT_HALF_LIFE,
        color_order: ColorOrder = "bgr",
        on_frame: FrameCallback | None = None,
    ) -> VideoRun:
        """Track every person of a video and age them: one result per scored frame.

        Args:
            source: a video file path, a camera index (``int``), or an iterable of frames
                (numpy arrays, BGR unless ``color_order="rgb"``).
            every: score frames 0, N, 2N...; indexes and times stay those of the source.
            smoothing: give each face its track's running age and gender (False: the
                ``*_smoothed`` fields repeat the frame's own values).
            fps: frames per second; gives an iterable's frames their times, and overrides
                a file's header.
            max_missed: scored frames a track survives without its face (occlusion, a
                missed detection) before a face there gets a new id.
            half_life: scored frames after which one weighs half as much in the track's
                age; None (default): the track's age is the (interval-weighted) mean of
                all its frames (see :mod:`faceage.smoothing`).
            on_frame: ``on_frame(index, image, result)`` for every frame read, scored or
                not (``result``: the latest scored frame's), e.g. to write a video.

        Returns:
            A :class:`~faceage.video.VideoRun`: iterate it for
            :class:`~faceage.video_results.FrameResult` (``index``, ``time``, ``faces``:
            :class:`~faceage.video_results.TrackedFace` with ``track_id``, ``age``,
            ``age_smoothed``...). ``run.tracks()`` summarises each person,
            ``run.ended_early`` tells a truncated file. A frame that cannot be scored
            gets an error result and the run goes on.

        Raises:
            VideoNotFoundError, VideoDecodeError, CameraError: the source cannot be read
                (raised here, before any frame is scored).
        """
        from faceage.video import predict_video

        return predict_video(
            self,
            source,
            every=every,
            smoothing=smoothing,
            fps=fps,
            max_missed=max_missed,
            half_life=half_life,
            color_order=color_order,
            on_frame=on_frame,
        )

    def track(
        self,
        *,
        fps: float | None = None,
        smoothing: bool = True,
        max_missed: int = DEFAULT_MAX_MISSED,
        half_life: float | None = DEFAULT_HALF_LIFE,
        color_order: ColorOrder = "bgr",
    ) -> VideoTracker:
        """A tracker for frames you already hold: ``tracker.update(frame)`` scores one and
        returns its :class:`~faceage.video_results.FrameResult`, as :meth:`predict_video`
        would; ``tracker.summaries()`` gives the tracks. Arguments as for
        :meth:`predict_video`."""
        from faceage.video import VideoTracker

        return VideoTracker(
            self,
            fps=fps,
            smoothing=smoothing,
            max_missed=max_missed,
            half_life=half_life,
            color_order=color_order,
        )

    # -- the model stage ---------------------------------------------------------------

    def _score(self, prepared: Sequence[PreparedImage]) -> list[list[Face]]:
        """Faces of each prepared image, all their crops scored in one model call."""
        decoded = prepared
        crops = [item.crops for item in prepared]
        total = sum(len(c) for c in crops)
        if total == 0:
            return [[] for _ in decoded]
        batch = np.concatenate([c for c in crops if len(c)])
        outputs = self._run(batch)
        intervals = (
            None
            if self.intervals is None
            else self.intervals(
                outputs.age, flip_gap=outputs.flip_gap, member_spread=outputs.member_spread
            )
        )
        coverage = None if intervals is None else self.age_coverage
        results: list[list[Face]] = []
        offset = 0
        for item in decoded:
            faces = [
                _make_face(detection, outputs, offset + i, intervals, coverage)
                for i, detection in enumerate(item.detections)
            ]
            offset += len(item.detections)
            results.append(faces)
        return results

    def _run(self, crops: np.ndarray) -> AgeOutputs:
        outputs = self.model.run_crops(crops)
        if not self.flip:
            return outputs
        mirrored = self.model.run_crops(mirror_crops(crops))
        return AgeOutputs(
            age=(outputs.age + mirrored.age) / 2,
            age_std=_mean(outputs.age_std, mirrored.age_std),
            female_probability=_mean(outputs.female_probability, mirrored.female_probability),
            member_spread=_mean(outputs.member_spread, mirrored.member_spread),
            flip_gap=np.abs(outputs.age - mirrored.age),
        )


def _mean(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    return None if a is None or b is None else (a + b) / 2


def _age_range(spec: ModelSpec | EnsembleSpec) -> tuple[float, float]:
    """The ages a spec can give: an ensemble's, those its age members share."""
    if isinstance(spec, ModelSpec):
        return spec.age_range
    ranges = [m.age_range for m in spec.members if m.name in spec.age_from]
    return max(r[0] for r in ranges), min(r[1] for r in ranges)


def _make_face(
    detection: Detection,
    outputs: AgeOutputs,
    index: int,
    intervals: Intervals | None,
    coverage: float | None,
) -> Face:
    gender: Gender | None = None
    gender_probability = None
    if outputs.female_probability is not None:
        p_female = float(outputs.female_probability[index])
        gender = "female" if p_female >= 0.5 else "male"
        gender_probability = p_female if gender == "female" else 1.0 - p_female
    age_std = None if outputs.age_std is None else float(outputs.age_std[index])
    if intervals is not None:  # the calibrated expected error wins over a model's own
        age_std = float(intervals.std[index])
    return Face(
        age=float(outputs.age[index]),
        box=detection.box,
        landmarks=detection.landmarks,
        detection_score=detection.score,
        age_std=age_std,
        gender=gender,
        gender_probability=gender_probability,
        age_low=None if intervals is None else float(intervals.low[index]),
        age_high=None if intervals is None else float(intervals.high[index]),
        age_coverage=coverage,
    )
