"""The tracker and the smoother on made-up detections: fast, no model, no video."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from faceage.results import Face, ImageResult
from faceage.smoothing import DEFAULT_CHANGE_FRAMES, DEFAULT_HALF_LIFE, AgeSmoother, age_sigma
from faceage.tracking import DEFAULT_MAX_MISSED, FaceTracker
from faceage.video import VideoTracker
from faceage.video_rows import face_columns, output_columns


def box_at(cx: float, cy: float, size: float = 100.0) -> tuple[float, float, float, float]:
    return (cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2)


def points_at(cx: float, cy: float, size: float = 100.0) -> list[tuple[float, float]]:
    template = [(-0.2, -0.15), (0.2, -0.15), (0.0, 0.05), (-0.15, 0.25), (0.15, 0.25)]
    return [(cx + dx * size, cy + dy * size) for dx, dy in template]


def test_two_faces_crossing_without_overlap_keep_their_ids() -> None:
    tracker = FaceTracker()
    history: list[list[int]] = []
    for t in range(60):
        a = (50 + 8 * t, 100)  # left to right, above
        b = (530 - 8 * t, 215)  # right to left, below: boxes never overlap
        boxes = [box_at(*a), box_at(*b)]
        order = [1, 0] if t % 2 else [0, 1]  # detectors do not keep an order
        ids = tracker.update([boxes[i] for i in order], [points_at(*(a, b)[i]) for i in order])
        history.append([ids[order.index(0)], ids[order.index(1)]])
    assert all(pair == [1, 2] for pair in history)


def test_a_track_survives_a_short_miss_and_ids_are_never_reused() -> None:
    tracker = FaceTracker(max_missed=3)
    assert tracker.update([box_at(100, 100)]) == [1]
    for _ in range(3):
        assert tracker.update([]) == []
    assert tracker.update([box_at(104, 100)]) == [1]  # back after 3 missed frames
    for _ in range(4):
        tracker.update([])
    assert tracker.live_ids == []
    assert tracker.update([box_at(104, 100)]) == [2]  # too long gone: a new id, never 1


def test_a_covered_moving_face_is_found_where_its_motion_leads() -> None:
    tracker = FaceTracker()
    for t in range(10):
        assert tracker.update([box_at(100 + 10 * t, 100)], [points_at(100 + 10 * t, 100)]) == [1]
    for _ in range(6):  # covered while it moves on by 60 px
        tracker.update([])
    assert tracker.update([box_at(100 + 10 * 16, 100)], [points_at(260, 100)]) == [1]


def test_a_face_far_away_is_a_new_person() -> None:
    tracker = FaceTracker()
    tracker.update([box_at(100, 100)])
    assert tracker.update([box_at(400, 100)]) == [2]
    assert tracker.update([box_at(100, 100), box_at(400, 100)]) == [1, 2]


def test_tracker_defaults_and_bad_settings() -> None:
    assert DEFAULT_MAX_MISSED == FaceTracker().max_missed == 10
    with pytest.raises(ValueError, match="max_missed"):
        FaceTracker(max_missed=-1)
    with pytest.raises(ValueError, match="landmark sets"):
        FaceTracker().update([box_at(0, 0)], [])


def test_smoothed_age_settles_and_is_steadier_than_the_frames() -> None:
    assert DEFAULT_HALF_LIFE is None  # the mean of all frames: see faceage.smoothing
    rng = np.random.default_rng(0)
    ages = 40 + rng.normal(0, 2.0, 200)
    smoother = AgeSmoother()
    smoothed = [smoother.update(float(a)).age for a in ages]
    assert smoothed[0] == ages[0]  # a new track starts from its own frame: no lag
    assert np.mean(np.abs(np.diff(smoothed))) < 0.2 * np.mean(np.abs(np.diff(ages)))
    assert smoothed[-1] == pytest.approx(np.mean(ages))
    assert smoother.estimate().age_spread == pytest.approx(np.std(ages))


def test_a_new_face_on_an_old_track_is_followed_within_change_frames() -> None:
    smoother = AgeSmoother()
    for value in [30.0, 31.0, 29.0] * 20:
        smoother.update(value)
    smoother.update(70.0)  # one odd frame moves the estimate a little
    assert smoother.estimate().age < 31
    # the odd frame was the first of a run: change_frames in a row restart the estimate
    estimates = [smoother.update(70.0 + (i % 2)).age for i in range(DEFAULT_CHANGE_FRAMES - 1)]
    assert estimates[-2] < 40
    assert estimates[-1] == pytest.approx(70.4, abs=0.1)  # the mean of the new face's frames
    assert smoother.observations == DEFAULT_CHANGE_FRAMES


def test_frames_weigh_by_their_interval_and_fade_only_when_asked() -> None:
    smoother = AgeSmoother()
    smoother.update(20.0, sigma=1.0)
    assert smoother.update(40.0, sigma=3.0).age == pytest.approx(22.0)  # weights 1 : 1/9
    plain = AgeSmoother()  # no interval: frames weigh alike, the estimate is their mean
    assert [plain.update(a).age for a in (20.0, 40.0, 30.0)] == pytest.approx([20, 30, 30])
    fading = AgeSmoother(half_life=1.0)
    fading.update(20.0)
    assert fading.update(40.0).age == pytest.approx(40.0 - 20.0 / 3)  # weights 0.5 : 1
    gender = AgeSmoother()
    gender.update(30.0, female_probability=0.9)
    assert gender.update(30.0, female_probability=0.3).female_probability == pytest.approx(0.6)
    with pytest.raises(ValueError, match="half_life"):
        AgeSmoother(half_life=0)


@dataclass(frozen=True)
class _IntervalFace:
    age_low: float | None = None
    age_high: float | None = None
    age_coverage: float | None = None
    age_std: float | None = None


def test_age_sigma_reads_an_interval_or_age_std_where_a_face_has_one() -> None:
    assert age_sigma(_IntervalFace(20.0, 40.0, 0.9)) == pytest.approx(10 / 1.6449, rel=1e-3)
    assert age_sigma(_IntervalFace(20.0, 40.0)) == pytest.approx(10 / 1.6449, rel=1e-3)
    assert age_sigma(_IntervalFace(age_std=3.0)) == 3.0
    assert age_sigma(_IntervalFace()) is None
    plain = Face(age=30.0, box=(0, 0, 1, 1), landmarks=(), detection_score=1.0)
    assert age_sigma(plain) is None or age_sigma(plain) > 0


class _ScriptedEstimator:
    """Returns prepared results in order, like predict_batch would."""

    def __init__(self, results: Sequence[ImageResult]) -> None:
        self.results = list(results)

    def predict_batch(self, images: Iterable[Any], **kwargs: Any) -> list[ImageResult]:
        return [self.results.pop(0) for _ in images]


def _face(cx: float, age: float, p_female: float) -> Face:
    gender = "female" if p_female >= 0.5 else "male"
    return Face(
        age=age,
        box=box_at(cx, 100),
        landmarks=tuple(points_at(cx, 100)),
        detection_score=0.99,
        gender=gender,
        gender_probability=max(p_female, 1 - p_female),
    )


def test_video_tracker_links_smooths_and_summarises() -> None:
    frames = [
        ImageResult("f", (_face(100 + 5 * i, 30 + (-1) ** i * 3, 0.7 - 0.3 * (i == 2)),), 640, 480)
        for i in range(6)
    ]
    frames.insert(3, ImageResult("f", error="bad frame", error_type="ImageDecodeError"))
    tracker = VideoTracker(_ScriptedEstimator(frames), fps=10.0)
    results = [tracker.update(object()) for _ in frames]
    assert [r.index for r in results] == list(range(7))
    assert results[3].error == "bad frame" and results[3].faces == ()
    assert results[4].time == pytest.approx(0.4)
    faces = [r.faces[0] for r in results if r.ok]
    assert {f.track_id for f in faces} == {1}
    assert faces[-1].age_smoothed == pytest.approx(30.0)  # the mean of 33, 27, 33...
    assert faces[2].gender == "male" and faces[2].gender_smoothed == "female"
    assert faces[-1].frames_seen == 6 and faces[-1].age == faces[-1].face.age
    [summary] = tracker.summaries()
    assert (summary.track_id, summary.first_frame, summary.last_frame) == (1, 0, 6)
    assert summary.frames_seen == 6 and summary.last_time == pytest.approx(0.6)
    assert summary.age_smoothed == pytest.approx(30.0)
    assert summary.age_spread == pytest.approx(3.0)
    assert summary.gender == "female"
    data = faces[0].to_dict()
    assert data["track_id"] == 1 and data["age"] == 33 and "age_smoothed" in data


def test_without_smoothing_the_smoothed_fields_are_the_frames_own() -> None:
    frames = [ImageResult("f", (_face(100, age, 0.2),), 64, 64) for age in (20.0, 40.0)]
    tracker = VideoTracker(_ScriptedEstimator(frames), smoothing=False)
    last = [tracker.update(object()) for _ in frames][-1].faces[0]
    assert last.age_smoothed == 40.0 and last.gender_smoothed == "male"
    assert last.gender_probability_smoothed == pytest.approx(0.8)
    assert math.isfinite(last.age_spread)


def test_output_columns_follow_the_face_fields() -> None:
    """A field added to Face (an age interval, say) becomes a column with no other change."""
    plain = Face(age=30.0, box=(0, 0, 1, 1), landmarks=(), detection_score=1.0)
    keys = [k for k in plain.to_dict() if k not in ("age", "box")]
    assert set(keys) <= set(face_columns())
    columns = output_columns()
    assert columns[:5] == ("frame", "time", "track_id", "age", "age_smoothed")
    assert {"x1", "y1", "x2", "y2", "gender_smoothed", "error", "error_type"} <= set(columns)
