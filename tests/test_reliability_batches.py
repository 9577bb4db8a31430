"""Reliability, long runs: ``faceage batch`` keeps its memory flat however many images it
scores, and a run killed with SIGKILL at any moment resumes into an output holding every
image exactly once, byte for byte what an uninterrupted run writes.

The folders are hard links to UTKFace test faces (copies where links cannot be made),
scored by the tiny model with ``--detector none`` so thousands of images take seconds.
``pytest --run-slow tests/test_reliability_batches.py`` also runs the 10,000-image
measurement quoted in the README.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests._shared import utkface_image, utkface_rows
from tests.test_batch import read_rows, rows_by_path
from tests.tiny_models import write_tiny_model

REPO = Path(__file__).resolve().parents[1]
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and wait4 are POSIX")


def make_face_folder(folder: Path, count: int) -> Path:
    """``count`` UTKFace test faces named ``00000.jpg``...: hard links, else copies."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = [utkface_image(row) for row in utkface_rows("test")]
    for index in range(count):
        target = folder / f"{index:05d}.jpg"
        try:
            os.link(sources[index % len(sources)], target)
        except OSError:  # another file system, or links not allowed
            shutil.copyfile(sources[index % len(sources)], target)
    return folder


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(write_tiny_model(tmp_path_factory.mktemp("model") / "tiny"))


def batch_command(folder: Path, out: Path, model: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "faceage",
        "batch",
        str(folder),
        "--out",
        str(out),
        "--model",
        model,
        "--detector",
        "none",
        "--threads",
        "1",
        "--no-progress",
        *extra,
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def peak_rss_mb(command: list[str], *, timeout: float = 600) -> float:
    """Run ``command`` to completion; its peak resident memory (VmHWM) in MB."""
    process = subprocess.Popen(
        command, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"{command} ran past {timeout} s")
        time.sleep(0.05)
    stderr = process.stderr.read().decode() if process.stderr else ""
    assert os.waitstatus_to_exitcode(status) == 0, stderr
    # ru_maxrss is in kilobytes on Linux, bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    return usage.ru_maxrss * scale / (1 << 20)


def _memory_growth(
    tmp_path: Path, model: str, small: int, large: int, *extra: str
) -> tuple[float, float]:
    peaks = []
    for count in (small, large):
        folder = make_face_folder(tmp_path / f"faces-{count}", count)
        out = tmp_path / f"ages-{count}.csv"
        peaks.append(peak_rss_mb(batch_command(folder, out, model, *extra)))
        rows = read_rows(out)
        assert len(rows) == count and len(rows_by_path(rows)) == count
    print(
        f"peak RSS of faceage batch {' '.join(extra)}: {small} images {peaks[0]:.1f} MB, "
        f"{large} images {peaks[1]:.1f} MB"
    )
    return peaks[0], peaks[1]


@posix_only
@pytest.mark.parametrize("workers", ["1", "2"])
def test_memory_does_not_grow_with_the_number_of_images(
    tmp_path: Path, tiny_model: str, workers: str
) -> None:
    small, large = _memory_growth(tmp_path, tiny_model, 300, 1_500, "--workers", workers)
    assert large < small + 25


@posix_only
@pytest.mark.slow
def test_memory_of_10000_images(tmp_path: Path, tiny_model: str) -> None:
    small, large = _memory_growth(tmp_path, tiny_model, 1_000, 10_000)
    assert large < small + 50


# --- SIGKILL at a random moment, then --resume ------------------------------------------


def _wait_for_size(process: subprocess.Popen[bytes], out: Path, size: int) -> bool:
    """Wait until ``out`` holds ``size`` bytes (True) or the process ended (False)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            if out.stat().st_size >= size:
                return True
        except FileNotFoundError:
            pass
        time.sleep(0.002)
    process.kill()
    pytest.fail("the batch neither wrote nor ended within 120 s")


def _kill_at(command: list[str], out: Path, size: int) -> bool:
    """Start ``command``, SIGKILL it once ``out`` has ``size`` bytes; True if it was killed
    mid-run (False: it finished first)."""
    process = subprocess.Popen(
        command, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        reached = _wait_for_size(process, out, size)
        if reached:
            process.send_signal(signal.SIGKILL)
    finally:
        returncode = process.wait(timeout=60)
    return reached and returncode == -signal.SIGKILL


def _kill_and_resume(
    folder: Path,
    out: Path,
    model: str,
    complete: bytes,
    kill_points: list[float],
    workers: str = "1",
) -> int:
    """Kill the run (and then each resumed run) at ``kill_points`` (fractions of the
    finished output's size), resume to the end, and compare with ``complete``.
    Returns how many kills landed mid-run."""
    out.unlink(missing_ok=True)
    command = batch_command(folder, out, model, "--chunk-size", "7", "--workers", workers)
    killed = 0
    for number, fraction in enumerate(kill_points):
        extra = ["--resume"] if number else []
        killed += _kill_at(command + extra, out, max(1, int(len(complete) * fraction)))
        data = out.read_bytes() if out.exists() else b""
        # Whatever the kill left is a prefix of the finished file (at worst cut inside
        # its last line): no torn, reordered or repeated rows anywhere before the end.
        assert complete.startswith(data)
    finished = subprocess.run(
        [*command, "--resume"], cwd=REPO, env=_env(), capture_output=True, timeout=300
    )
    assert finished.returncode == 0, finished.stderr.decode()
    rows = read_rows(out)
    groups = rows_by_path(rows)  # each image's rows contiguous, so each image once
    assert len(groups) == len(rows) == len(list(folder.iterdir()))
    assert out.read_bytes() == complete
    return killed


@posix_only
@pytest.mark.parametrize(
    ("suffix", "workers"), [(".csv", "1"), (".jsonl", "1"), (".csv", "2"), (".jsonl", "3")]
)
def test_sigkill_at_random_points_then_resume(
    tmp_path: Path, tiny_model: str, suffix: str, workers: str
) -> None:
    """The reference is always the single-worker run: runs with workers, killed and
    resumed, must end byte for byte equal to it."""
    folder = make_face_folder(tmp_path / "faces", 600)
    reference = tmp_path / f"reference{suffix}"
    subprocess.run(
        batch_command(folder, reference, tiny_model, "--chunk-size", "7", "--workers", "1"),
        cwd=REPO,
        env=_env(),
        check=True,
        capture_output=True,
        timeout=300,
    )
    complete = reference.read_bytes()
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    out = tmp_path / f"ages{suffix}"
    # One kill before the first row (header only), one early, then two random kills of
    # the resumed runs: a kill during a resume must be as harmless as the first.
    points = [0.0, rng.uniform(0.05, 0.3), rng.uniform(0.3, 0.6), rng.uniform(0.6, 0.95)]
    killed = _kill_and_resume(folder, out, tiny_model, complete, points, workers)
    assert killed >= 2, f"only {killed} kills landed mid-run (seed {seed})"


@posix_only
@pytest.mark.slow
def test_sigkill_many_times_over_a_larger_run(tmp_path: Path, tiny_model: str) -> None:
    folder = make_face_folder(tmp_path / "faces", 3_000)
    reference = tmp_path / "reference.csv"
    subprocess.run(
        batch_command(folder, reference, tiny_model, "--chunk-size", "7", "--workers", "1"),
        cwd=REPO,
        env=_env(),
        check=True,
        capture_output=True,
        timeout=600,
    )
    rng = random.Random()
    points = sorted(rng.uniform(0.0, 0.98) for _ in range(12))
    killed = _kill_and_resume(
        folder, tmp_path / "ages.csv", tiny_model, reference.read_bytes(), points, workers="2"
    )
    assert killed >= 8


@posix_only
@pytest.mark.parametrize("workers", ["1", "2"])
def test_every_file_gets_a_row_even_with_bad_ones(
    tmp_path: Path, tiny_model: str, workers: str
) -> None:
    folder = make_face_folder(tmp_path / "faces", 50)
    (folder / "00010.jpg").unlink()
    (folder / "00010.jpg").write_bytes(b"")  # empty
    (folder / "00020.jpg").unlink()  # a hard link to the shared data: never write into it
    (folder / "00020.jpg").write_bytes((folder / "00021.jpg").read_bytes()[:500])  # cut
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "ages.jsonl"
    done = subprocess.run(
        batch_command(folder, out, tiny_model, "--workers", workers),
        cwd=REPO,
        env=_env(),
        capture_output=True,
        timeout=300,
    )
    assert done.returncode == 1  # some files failed, the run did not
    groups = rows_by_path(read_rows(out))
    assert sorted(groups) == sorted(str(p) for p in folder.iterdir())
    errors = sorted(os.path.basename(p) for p, g in groups.items() if g[0]["error"])
    assert errors == ["00010.jpg", "00020.jpg", "notes.txt"]
    assert "3 error(s)" in done.stderr.decode()
