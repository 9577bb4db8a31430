"""Video end to end: clips made in the test from UTKFace test faces (moving background,
drifting, growing faces, roll, focus, noise), scored with the shipped ``c3ae``.

Run with ``-s`` to see the figures (jitter of raw vs smoothed ages, frame-level vs
track-level MAE); ``python -m benchmarks.video_tracking`` records them.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from benchmarks.synthetic_video import (
    SCENARIOS,
    Clip,
    evaluate,
    scenario,
    scenario_clips,
    utkface_faces,
)
from faceage import AgeEstimator, CameraError, VideoDecodeError, VideoNotFoundError
from faceage.cli import main
from faceage.video_io import IterableSource
from faceage.video_results import FrameResult
from faceage.video_rows import ENDED_EARLY, output_columns
from tests._shared import UTKFACE

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    not (UTKFACE / "labels.csv").exists(), reason="needs ../shared/datasets/utkface"
)


@pytest.fixture(scope="module")
def estimator() -> AgeEstimator:
    return AgeEstimator.from_pretrained("c3ae")


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Clip]:
    return scenario_clips(tmp_path_factory.mktemp("clips"))


@pytest.fixture(scope="module")
def runs(estimator: AgeEstimator, clips: dict[str, Clip]) -> dict[str, list[FrameResult]]:
    return {name: list(estimator.predict_video(clip.path)) for name, clip in clips.items()}


@pytest.fixture(scope="module")
def figures(clips: dict[str, Clip], runs: dict[str, list[FrameResult]]) -> dict[str, Any]:
    return {name: evaluate(clips[name], runs[name]) for name in clips}


@pytest.mark.parametrize("name", SCENARIOS)
def test_one_track_per_person_and_no_id_switch(name: str, figures: dict[str, Any]) -> None:
    found = figures[name]
    assert found["tracks"] == found["people"], found
    assert found["id_switches"] == 0, found
    assert found["faces"] > 0


def test_smoothed_age_is_steadier_and_nearer_the_truth(figures: dict[str, Any]) -> None:
    raw = [s for f in figures.values() for s in f["raw_steps"]]
    smooth = [s for f in figures.values() for s in f["smooth_steps"]]
    tracks = [t for f in figures.values() for t in f["per_track"]]
    jitter_raw, jitter_smoothed = float(np.mean(raw)), float(np.mean(smooth))
    mae_frame = float(np.mean([t["mae_frame"] for t in tracks]))
    mae_weighted = float(np.mean([t["mae_frame_weighted"] for t in tracks]))
    mae_track = float(np.mean([t["error_final"] for t in tracks]))
    print(
        f"\nvideo figures over {len(figures)} clips, {len(tracks)} tracks, {len(raw)} steps: "
        f"jitter raw {jitter_raw:.3f} vs smoothed {jitter_smoothed:.3f} years/frame; "
        f"MAE frame-level {mae_frame:.2f} (weighted as the smoother weighs frames "
        f"{mae_weighted:.2f}) vs track-level {mae_track:.2f} years"
    )
    for name, found in figures.items():
        print(
            f"  {name}: jitter {found['jitter_raw']:.3f} -> {found['jitter_smoothed']:.3f}, "
            f"MAE {found['mae_frame_by_track']:.2f} -> {found['mae_track']:.2f}"
        )
    assert jitter_smoothed < 0.5 * jitter_raw
    # A track's age is a weighted mean of its frames' ages, so (no track here restarts)
    # it is never further from the truth than its frames on that weighted average; equal
    # only where a face's error never changes sign.
    for track in tracks:
        assert track["error_final"] <= track["mae_frame_weighted"] + 1e-6, track


def test_frames_and_times_are_the_sources(clips: dict[str, Clip], runs: dict[str, Any]) -> None:
    results = runs["single"]
    assert [r.index for r in results] == list(range(clips["single"].frames))
    assert results[25].time == pytest.approx(1.0)
    face = results[10].faces[0]
    assert face.age == face.face.age and face.box == face.face.box
    assert face.frames_seen == 11


def test_every_nth_frame(estimator: AgeEstimator, clips: dict[str, Clip]) -> None:
    run = estimator.predict_video(clips["crossing"].path, every=4)
    results = list(run)
    assert [r.index for r in results] == list(range(0, 100, 4))
    assert results[1].time == pytest.approx(4 / 25)
    assert run.frames_read == 100 and not run.ended_early
    assert {f.track_id for r in results for f in r.faces} == {1, 2}
    assert [t.frames_seen for t in run.tracks()] == [25, 25]


def test_track_gives_what_predict_video_gives(
    estimator: AgeEstimator, clips: dict[str, Clip], runs: dict[str, Any]
) -> None:
    capture = cv2.VideoCapture(str(clips["covered"].path))
    tracker = estimator.track(fps=25.0)
    mine = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        mine.append(tracker.update(frame))
    capture.release()
    expected = runs["covered"]
    assert len(mine) == len(expected)
    for a, b in zip(mine, expected):
        assert (a.index, a.time) == (b.index, pytest.approx(b.time))
        assert [f.track_id for f in a.faces] == [f.track_id for f in b.faces]
        assert [f.age_smoothed for f in a.faces] == pytest.approx([f.age_smoothed for f in b.faces])
    assert [t.track_id for t in tracker.summaries()] == [1]


def test_a_frame_that_fails_gets_an_error_and_the_run_goes_on(
    estimator: AgeEstimator, clips: dict[str, Clip]
) -> None:
    capture = cv2.VideoCapture(str(clips["single"].path))
    frames: list[Any] = [capture.read()[1] for _ in range(12)]
    capture.release()
    frames[5] = b"not an image"
    frames[6] = np.zeros((0, 0, 3), np.uint8)
    results = list(estimator.predict_video(frames, fps=10))
    assert [r.ok for r in results] == [True] * 5 + [False, False] + [True] * 5
    assert results[5].error_type == "ImageDecodeError" and results[5].faces == ()
    assert results[7].time == pytest.approx(0.7)
    assert {f.track_id for r in results for f in r.faces} == {1}  # a 2-frame gap: same track


def test_bad_sources_raise_one_typed_error(tmp_path: Path, estimator: AgeEstimator) -> None:
    with pytest.raises(VideoNotFoundError, match="no such file"):
        estimator.predict_video(tmp_path / "missing.mp4")
    with pytest.raises(VideoNotFoundError, match="not a file"):
        estimator.predict_video(tmp_path)
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 100)
    with pytest.raises(VideoDecodeError, match="cannot open it as a video"):
        estimator.predict_video(text)
    with pytest.raises(FileNotFoundError):  # also the built-in type
        estimator.predict_video(str(tmp_path / "missing.avi"))
    with pytest.raises(ValueError, match="every"):
        estimator.predict_video([], every=0)
    with pytest.raises(TypeError, match="iterable of arrays"):
        estimator.predict_video(np.zeros((4, 4, 3), np.uint8))


def _mjpg_clip(path: Path, frames: int = 20) -> bytes:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 25, (160, 120))
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    writer.release()
    return path.read_bytes()


def test_a_codec_opencv_cannot_decode_is_a_decode_error(
    tmp_path: Path, estimator: AgeEstimator
) -> None:
    data = _mjpg_clip(tmp_path / "clip.avi")
    unknown = tmp_path / "unknown.avi"  # a codec FFmpeg has no decoder for
    unknown.write_bytes(data[:400].replace(b"MJPG", b"ZZZZ") + data[400:])
    with pytest.raises(VideoDecodeError, match="cannot open it as a video"):
        estimator.predict_video(unknown)
    mislabelled = tmp_path / "hevc.avi"  # opens as H.265, yet no frame decodes
    mislabelled.write_bytes(data[:400].replace(b"MJPG", b"H265") + data[400:])
    with pytest.raises(VideoDecodeError, match="could not decode a frame"):
        estimator.predict_video(mislabelled)


def test_a_truncated_file_scores_every_readable_frame(
    tmp_path: Path, clips: dict[str, Clip], estimator: AgeEstimator
) -> None:
    source = tmp_path / "single.avi"
    whole = scenario("single", tmp_path, utkface_faces(1), fourcc="MJPG")
    assert whole.path == source
    data = source.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    run = estimator.predict_video(cut)
    results = list(run)
    assert run.ended_early and run.frames_expected == 80
    assert 20 < run.frames_read < 80 and len(results) == run.frames_read
    assert all(r.ok and len(r.faces) == 1 for r in results)

    out = tmp_path / "faces.csv"
    code = main(["video", str(cut), "--out", str(out), "--no-progress"])
    assert code == 1
    rows = list(csv.DictReader(out.open()))
    assert rows[-1]["error_type"] == ENDED_EARLY
    assert f"{run.frames_read} of the 80 frames" in rows[-1]["error"]
    assert len(rows) == run.frames_read + 1

    truncated_mp4 = tmp_path / "cut.mp4"  # an MP4 loses its index at the end: unreadable
    truncated_mp4.write_bytes(clips["single"].path.read_bytes()[:20000])
    with pytest.raises(VideoDecodeError, match="cut short"):
        estimator.predict_video(truncated_mp4)


def run_faceage(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "faceage", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_cli_video_out_summary_draw(tmp_path: Path, clips: dict[str, Clip]) -> None:
    clip = clips["crossing"]
    out, summary, drawn = tmp_path / "faces.csv", tmp_path / "tracks.csv", tmp_path / "a.mp4"
    done = run_faceage(
        "video", str(clip.path), "--out", str(out), "--summary", str(summary), "--draw", str(drawn)
    )
    assert done.returncode == 0, done.stderr
    assert "frames/s" in done.stderr and "2 track(s)" in done.stderr
    rows = list(csv.DictReader(out.open()))
    assert tuple(rows[0]) == output_columns()
    assert len(rows) == 200 and {r["track_id"] for r in rows} == {"1", "2"}
    assert rows[-1]["frame"] == "99" and float(rows[-1]["time"]) == pytest.approx(3.96)
    tracks = list(csv.DictReader(summary.open()))
    assert [t["track_id"] for t in tracks] == ["1", "2"]
    assert all(t["first_frame"] == "0" and t["frames_seen"] == "100" for t in tracks)
    assert all(float(t["age_spread"]) >= 0 for t in tracks)
    capture = cv2.VideoCapture(str(drawn))
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 100
    assert capture.read()[1].shape == (360, 480, 3)
    capture.release()

    again = run_faceage("video", str(clip.path), "--out", str(out))
    assert again.returncode == 2 and "--overwrite" in again.stderr


def test_cli_video_jsonl_every_and_missing_input(
    tmp_path: Path, clips: dict[str, Clip], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "faces.jsonl"
    code = main(["video", str(clips["handover"].path), "--out", str(out), "--every", "5"])
    assert code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["frame"] % 5 for r in rows} == {0}
    assert {r["track_id"] for r in rows} == {1, 2}
    assert "frames/s" in capsys.readouterr().err

    code = main(["video", str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "x.csv")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("faceage: error: ") and "no such file" in err[-1]
    assert main(["video", "--out", str(tmp_path / "y.csv")]) == 2  # neither file nor camera
    bad = ["video", str(clips["single"].path), "--out", str(tmp_path / "z.csv")]
    assert main([*bad, "--draw", str(tmp_path / "a.gif")]) == 2
    assert main([*bad, "--draw", str(clips["single"].path)]) == 2  # never over the input


def test_cli_ctrl_c_leaves_complete_files(tmp_path: Path, clips: dict[str, Clip]) -> None:
    out, summary, drawn = tmp_path / "faces.csv", tmp_path / "tracks.csv", tmp_path / "a.mp4"
    # the clip five times over (600 frames, ~7 s to score), so that it is still running
    # when the interrupt comes however fast the machine is
    capture = cv2.VideoCapture(str(clips["handover"].path))
    frames = []
    while (frame := capture.read()[1]) is not None:
        frames.append(frame)
    capture.release()
    long_clip = tmp_path / "long.avi"
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(long_clip), cv2.VideoWriter.fourcc(*"MJPG"), 25, (width, height))
    for frame in frames * 5:
        writer.write(frame)
    writer.release()
    command = [sys.executable, "-m", "faceage", "video", str(long_clip)]
    command += ["--out", str(out), "--summary", str(summary), "--draw", str(drawn)]
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if out.exists() and out.read_text().count("\n") > 10:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    rows = list(csv.DictReader(out.open()))
    assert 10 <= len(rows) < 5 * len(frames) and out.read_text().endswith("\n")
    tracks = list(csv.DictReader(summary.open()))
    assert tracks and tracks[0]["track_id"] == "1"
    capture = cv2.VideoCapture(str(drawn))
    assert capture.isOpened() and capture.read()[0]
    capture.release()


def test_camera_until_ctrl_c_writes_what_it_has(
    tmp_path: Path,
    clips: dict[str, Clip],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import faceage.video_io

    capture = cv2.VideoCapture(str(clips["single"].path))
    frames = [capture.read()[1] for _ in range(8)]
    capture.release()

    def camera_frames() -> Any:
        yield from frames
        raise KeyboardInterrupt  # the user presses Ctrl-C

    def fake_camera(index: int) -> IterableSource:
        source = IterableSource(camera_frames(), fps=25.0)
        source.name, source.is_camera = f"camera {index}", True
        return source  # type: ignore[return-value]

    monkeypatch.setattr(faceage.video_io, "_open_camera", fake_camera)
    out, summary = tmp_path / "cam.csv", tmp_path / "cam-tracks.csv"
    code = main(["video", "--camera", "0", "--out", str(out), "--summary", str(summary)])
    assert code == 0, capsys.readouterr().err
    assert len(list(csv.DictReader(out.open()))) == 8
    assert [t["frames_seen"] for t in csv.DictReader(summary.open())] == ["8"]


def test_a_camera_that_cannot_open_is_a_camera_error(estimator: AgeEstimator) -> None:
    with pytest.raises(CameraError, match="camera 57"):
        estimator.predict_video(57)
