"""Link the faces of successive frames into tracks, so the face of frame 12 is known to
be the face of frame 11.

Pure numpy, no model: each live track predicts where its face is now (its last box and
landmarks moved on by its recent velocity), every (track, face) pair within reach gets a
cost from box overlap and landmark distance, and the cheapest pairs are taken greedily.
A face left over starts a new track; a track left over survives ``max_missed`` frames
(an occlusion, a missed detection) and is then closed. Ids count up from 1 and are never
reused, so an id names one person for the whole run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np

Box = Sequence[float]
Points = Sequence[Sequence[float]]

#: Defaults of :class:`FaceTracker` (guarded by tests/test_tracking.py).
DEFAULT_MAX_MISSED: Final = 10
DEFAULT_MIN_IOU: Final = 0.2
DEFAULT_MAX_DISTANCE: Final = 0.5
# How much further (in face sizes) a track may reach per frame it has been missing:
# its predicted position grows less sure the longer the face is unseen.
_REACH_PER_MISSED_FRAME: Final = 0.1
# Velocity is an exponential mean of recent motion; this is the weight of the newest.
_VELOCITY_GAIN: Final = 0.5


@dataclass
class _Track:
    track_id: int
    box: np.ndarray  # (4,) x1, y1, x2, y2
    points: np.ndarray | None  # (5, 2) landmarks, or None
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))
    missed: int = 0
    hits: int = 1

    def predicted(self) -> tuple[np.ndarray, np.ndarray | None]:
        shift = self.velocity * (self.missed + 1)
        box = self.box + np.concatenate([shift, shift])
        return box, None if self.points is None else self.points + shift


class FaceTracker:
    """Gives each face of each frame a track id.

    Args:
        max_missed: frames a track survives without its face (occlusion, a missed
            detection) before it is closed; a face seen again later gets a new id.
        min_iou: box overlap (intersection over union, with the track's predicted box)
            that alone is enough to link a face to a track.
        max_distance: mean landmark distance (in face sizes: the square root of the box
            area) that alone is enough, for faces that moved further than their boxes
            overlap; it grows by 0.1 per frame a track has been missing.
    """

    def __init__(
        self,
        *,
        max_missed: int = DEFAULT_MAX_MISSED,
        min_iou: float = DEFAULT_MIN_IOU,
        max_distance: float = DEFAULT_MAX_DISTANCE,
    ) -> None:
        if max_missed < 0:
            raise ValueError(f"max_missed must be >= 0, got {max_missed}")
        if not 0.0 < min_iou <= 1.0:
            raise ValueError(f"min_iou must be in (0, 1], got {min_iou}")
        if max_distance <= 0:
            raise ValueError(f"max_distance must be > 0, got {max_distance}")
        self.max_missed = max_missed
        self.min_iou = min_iou
        self.max_distance = max_distance
        self._tracks: list[_Track] = []
        self._next_id = 1

    @property
    def live_ids(self) -> list[int]:
        """Ids of the tracks still open (seen, or missing for at most ``max_missed``)."""
        return [t.track_id for t in self._tracks]

    def update(
        self, boxes: Sequence[Box], landmarks: Sequence[Points | None] | None = None
    ) -> list[int]:
        """Link one frame's faces to the tracks; returns the track id of each face, in order.

        Args:
            boxes: ``(x1, y1, x2, y2)`` per face.
            landmarks: the five landmarks per face (or None per face, or None for all).
        """
        if landmarks is not None and len(landmarks) != len(boxes):
            raise ValueError(f"got {len(boxes)} boxes but {len(landmarks)} landmark sets")
        faces = [np.asarray(b, dtype=np.float64).reshape(4) for b in boxes]
        points = [_points(None if landmarks is None else landmarks[i]) for i in range(len(faces))]
        ids: list[int | None] = [None] * len(faces)
        matched_tracks: set[int] = set()
        for _cost, t, d in sorted(self._candidates(faces, points)):
            if t in matched_tracks or ids[d] is not None:
                continue
            track = self._tracks[t]
            step = track.missed + 1
            moved = (_center(faces[d]) - _center(track.box)) / step
            gain = 1.0 if track.hits == 1 else _VELOCITY_GAIN
            track.velocity = gain * moved + (1.0 - gain) * track.velocity
            track.box, track.points, track.missed = faces[d], points[d], 0
            track.hits += 1
            matched_tracks.add(t)
            ids[d] = track.track_id
        survivors = []
        for index, track in enumerate(self._tracks):
            if index not in matched_tracks:
                track.missed += 1
                if track.missed > self.max_missed:
                    continue
            survivors.append(track)
        self._tracks = survivors
        for d, found in enumerate(ids):
            if found is None:
                track = _Track(self._next_id, faces[d], points[d])
                self._next_id += 1
                self._tracks.append(track)
                ids[d] = track.track_id
        return [i for i in ids if i is not None]

    def _candidates(
        self, faces: list[np.ndarray], points: list[np.ndarray | None]
    ) -> list[tuple[float, int, int]]:
        pairs = []
        for t, track in enumerate(self._tracks):
            box, track_points = track.predicted()
            reach = self.max_distance * (1.0 + _REACH_PER_MISSED_FRAME * track.missed)
            for d, face in enumerate(faces):
                overlap = iou(box, face)
                size = np.sqrt(max(_area(box), 1e-6) ** 0.5 * max(_area(face), 1e-6) ** 0.5)
                if track_points is not None and points[d] is not None:
                    gap = float(np.linalg.norm(track_points - points[d], axis=1).mean())
                else:
                    gap = float(np.linalg.norm(_center(box) - _center(face)))
                distance = gap / size
                if overlap >= self.min_iou or distance <= reach:
                    pairs.append((distance + (1.0 - overlap), t, d))
        return pairs


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes (0 for empty boxes)."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = float(width * height)
    union = _area(a) + _area(b) - inter
    return inter / union if union > 0 else 0.0


def _area(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0))


def _center(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def _points(landmarks: Points | None) -> np.ndarray | None:
    if landmarks is None:
        return None
    array = np.asarray(landmarks, dtype=np.float64)
    return array if array.ndim == 2 and array.shape[1] == 2 and len(array) else None
