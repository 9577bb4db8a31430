"""Reliability under concurrency: one AgeEstimator shared by threads answers like
sequential calls (tests/test_estimator.py covers ``predict``; here ``predict_batch`` and
``predict_folder`` with bad inputs mixed in), and threads or processes fetching the same
weights at once all succeed with a single cached copy."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from faceage import hub
from faceage.estimator import AgeEstimator
from faceage.results import ImageResult
from tests.hub_server import HubServer
from tests.test_batch import real_face_files, tiny_estimator
from tests.test_hub import FILENAME, REPO, YUNET, YUNET_BYTES, resolve
from tests.test_hub import yunet_hub as yunet_hub  # the fixture, re-exported

REPO_ROOT = Path(__file__).resolve().parents[1]
THREADS = 8


def _in_threads(work: Callable[[int], Any], count: int = THREADS) -> list[Any]:
    """Run ``work(i)`` in ``count`` threads released together; their answers in order."""
    barrier = threading.Barrier(count)
    answers: list[Any] = [None] * count
    failures: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            answers[index] = work(index)
        except BaseException as exc:  # surfaced below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not failures, failures
    return answers


def _summary(results: list[ImageResult]) -> list[tuple[Any, ...]]:
    return [
        (
            r.source,
            r.error_type,
            r.width,
            r.height,
            tuple((round(f.age, 4), tuple(round(v, 2) for v in f.box)) for f in r.faces),
        )
        for r in results
    ]


@pytest.fixture(scope="module")
def mixed_inputs(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    folder = tmp_path_factory.mktemp("mixed")
    faces = [str(p) for p in real_face_files(6)]
    (folder / "bad.jpg").write_bytes(b"not an image")
    return [
        faces[0],
        Path(faces[1]).read_bytes(),
        str(folder / "bad.jpg"),
        faces[2],
        str(folder / "missing.jpg"),
        np.full((80, 80, 3), 120, np.uint8),
        b"",
        *faces[3:],
    ]


@pytest.mark.parametrize("detector", [None, "retinaface"])
def test_predict_batch_from_threads_matches_sequential(
    tmp_path: Path, mixed_inputs: list[Any], detector: str | None
) -> None:
    estimator = tiny_estimator(tmp_path, detector=detector)
    expected = _summary(estimator.predict_batch(mixed_inputs))
    assert [e[1] for e in expected].count(None) == 7  # bad inputs are in the mix

    def work(index: int) -> list[tuple[Any, ...]]:
        # Each thread rotates the inputs, so threads hit different images at once.
        shift = index % len(mixed_inputs)
        rotated = mixed_inputs[shift:] + mixed_inputs[:shift]
        answer = _summary(estimator.predict_batch(rotated))
        return answer[len(answer) - shift :] + answer[: len(answer) - shift]

    for answer in _in_threads(work):
        assert answer == expected


def test_predict_folder_from_threads_matches_sequential(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for index, source in enumerate(real_face_files(10)):
        (folder / f"{index:02d}.jpg").write_bytes(source.read_bytes())
    (folder / "zz-notes.txt").write_text("not an image")
    estimator: AgeEstimator = tiny_estimator(tmp_path, detector="retinaface")
    expected = _summary(list(estimator.predict_folder(folder, chunk_size=3)))
    for answer in _in_threads(
        lambda i: _summary(list(estimator.predict_folder(folder, chunk_size=1 + i % 4)))
    ):
        assert answer == expected


def test_threads_fetching_the_same_weights_share_one_download(
    yunet_hub: HubServer, offline_hf_cache: Path
) -> None:
    yunet_hub.state.delay = 0.2  # so the threads overlap
    paths = _in_threads(lambda i: resolve())
    assert len(set(paths)) == 1 and paths[0].read_bytes() == YUNET_BYTES
    blobs = [p for p in offline_hf_cache.rglob("blobs/*") if p.is_file()]
    assert [p.name for p in blobs] == [YUNET.file.sha256]
    assert 1 <= yunet_hub.state.count("GET") <= THREADS


@pytest.mark.skipif(sys.platform == "win32", reason="uses POSIX symlinks in the HF cache")
def test_two_processes_fetching_at_once_both_succeed_with_one_copy(
    yunet_hub: HubServer, offline_hf_cache: Path
) -> None:
    yunet_hub.state.delay = 0.5  # both are mid-download together
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    assert env["HF_ENDPOINT"] == yunet_hub.endpoint and env["HF_HUB_OFFLINE"] == "0"
    command = [sys.executable, "-m", "faceage", "download", "--detector", "yunet"]
    processes = [
        subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in processes]
    for process, (_, err) in zip(processes, outputs):
        assert process.returncode == 0, err
    lines = [out.strip() for out, _ in outputs]
    assert lines[0] == lines[1] and lines[0].startswith("yunet\t")
    path = Path(lines[0].split("\t", 1)[1])
    assert offline_hf_cache in path.parents
    assert hashlib.sha256(path.read_bytes()).hexdigest() == YUNET.file.sha256
    repo_dir = offline_hf_cache / f"models--{REPO.replace('/', '--')}"
    blobs = [p for p in (repo_dir / "blobs").iterdir()]
    assert [p.name for p in blobs] == [YUNET.file.sha256]  # one copy, no partials left
    snapshots = list((repo_dir / "snapshots").rglob(FILENAME))
    assert len(snapshots) == 1 and snapshots[0].resolve() == blobs[0]
    assert 1 <= yunet_hub.state.count("GET") <= 2
    hub.clear_verification_cache()
    assert resolve() == path  # and this process finds it without the network
