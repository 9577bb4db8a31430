"""The worker pipeline: parallel runs give the rows a sequential run gives, in order,
with bounded look-ahead, per-image errors, and no thread left behind."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from faceage.batch import score_folder
from faceage.estimator import AgeEstimator
from faceage.pipeline import LOOKAHEAD, PreparedImage, check_workers, default_workers, stream
from faceage.results import Face, ImageResult
from tests.test_batch import (
    BAD_FILES,
    StubDetector,
    check_complete,
    make_mixed_folder,
    read_rows,
    real_face_files,
    tiny_estimator,
)


def _rows(results: list[ImageResult]) -> list[tuple[Any, ...]]:
    return [
        (
            r.source,
            r.error,
            r.error_type,
            r.width,
            r.height,
            tuple(
                (round(f.age, 4), f.box, f.landmarks, f.detection_score, f.gender) for f in r.faces
            ),
        )
        for r in results
    ]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_mixed_folder(tmp_path_factory.mktemp("mixed"), faces=12)


@pytest.mark.parametrize("detector", ["stub", "retinaface"])
def test_parallel_folder_equals_sequential(tmp_path: Path, folder: Path, detector: str) -> None:
    estimator = tiny_estimator(
        tmp_path, detector=StubDetector() if detector == "stub" else "retinaface"
    )
    sequential = list(estimator.predict_folder(folder, recursive=True, workers=1))
    assert {Path(r.source).name for r in sequential if not r.ok} == set(BAD_FILES)
    for workers, chunk_size in ((2, 32), (3, 4), (4, 1)):
        parallel = list(
            estimator.predict_folder(folder, recursive=True, workers=workers, chunk_size=chunk_size)
        )
        assert _rows(parallel) == _rows(sequential), (workers, chunk_size)


def test_parallel_batch_file_is_byte_identical(tmp_path: Path, folder: Path) -> None:
    estimator = tiny_estimator(tmp_path, detector="retinaface")
    outputs = []
    for workers in (1, 2, 3):
        out = tmp_path / f"ages-{workers}.jsonl"
        summary = score_folder(
            estimator, folder, out, recursive=True, chunk_size=5, workers=workers
        )
        assert summary.errors == len(BAD_FILES)
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]


def test_parallel_predict_batch_with_mixed_inputs(tmp_path: Path) -> None:
    estimator = tiny_estimator(tmp_path, detector="retinaface")
    faces = real_face_files(5)
    inputs: list[Any] = [
        str(faces[0]),
        faces[1].read_bytes(),
        b"not an image",
        str(tmp_path / "missing.jpg"),
        np.full((80, 80, 3), 120, np.uint8),
        b"",
        *(str(f) for f in faces[2:]),
    ]
    sequential = estimator.predict_batch(inputs, workers=1, chunk_size=3)
    parallel = estimator.predict_batch(inputs, workers=3, chunk_size=3)
    assert _rows(parallel) == _rows(sequential)
    assert [r.error_type for r in parallel][2:6] == [
        "ImageDecodeError",
        "ImageNotFoundError",
        None,
        "ImageDecodeError",
    ]


def _fake_prepared(source: str) -> PreparedImage:
    return PreparedImage(source, 10, 10, (), np.zeros((0, 1, 4, 4, 3), np.uint8))


def test_look_ahead_is_bounded_and_order_kept() -> None:
    """However slow the consumer, at most LOOKAHEAD + 1 chunks are prepared ahead."""
    prepared: list[str] = []
    lock = threading.Lock()

    def prepare(image: Any, source: str) -> PreparedImage:
        time.sleep(0.001 * (hash(source) % 3))  # finish out of order
        with lock:
            prepared.append(source)
        return _fake_prepared(source)

    chunk_size, workers = 4, 3
    names = [f"img{i:03d}" for i in range(60)]
    results = stream(
        ((None, n) for n in names),
        prepare=prepare,
        score=lambda items: [[] for _ in items],
        chunk_size=chunk_size,
        workers=workers,
    )
    seen = []
    for result in results:
        seen.append(result.source)
        time.sleep(0.002)  # a slow consumer: the workers must wait, not run ahead
        with lock:
            ahead = len(prepared) - len(seen)
        assert ahead <= (LOOKAHEAD + 1) * chunk_size
    assert seen == names


def test_failures_stay_in_their_image_or_chunk() -> None:
    def prepare(image: Any, source: str) -> PreparedImage:
        if source.endswith("7"):
            raise ValueError(f"{source}: cannot read\nsecond line")
        return _fake_prepared(source)

    def score(items: Any) -> list[list[Face]]:
        if any(item.source == "img05" for item in items):
            raise RuntimeError("model failed")
        return [[] for _ in items]

    names = [f"img{i:02d}" for i in range(20)]
    for workers in (1, 3):
        results = list(
            stream(
                ((None, n) for n in names),
                prepare=prepare,
                score=score,
                chunk_size=4,
                workers=workers,
            )
        )
        assert [r.source for r in results] == names
        errors = {r.source: r.error_type for r in results if not r.ok}
        # img05's chunk (img04-img07) fails in the model; img07 and img17 fail to load
        assert errors == {
            "img04": "RuntimeError",
            "img05": "RuntimeError",
            "img06": "RuntimeError",
            "img07": "ValueError",
            "img17": "ValueError",
        }
        assert next(r for r in results if r.source == "img07").error == "img07: cannot read"


def test_stopping_early_leaves_no_thread() -> None:
    before = threading.active_count()
    results = stream(
        ((None, f"img{i}") for i in range(1000)),
        prepare=lambda image, source: _fake_prepared(source),
        score=lambda items: [[] for _ in items],
        chunk_size=8,
        workers=4,
    )
    assert next(results).source == "img0"
    results.close()  # type: ignore[attr-defined]
    assert threading.active_count() == before


def test_workers_argument() -> None:
    assert check_workers(None) == default_workers() >= 1
    assert check_workers(3) == 3
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="workers must be"):
            check_workers(bad)  # type: ignore[arg-type]


def test_worker_threads_detect_on_their_own_session(tmp_path: Path) -> None:
    """Built by name with the default threads, the detector of the worker threads runs
    each call on one thread; a detector object the user gave is used as it is."""
    estimator = tiny_estimator(tmp_path, detector="retinaface")
    threaded = estimator.preparer.for_threads()
    assert threaded.detector is not estimator.detector
    options = threaded.detector._session.get_session_options()  # type: ignore[union-attr]
    assert options.intra_op_num_threads == 1
    stub = StubDetector()
    assert tiny_estimator(tmp_path / "b", detector=stub).preparer.for_threads().detector is stub


def test_cli_workers_give_the_same_file(tmp_path: Path, folder: Path) -> None:
    from faceage.cli import main

    estimator: AgeEstimator = tiny_estimator(tmp_path)
    model_dir = tmp_path / "tiny-model"
    assert estimator.spec.name == "tiny"
    outs = []
    for workers in ("1", "2"):
        out = tmp_path / f"cli-{workers}.csv"
        code = main(
            [
                "batch",
                str(folder),
                "--out",
                str(out),
                "--model",
                str(model_dir),
                "--recursive",
                "--workers",
                workers,
                "--no-progress",
            ]
        )
        assert code == 1  # the bad files
        check_complete_rows = read_rows(out)
        assert len({r["path"] for r in check_complete_rows}) > len(BAD_FILES)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


def test_stub_folder_is_complete_with_workers(tmp_path: Path, folder: Path) -> None:
    estimator = tiny_estimator(tmp_path, detector=StubDetector())
    out = tmp_path / "ages.csv"
    score_folder(estimator, folder, out, recursive=True, workers=2, chunk_size=3)
    check_complete(read_rows(out), folder, recursive=True)
