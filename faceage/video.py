"""Age of each person in a video: frames -> the estimator's own per-frame pipeline ->
tracks linked across frames -> a smoothed age per track.

:class:`VideoTracker` does it for frames a caller already holds (``estimator.track()``,
e.g. in a webcam loop of one's own); :func:`predict_video` (``estimator.predict_video``)
reads a file, a camera or an iterable and streams one :class:`FrameResult` per scored
frame. Neither imports the estimator: anything with ``predict_batch`` will do, which
keeps this module free of an import cycle with :mod:`faceage.estimator`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from faceage.images import ColorOrder
from faceage.results import Face, Gender, ImageResult
from faceage.smoothing import DEFAULT_HALF_LIFE, AgeSmoother, SmoothedEstimate, age_sigma
from faceage.tracking import DEFAULT_MAX_MISSED, FaceTracker
from faceage.video_io import VideoFrame, VideoInput, VideoSource, open_video
from faceage.video_results import FrameResult, TrackedFace, TrackSummary

logger = logging.getLogger(__name__)

#: ``on_frame(index, image, result)``: called for every frame read, scored or not;
#: ``result`` is this frame's result if it was scored, else the latest one (or None).
FrameCallback = Callable[[int, Any, "FrameResult | None"], None]


class FrameEstimator(Protocol):
    """What video needs of an :class:`~faceage.AgeEstimator`."""

    def predict_batch(
        self,
        images: Iterable[Any],
        *,
        color_order: ColorOrder = "bgr",
        sources: Sequence[str] | None = None,
    ) -> list[ImageResult]: ...


@dataclass
class _TrackState:
    smoother: AgeSmoother
    first_frame: int
    first_time: float | None
    last_frame: int
    last_time: float | None
    frames_seen: int = 0
    estimate: SmoothedEstimate | None = None


class VideoTracker:
    """Score frames one at a time and link their faces into smoothed tracks.

    Made by :meth:`faceage.AgeEstimator.track`; call :meth:`update` with each frame.

    Args:
        estimator: an :class:`~faceage.AgeEstimator`.
        fps: frames per second, for the frames' times (None: times are None unless given).
        smoothing: False makes every ``*_smoothed`` field the frame's own value (tracks
            are still linked).
        max_missed: frames (scored ones) a track survives without its face.
        half_life: scored frames after which one weighs half as much in a track's age;
            None (default): a track's age is the (interval-weighted) mean of all its frames.
        color_order: channel order of array frames (``"bgr"`` from OpenCV).
    """

    def __init__(
        self,
        estimator: FrameEstimator,
        *,
        fps: float | None = None,
        smoothing: bool = True,
        max_missed: int = DEFAULT_MAX_MISSED,
        half_life: float | None = DEFAULT_HALF_LIFE,
        color_order: ColorOrder = "bgr",
    ) -> None:
        if fps is not None and not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be a positive number, got {fps}")
        self.estimator = estimator
        self.fps = fps
        self.smoothing = smoothing
        self.half_life = half_life
        self.color_order: ColorOrder = color_order
        self._tracker = FaceTracker(max_missed=max_missed)
        AgeSmoother(half_life=half_life)  # check the setting now, not at the first face
        self._tracks: dict[int, _TrackState] = {}
        self._next_index = 0

    def update(
        self, frame: Any, *, index: int | None = None, time: float | None = None
    ) -> FrameResult:
        """Score one frame and link its faces to the tracks.

        Args:
            frame: a BGR numpy array (or anything :meth:`AgeEstimator.predict` reads).
            index: the frame's index (default: one more than the last one).
            time: its time in seconds (default: ``index / fps`` where ``fps`` is set).

        Returns:
            A :class:`FrameResult`; a frame that cannot be read gets an error result, and
            the tracks are left as they were.
        """
        index = self._next_index if index is None else index
        self._next_index = index + 1
        if time is None and self.fps:
            time = index / self.fps
        [result] = self.estimator.predict_batch(
            [frame], color_order=self.color_order, sources=[f"frame {index}"]
        )
        return self.add(result, index=index, time=time)

    def add(self, result: ImageResult, *, index: int, time: float | None = None) -> FrameResult:
        """Link an already scored frame's faces to the tracks (what :meth:`update` does
        after scoring)."""
        self._next_index = max(self._next_index, index + 1)
        if not result.ok:
            return FrameResult(index, time, error=result.error, error_type=result.error_type)
        faces = result.faces
        ids = self._tracker.update([f.box for f in faces], [f.landmarks for f in faces])
        tracked = tuple(self._follow(tid, face, index, time) for tid, face in zip(ids, faces))
        return FrameResult(index, time, tracked, width=result.width, height=result.height)

    def _follow(self, track_id: int, face: Face, index: int, time: float | None) -> TrackedFace:
        state = self._tracks.get(track_id)
        if state is None:
            state = self._tracks[track_id] = _TrackState(
                AgeSmoother(half_life=self.half_life), index, time, index, time
            )
        female = _female_probability(face)
        if self.smoothing:
            estimate = state.smoother.update(
                face.age,
                sigma=age_sigma(face),
                female_probability=female,
            )
        else:
            estimate = SmoothedEstimate(face.age, 0.0, female, 1)
        state.last_frame, state.last_time = index, time
        state.frames_seen += 1
        state.estimate = estimate
        gender, probability = _gender(estimate.female_probability)
        return TrackedFace(
            track_id=track_id,
            face=face,
            age_smoothed=estimate.age,
            age_spread=estimate.age_spread,
            gender_smoothed=gender,
            gender_probability_smoothed=probability,
            frames_seen=state.frames_seen,
        )

    def summaries(self) -> list[TrackSummary]:
        """One :class:`TrackSummary` per track seen so far, by id."""
        rows = []
        for track_id in sorted(self._tracks):
            state = self._tracks[track_id]
            if state.estimate is None:
                continue
            gender, probability = _gender(state.estimate.female_probability)
            rows.append(
                TrackSummary(
                    track_id=track_id,
                    first_frame=state.first_frame,
                    last_frame=state.last_frame,
                    first_time=state.first_time,
                    last_time=state.last_time,
                    frames_seen=state.frames_seen,
                    age_smoothed=state.estimate.age,
                    age_spread=state.estimate.age_spread,
                    gender=gender,
                    gender_probability=probability,
                )
            )
        return rows


def _female_probability(face: Face) -> float | None:
    if face.gender is None or face.gender_probability is None:
        return None
    p = face.gender_probability
    return p if face.gender == "female" else 1.0 - p


def _gender(p_female: float | None) -> tuple[Gender | None, float | None]:
    if p_female is None:
        return None, None
    return ("female", p_female) if p_female >= 0.5 else ("male", 1.0 - p_female)


class VideoRun(Iterator[FrameResult]):
    """What :func:`predict_video` returns: iterate it for one :class:`FrameResult` per
    scored frame; ask it how the reading went and for its tracks, during or after.

    Attributes:
        source: the opened :class:`~faceage.video_io.VideoSource` (``name``, ``fps``,
            ``width``, ``height``, ``frames_expected``, ``is_camera``).
        tracker: the :class:`VideoTracker` behind the results.
        every: every how many frames one is scored.
    """

    def __init__(
        self,
        source: VideoSource,
        tracker: VideoTracker,
        *,
        every: int = 1,
        on_frame: FrameCallback | None = None,
    ) -> None:
        self.source = source
        self.tracker = tracker
        self.every = every
        self._on_frame = on_frame
        self._results = self._generate()

    def __next__(self) -> FrameResult:
        return next(self._results)

    def __iter__(self) -> VideoRun:
        return self

    def __enter__(self) -> VideoRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop reading and release the file or camera."""
        self._results.close()
        self.source.close()

    @property
    def frames_read(self) -> int:
        """Frames read from the source so far, skipped ones included."""
        return self.source.frames_read

    @property
    def frames_expected(self) -> int | None:
        """The frame count a file's header gives (None for cameras and iterables)."""
        return self.source.frames_expected

    @property
    def ended_early(self) -> bool:
        """The file ended before the frame count its header gives (a truncated copy)."""
        return self.source.ended_early

    def tracks(self) -> list[TrackSummary]:
        """One :class:`TrackSummary` per track so far, by id."""
        return self.tracker.summaries()

    def _generate(self) -> Generator[FrameResult, None, None]:
        latest: FrameResult | None = None
        try:
            frames = self.source.frames(every=self.every, decode_all=self._on_frame is not None)
            for frame in frames:
                if frame.process:
                    latest = self._score(frame)
                if self._on_frame is not None and frame.image is not None:
                    self._on_frame(frame.index, frame.image, latest)
                if frame.process and latest is not None:
                    yield latest
        finally:
            self.source.close()

    def _score(self, frame: VideoFrame) -> FrameResult:
        if frame.error is not None:
            logger.warning("%s: %s", self.source.name, frame.error)
            return FrameResult(
                frame.index, frame.time, error=frame.error, error_type="VideoDecodeError"
            )
        return self.tracker.update(frame.image, index=frame.index, time=frame.time)


def predict_video(
    estimator: FrameEstimator,
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
    """Track and age every person of a video; see :meth:`faceage.AgeEstimator.predict_video`."""
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    opened = open_video(source, fps=fps)
    try:
        tracker = VideoTracker(
            estimator,
            fps=opened.fps,
            smoothing=smoothing,
            max_missed=max_missed,
            half_life=half_life,
            color_order=color_order,
        )
    except Exception:
        opened.close()
        raise
    return VideoRun(opened, tracker, every=every, on_frame=on_frame)
