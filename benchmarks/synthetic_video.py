"""Video clips made on the spot from UTKFace face chips, with the truth of every frame.

Faces are pasted onto a moving background, drift, change size, roll a little, go in and
out of focus and get camera noise; the scenarios are the cases video tracking has to
get right: one face, two faces crossing paths without overlapping, one person leaving
and another entering, and a face covered for a few frames. ``tests/test_video.py`` and
``benchmarks/video_speed.py`` / ``video_tracking.py`` make their clips here. Nothing
made here is ever committed: the faces are UTKFace's (non-commercial research only).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from faceage.smoothing import age_sigma, frame_weight

#: UTKFace test chips used by the scenarios (file name, true age), fixed so every run
#: sees the same faces.
UTKFACE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "utkface"


@dataclass(frozen=True)
class Person:
    """One face in a clip: the chip, its true age, and where it is in which frames.

    ``start`` / ``end`` are ``(cx, cy, size)`` at the first and last visible frame; the
    face moves linearly between them. ``covered`` lists frames where a card hides it.
    """

    chip: np.ndarray
    age: int
    first: int
    last: int
    start: tuple[float, float, float]
    end: tuple[float, float, float]
    covered: frozenset[int] = frozenset()

    def place(self, frame: int) -> tuple[float, float, float] | None:
        if not self.first <= frame <= self.last:
            return None
        share = (frame - self.first) / max(self.last - self.first, 1)
        return tuple(a + (b - a) * share for a, b in zip(self.start, self.end))  # type: ignore[return-value]


@dataclass
class Clip:
    """A written clip and its truth: for each frame, ``(person index, box)`` per face
    in view (covered faces excluded)."""

    path: Path
    people: list[Person]
    frames: int
    fps: float
    truth: list[list[tuple[int, tuple[float, float, float, float]]]] = field(default_factory=list)


def utkface_faces(
    count: int, *, split: str = "test", root: Path = UTKFACE_DIR
) -> list[tuple[Path, int]]:
    """``count`` chips of one split with ages spread over 18-75 (fixed choice)."""
    with open(root / "labels.csv", newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["split"] == split]
    wanted = np.linspace(18, 75, count)
    chosen: list[tuple[Path, int]] = []
    used: set[str] = set()
    for age in wanted:
        best = min(
            (r for r in rows if r["file"] not in used),
            key=lambda r: (abs(int(r["age"]) - age), r["file"]),
        )
        used.add(best["file"])
        chosen.append((root / "images" / best["file"], int(best["age"])))
    return chosen


def _background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    small = rng.integers(40, 215, size=(6, 8, 3), dtype=np.uint8)
    texture = cv2.resize(small, (2 * width, 2 * height), interpolation=cv2.INTER_CUBIC)
    return cv2.GaussianBlur(texture, (0, 0), 9)


def _paste(
    canvas: np.ndarray,
    chip: np.ndarray,
    cx: float,
    cy: float,
    size: float,
    roll: float,
    blur: float,
) -> tuple[float, float, float, float]:
    side = max(8, round(size))
    face = cv2.resize(chip, (side, side), interpolation=cv2.INTER_AREA)
    matrix = cv2.getRotationMatrix2D((side / 2, side / 2), roll, 1.0)
    face = cv2.warpAffine(face, matrix, (side, side), borderMode=cv2.BORDER_REFLECT)
    if blur > 0.05:
        face = cv2.GaussianBlur(face, (0, 0), blur)
    # The whole chip (face, hair, shoulders: the context the models were trained with),
    # its edges feathered into the background.
    edge = max(2, side // 25)
    sharp = np.zeros((side, side), np.float32)
    sharp[edge:-edge, edge:-edge] = 1.0
    mask = cv2.GaussianBlur(sharp, (0, 0), edge)[..., None]
    x1, y1 = round(cx - side / 2), round(cy - side / 2)
    h, w = canvas.shape[:2]
    sx1, sy1 = max(0, -x1), max(0, -y1)
    dx1, dy1 = max(0, x1), max(0, y1)
    dx2, dy2 = min(w, x1 + side), min(h, y1 + side)
    if dx2 <= dx1 or dy2 <= dy1:
        return (cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2)
    region = canvas[dy1:dy2, dx1:dx2].astype(np.float32)
    part = face[sy1 : sy1 + dy2 - dy1, sx1 : sx1 + dx2 - dx1].astype(np.float32)
    alpha = mask[sy1 : sy1 + dy2 - dy1, sx1 : sx1 + dx2 - dx1]
    canvas[dy1:dy2, dx1:dx2] = (alpha * part + (1 - alpha) * region).astype(np.uint8)
    return (cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2)


def render_frame(
    people: Sequence[Person],
    index: int,
    width: int,
    height: int,
    background: np.ndarray,
    rng: np.random.Generator,
    phase: float = 0.0,
) -> tuple[np.ndarray, list[tuple[int, tuple[float, float, float, float]]]]:
    """One frame and its truth (person index, box) for the faces in view; ``phase``
    shifts the roll and focus cycles, so clips do not all end at the same point of them."""
    ox = int((width / 2) * (1 + math.sin(index / 40)))  # a slowly panning background
    oy = int((height / 2) * (1 + math.cos(index / 55)))
    canvas = background[oy : oy + height, ox : ox + width].copy()
    truth = []
    for number, person in enumerate(people):
        place = person.place(index)
        if place is None:
            continue
        cx, cy, size = place
        roll = 4.0 * math.sin(index / 7 + number + phase)  # small head roll
        blur = 0.6 + 0.6 * math.sin(index / 11 + 2 * number + phase)  # focus coming and going
        box = _paste(canvas, person.chip, cx, cy, size, roll, max(blur, 0.0))
        if index in person.covered:
            x1, y1, x2, y2 = (round(v) for v in box)
            cv2.rectangle(canvas, (x1 - 4, y1 - 4), (x2 + 4, y2 + 4), (90, 90, 90), -1)
            continue
        inside = box[0] >= 0 and box[1] >= 0 and box[2] <= width and box[3] <= height
        if inside:
            truth.append((number, box))
    noise = rng.normal(0, 4.0, canvas.shape)  # camera noise
    return np.clip(canvas + noise, 0, 255).astype(np.uint8), truth


def write_clip(
    path: Path,
    people: Sequence[Person],
    *,
    frames: int,
    width: int = 480,
    height: int = 360,
    fps: float = 25.0,
    seed: int = 0,
    fourcc: str = "mp4v",
) -> Clip:
    """Write ``frames`` frames of ``people`` to ``path`` with ``cv2.VideoWriter``."""
    rng = np.random.default_rng(seed)
    background = _background(width, height, rng)
    phase = float(rng.uniform(0, 2 * math.pi))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {fourcc} to {path}")
    clip = Clip(path, list(people), frames, fps)
    try:
        for index in range(frames):
            image, truth = render_frame(people, index, width, height, background, rng, phase)
            writer.write(image)
            clip.truth.append(truth)
    finally:
        writer.release()
    return clip


def load_chip(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    if image is None:
        raise FileNotFoundError(path)
    return image


def scenario(
    name: str, folder: Path, faces: Sequence[tuple[Path, int]], *, fourcc: str = "mp4v"
) -> Clip:
    """One of the named clips, written into ``folder``.

    * ``single``: one face drifting right and growing, 80 frames;
    * ``crossing``: two faces crossing paths, one above the other (never overlapping), 100;
    * ``handover``: one face leaves at the right, another enters from the left, 120;
    * ``covered``: one face covered by a card for frames 30-37, 80.
    """
    chips = [(load_chip(p), age) for p, age in faces]
    suffix = ".avi" if fourcc == "MJPG" else ".mp4"
    path = folder / f"{name}{suffix}"
    if name == "single":
        (a, age_a) = chips[0]
        people = [Person(a, age_a, 0, 79, (150, 170, 110), (330, 190, 150))]
        return write_clip(path, people, frames=80, fourcc=fourcc)
    if name == "crossing":
        (a, age_a), (b, age_b) = chips[0], chips[1]
        people = [
            Person(a, age_a, 0, 99, (80, 95, 120), (400, 105, 130)),
            Person(b, age_b, 0, 99, (400, 265, 125), (80, 255, 115)),
        ]
        return write_clip(path, people, frames=100, seed=1, fourcc=fourcc)
    if name == "handover":
        (a, age_a), (b, age_b) = chips[0], chips[1]
        people = [
            Person(a, age_a, 0, 54, (150, 180, 130), (560, 180, 130)),
            Person(b, age_b, 65, 119, (-80, 170, 125), (300, 175, 140)),
        ]
        return write_clip(path, people, frames=120, seed=2, fourcc=fourcc)
    if name == "covered":
        (a, age_a) = chips[0]
        covered = frozenset(range(30, 38))
        people = [Person(a, age_a, 0, 79, (140, 180, 130), (340, 170, 120), covered)]
        return write_clip(path, people, frames=80, seed=3, fourcc=fourcc)
    raise ValueError(f"unknown scenario {name!r}")


SCENARIOS = ("single", "crossing", "handover", "covered")


def scenario_clips(folder: Path, *, fourcc: str = "mp4v") -> dict[str, Clip]:
    """The four scenarios with the faces ``tests/test_video.py`` uses (ages 18, 37, 56, 75)."""
    faces = utkface_faces(4)
    chosen = {
        "single": faces[:1],
        "crossing": faces[1:3],
        "handover": [faces[3], faces[0]],
        "covered": faces[2:3],
    }
    return {name: scenario(name, folder, chosen[name], fourcc=fourcc) for name in SCENARIOS}


def person_of(
    box: Sequence[float], truth: list[tuple[int, tuple[float, float, float, float]]]
) -> int | None:
    """The person whose true box is nearest ``box`` (centre distance under one face size)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    best, best_gap = None, math.inf
    for number, (x1, y1, x2, y2) in truth:
        gap = math.hypot((x1 + x2) / 2 - cx, (y1 + y2) / 2 - cy) / max(x2 - x1, 1.0)
        if gap < best_gap:
            best, best_gap = number, gap
    return best if best_gap < 0.5 else None


def evaluate(clip: Clip, results: Sequence[Any]) -> dict[str, Any]:
    """Tracks, id switches, jitter and MAE of one run's ``FrameResult`` list on ``clip``.

    * ``tracks``: distinct track ids; ``people``: people who were in view;
    * ``id_switches``: tracks that held more than one person plus people that got more
      than one track;
    * ``jitter_raw`` / ``jitter_smoothed``: mean absolute change of ``age`` /
      ``age_smoothed`` between a track's consecutive scored frames (all steps pooled);
    * ``mae_frame``: mean |age - truth| over every face of every frame;
      ``mae_frame_by_track``: the same per track, then averaged over tracks;
      ``mae_frame_weighted`` (per track): the frames' errors weighted as the smoother
      weighs them (1 / sigma**2 from each face's interval);
      ``mae_track``: mean |final age_smoothed - truth| over tracks;
    * ``per_track``: those figures for each track.
    """
    people_of_track: dict[int, dict[int, int]] = {}
    tracks_of_person: dict[int, set[int]] = {}
    series: dict[int, list[tuple[float, float, float]]] = {}
    errors = []
    for result in results:
        for face in result.faces:
            weight = frame_weight(age_sigma(face.face))
            series.setdefault(face.track_id, []).append((face.age, face.age_smoothed, weight))
            person = person_of(face.box, clip.truth[result.index])
            if person is None:  # e.g. a face half out of the picture: no truth box
                continue
            votes = people_of_track.setdefault(face.track_id, {})
            votes[person] = votes.get(person, 0) + 1
            tracks_of_person.setdefault(person, set()).add(face.track_id)
            errors.append(abs(face.age - clip.people[person].age))
    raw_steps: list[float] = []
    smooth_steps: list[float] = []
    per_track = []
    for track_id, values in sorted(series.items()):
        ages = np.array(values)
        raw_steps += list(np.abs(np.diff(ages[:, 0])))
        smooth_steps += list(np.abs(np.diff(ages[:, 1])))
        counts = people_of_track.get(track_id)
        if not counts:
            continue
        truth = clip.people[max(counts, key=lambda p: counts[p])].age
        per_track.append(
            {
                "track_id": track_id,
                "true_age": truth,
                "frames": len(ages),
                # over all the track's frames: the ones its smoothed age rests on
                "mae_frame": float(np.mean(np.abs(ages[:, 0] - truth))),
                # the same, each frame weighing what it weighs in the smoothed age
                "mae_frame_weighted": float(
                    np.average(np.abs(ages[:, 0] - truth), weights=ages[:, 2])
                ),
                "error_final": float(abs(ages[-1, 1] - truth)),
                "age_final": float(ages[-1, 1]),
            }
        )
    switches = sum(len(p) - 1 for p in people_of_track.values())
    switches += sum(len(t) - 1 for t in tracks_of_person.values())
    seen_ids = {face.track_id for result in results for face in result.faces}

    def mean(values: Sequence[float]) -> float:
        return float(np.mean(values)) if len(values) else math.nan

    return {
        "tracks": len(seen_ids),
        "people": len({n for frame in clip.truth for n, _ in frame}),
        "id_switches": switches,
        "faces": len(errors),
        "jitter_raw": mean(raw_steps),
        "jitter_smoothed": mean(smooth_steps),
        "mae_frame": mean(errors),
        "mae_frame_by_track": mean([t["mae_frame"] for t in per_track]),
        "mae_track": mean([t["error_final"] for t in per_track]),
        "steps": len(raw_steps),
        "raw_steps": raw_steps,
        "smooth_steps": smooth_steps,
        "per_track": per_track,
    }
