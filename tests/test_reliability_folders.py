"""Reliability, folder side: whatever a photo folder holds or does while it is read
(symlink loops, unreadable files, pipes, directories named like images, files deleted
mid-run), every file gets a row and the run ends; ``--draw`` writes only inside OUTDIR and
never over an input, whatever symlinks and odd names stand in the way."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from faceage.batch import clean_text, score_folder
from faceage.cli import main
from faceage.draw import UnsafeOutputPathError
from faceage.errors import ImageDecodeError, ImageNotFoundError
from faceage.estimator import AgeEstimator
from faceage.folders import iter_image_files
from faceage.images import load_image
from faceage.results import ImageResult
from tests.test_batch import read_rows, real_face_files, rows_by_path, tiny_estimator
from tests.test_reliability_inputs import FACEAGE_ERROR_NAMES, time_limit
from tests.tiny_models import write_tiny_model

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file system features")


@pytest.fixture
def estimator(tmp_path: Path) -> AgeEstimator:
    return tiny_estimator(tmp_path, detector=None)


def _face_bytes(index: int = 0) -> bytes:
    return real_face_files(index + 1)[index].read_bytes()


def _score(estimator: Any, folder: Path, out: Path, **kwargs: Any) -> list[dict[str, Any]]:
    with time_limit(60):
        score_folder(estimator, folder, out, **kwargs)
    return read_rows(out)


def _check_rows(rows: list[dict[str, Any]], listed: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Every listed file has exactly one row (tiny model, no detector: one face or an
    error); errors are typed. Returns the row of each path."""
    groups = rows_by_path(rows)
    assert sorted(groups) == sorted(clean_text(p) for p in listed)
    single = {}
    for path, group in groups.items():
        assert len(group) == 1, path
        row = group[0]
        assert not row["error"] or row["error_type"] in FACEAGE_ERROR_NAMES, row
        single[path] = row
    return single


# --- what a folder holds ----------------------------------------------------------------


@posix_only
def test_symlink_loops_end_and_every_file_gets_one_row(
    tmp_path: Path, estimator: AgeEstimator
) -> None:
    folder = tmp_path / "photos"
    (folder / "sub" / "deeper").mkdir(parents=True)
    (folder / "a.jpg").write_bytes(_face_bytes(0))
    (folder / "sub" / "b.jpg").write_bytes(_face_bytes(1))
    (folder / "sub" / "deeper" / "c.jpg").write_bytes(_face_bytes(2))
    (folder / "self").symlink_to(".")  # a directory that contains itself
    (folder / "sub" / "deeper" / "up").symlink_to("../..")  # back to the root
    (folder / "sub" / "twin").symlink_to("deeper")  # the same directory twice
    (folder / "ping.jpg").symlink_to("pong.jpg")  # file links that loop: ELOOP
    (folder / "pong.jpg").symlink_to("ping.jpg")
    (folder / "me.jpg").symlink_to("me.jpg")
    (folder / "gone.jpg").symlink_to("nowhere.jpg")  # dangling
    with time_limit(30):
        listed = list(iter_image_files(folder, recursive=True))
    names = sorted(os.path.relpath(p, folder) for p in listed)
    assert names == sorted(
        ["a.jpg", "gone.jpg", "me.jpg", "ping.jpg", "pong.jpg", "sub/b.jpg", "sub/deeper/c.jpg"]
    ) or names == sorted(  # which of twin/deeper is walked first is an ordering detail
        ["a.jpg", "gone.jpg", "me.jpg", "ping.jpg", "pong.jpg", "sub/b.jpg", "sub/twin/c.jpg"]
    )
    rows = _check_rows(_score(estimator, folder, tmp_path / "out.csv", recursive=True), listed)
    errors = {os.path.basename(p): r["error_type"] for p, r in rows.items() if r["error"]}
    assert errors == {
        "gone.jpg": "ImageNotFoundError",
        "me.jpg": "ImageNotFoundError",
        "ping.jpg": "ImageNotFoundError",
        "pong.jpg": "ImageNotFoundError",
    }


@posix_only
@pytest.mark.skipif(
    IS_ROOT,
    reason="running as root: chmod 000 does not stop root reading "
    "(test_unreadable_file_even_for_root covers the read error)",
)
def test_chmod_000_file_gets_an_error_row(tmp_path: Path, estimator: AgeEstimator) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(_face_bytes())
    locked = folder / "locked.jpg"
    locked.write_bytes(_face_bytes())
    locked.chmod(0)
    try:
        rows = _check_rows(
            _score(estimator, folder, tmp_path / "o.csv"), [str(folder / "a.jpg"), str(locked)]
        )
    finally:
        locked.chmod(0o644)
    assert rows[str(locked)]["error_type"] == "ImageDecodeError"
    assert "Permission denied" in rows[str(locked)]["error"]


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux /proc")
def test_unreadable_file_even_for_root(tmp_path: Path, estimator: AgeEstimator) -> None:
    # /proc/self/mem opens for anyone but reading offset 0 fails (EIO), root or not.
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(_face_bytes())
    (folder / "eio.jpg").symlink_to("/proc/self/mem")
    with pytest.raises(ImageDecodeError, match="cannot read the file"):
        load_image(folder / "eio.jpg")
    rows = _check_rows(
        _score(estimator, folder, tmp_path / "o.jsonl"),
        [str(folder / "a.jpg"), str(folder / "eio.jpg")],
    )
    assert rows[str(folder / "eio.jpg")]["error_type"] == "ImageDecodeError"
    assert rows[str(folder / "a.jpg")]["error"] is None


def test_unreadable_sub_folder_is_logged_and_the_rest_scored(
    tmp_path: Path,
    estimator: AgeEstimator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    folder = tmp_path / "photos"
    (folder / "locked").mkdir(parents=True)
    (folder / "open").mkdir()
    (folder / "locked" / "x.jpg").write_bytes(_face_bytes())
    (folder / "open" / "y.jpg").write_bytes(_face_bytes())
    real_scandir = os.scandir

    def scandir(path: Any) -> Any:  # what chmod 000 on a directory does to a non-root user
        if os.fspath(path) == str(folder / "locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with caplog.at_level(logging.WARNING, logger="faceage"):
        rows = _score(estimator, folder, tmp_path / "o.csv", recursive=True)
    _check_rows(rows, [str(folder / "open" / "y.jpg")])
    assert "Permission denied" in caplog.text and "locked" in caplog.text


@posix_only
def test_pipes_and_devices_get_an_error_row_and_never_block(
    tmp_path: Path, estimator: AgeEstimator
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(_face_bytes())
    os.mkfifo(folder / "pipe.jpg")  # reading it would wait for a writer for ever
    (folder / "link-to-pipe.jpg").symlink_to("pipe.jpg")
    (folder / "zero.jpg").symlink_to("/dev/zero")  # reading it would never end
    listed = [str(folder / n) for n in ("a.jpg", "link-to-pipe.jpg", "pipe.jpg", "zero.jpg")]
    with time_limit(30):
        assert sorted(iter_image_files(folder)) == listed
        for special in listed[1:]:
            with pytest.raises(ImageDecodeError, match="not a regular file"):
                load_image(special)
        rows = _check_rows(_score(estimator, folder, tmp_path / "o.csv"), listed)
    assert [r["error_type"] for r in rows.values()] == ["", *["ImageDecodeError"] * 3]


def test_directories_named_like_images(
    tmp_path: Path, estimator: AgeEstimator, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "photos"
    (folder / "album.jpg").mkdir(parents=True)
    (folder / "album.jpg" / "inside.png").write_bytes(_face_bytes())
    (folder / "empty.png").mkdir()
    (folder / "a.jpg").write_bytes(_face_bytes())
    assert list(iter_image_files(folder)) == [str(folder / "a.jpg")]
    assert sorted(iter_image_files(folder, recursive=True)) == [
        str(folder / "a.jpg"),
        str(folder / "album.jpg" / "inside.png"),
    ]
    # Named directly, a directory is an error of its own, never a crash.
    with pytest.raises(ImageNotFoundError, match="directory"):
        estimator.predict(folder / "album.jpg")
    (result,) = estimator.predict_batch([str(folder / "empty.png")])
    assert result.error_type == "ImageNotFoundError"
    model = str(write_tiny_model(tmp_path / "m"))
    code = main(["predict", str(folder / "album.jpg"), "--model", model, "--detector", "none"])
    assert code == 1
    assert '"error_type": "ImageNotFoundError"' in capsys.readouterr().out


# --- files that change while the run reads them -----------------------------------------


class DeletingEstimator:
    """Deletes (or swaps for a directory) some files of each chunk just before scoring it:
    they were listed, then vanished before they were read."""

    def __init__(self, inner: AgeEstimator, victims: set[str], *, swap: bool = False) -> None:
        self.inner = inner
        self.spec = inner.spec
        self.victims = victims
        self.swap = swap
        self.removed: list[str] = []

    def predict_batch(self, images: Iterable[Any]) -> list[ImageResult]:
        images = list(images)
        for image in images:
            if os.path.basename(image) in self.victims:
                os.unlink(image)
                if self.swap:
                    os.mkdir(image)
                self.removed.append(image)
        return self.inner.predict_batch(images)


@pytest.mark.parametrize("swap", [False, True])
def test_files_deleted_between_listing_and_reading(
    tmp_path: Path, estimator: AgeEstimator, swap: bool
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for index in range(12):
        (folder / f"{index:02d}.jpg").write_bytes(_face_bytes(index % 3))
    listed = list(iter_image_files(folder))
    deleting = DeletingEstimator(estimator, {"00.jpg", "05.jpg", "06.jpg", "11.jpg"}, swap=swap)
    rows = _check_rows(_score(deleting, folder, tmp_path / "o.csv", chunk_size=4), listed)
    assert len(deleting.removed) == 4
    for path, row in rows.items():
        assert bool(row["error"]) == (path in deleting.removed), path
        if row["error"]:
            assert row["error_type"] == "ImageNotFoundError"


def test_file_deleted_between_the_checks_and_the_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "racy.jpg"
    path.write_bytes(_face_bytes())
    real_is_file = Path.is_file

    def is_file_then_vanish(self: Path) -> bool:
        answer = real_is_file(self)
        if self == path and path.exists():
            path.unlink()  # the last moment: after every check, before the read
        return answer

    monkeypatch.setattr(Path, "is_file", is_file_then_vanish)
    with pytest.raises(ImageNotFoundError, match="deleted while reading"):
        load_image(path)


def test_predict_folder_with_a_walk_that_loses_files(
    tmp_path: Path, estimator: AgeEstimator, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for index in range(6):
        (folder / f"{index}.jpg").write_bytes(_face_bytes(index % 3))
        (folder / "sub" / f"s{index}.jpg").write_bytes(_face_bytes(index % 3))
    import faceage.estimator as estimator_module

    real_iter = estimator_module.iter_image_files
    yielded: list[str] = []

    def slow_walk(path: Any, *, recursive: bool = False) -> Iterator[str]:
        for number, file in enumerate(real_iter(path, recursive=recursive)):
            if number == 1:
                os.unlink(folder / "4.jpg")  # listed later, deleted now
                shutil.rmtree(folder / "sub")  # a whole folder goes before it is walked
            if number == 2:
                os.unlink(file)  # deleted just after it was listed
            yielded.append(file)
            yield file

    monkeypatch.setattr(estimator_module, "iter_image_files", slow_walk)
    with time_limit(60):
        results = list(estimator.predict_folder(folder, recursive=True, chunk_size=2))
    assert [r.source for r in results] == yielded
    # The sub-folder vanished before it was walked (nothing to list); the files listed
    # before they vanished get their error results.
    assert [os.path.basename(s) for s in yielded] == [f"{i}.jpg" for i in range(6)]
    missing = "ImageNotFoundError"
    assert [r.error_type for r in results] == [None, None, missing, None, missing, None]


# --- --draw stays inside OUTDIR ---------------------------------------------------------


def _tree(root: Path, *, skip: Iterable[Path] = ()) -> dict[str, str]:
    """Every file and link under ``root`` (not following links), with a digest."""
    skipped = [os.path.realpath(p) for p in skip]
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if any(os.path.realpath(path).startswith(s) for s in skipped):
                continue
            if os.path.islink(path):
                found[path] = "-> " + os.readlink(path)
            elif os.path.isfile(path):
                found[path] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return found


def _photo_folder(root: Path) -> Path:
    folder = root / "photos"
    (folder / "sub").mkdir(parents=True)
    # Names with "..": none starts with a dot (hidden files are not scored).
    for name in ("a.jpg", "a..b.jpg", "x..", "y...jpg", "x\\..\\..\\evil.jpg", "sub/b.jpg"):
        (folder / name).write_bytes(_face_bytes(len(name) % 3))
    return folder


def _batch(folder: Path, out: Path, draw: Path | str, model: str) -> int:
    return main(
        [
            "batch",
            str(folder),
            "-r",
            "--out",
            str(out),
            "--model",
            model,
            "--detector",
            "none",
            "--draw",
            str(draw),
            "--no-progress",
        ]
    )


@posix_only
def test_draw_into_a_symlinked_outdir_and_odd_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _photo_folder(tmp_path)
    model = str(write_tiny_model(tmp_path / "m"))
    target = tmp_path / "real-drawn"
    target.mkdir()
    (tmp_path / "drawn").symlink_to(target)
    before = _tree(tmp_path)
    assert _batch(folder, tmp_path / "o.csv", tmp_path / "drawn", model) == 0
    after = _tree(tmp_path)
    changed = {p for p in after if before.get(p) != after[p]}
    written = {p for p in changed if p.startswith(str(target) + os.sep)}
    assert changed - written == {str(tmp_path / "o.csv")}  # nothing else anywhere changed
    assert sorted(os.path.relpath(p, target) for p in written) == sorted(
        ["a.jpg", "a..b.jpg", "x...jpg", "y...jpg", "x_.._.._evil.jpg", "sub/b.jpg"]
    )
    assert "6 drawn into" in capsys.readouterr().err


@posix_only
@pytest.mark.parametrize("spelling", ["symlink", "dotdot"])
def test_draw_into_the_input_folder_by_another_name_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spelling: str
) -> None:
    folder = _photo_folder(tmp_path)
    model = str(write_tiny_model(tmp_path / "m"))
    if spelling == "symlink":
        draw: Path | str = tmp_path / "alias"
        (tmp_path / "alias").symlink_to(folder)
    else:
        draw = f"{folder}/sub/.."
    before = _tree(folder)
    assert _batch(folder, tmp_path / "o.csv", draw, model) == 2
    assert "input folder" in capsys.readouterr().err
    assert _tree(folder) == before and not (tmp_path / "o.csv").exists()


@posix_only
def test_links_planted_in_outdir_are_never_written_through(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _photo_folder(tmp_path)
    model = str(write_tiny_model(tmp_path / "m"))
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    drawn = tmp_path / "drawn"
    drawn.mkdir()
    (drawn / "a.jpg").symlink_to(folder / "a.jpg")  # onto an input
    (drawn / "a..b.jpg").symlink_to(victim)  # onto a file outside
    (drawn / "sub").symlink_to(tmp_path / "elsewhere")  # a folder leading out
    (tmp_path / "elsewhere").mkdir()
    before = _tree(tmp_path, skip=[drawn])
    assert _batch(folder, tmp_path / "o.csv", drawn, model) == 0
    after = _tree(tmp_path, skip=[drawn])
    assert {p for p in after if before.get(p) != after[p]} == {str(tmp_path / "o.csv")}
    assert victim.read_text() == "precious"
    assert list((tmp_path / "elsewhere").iterdir()) == []
    assert "3 drawn into" in capsys.readouterr().err  # the three names no link stood on


def test_draw_dir_that_is_a_file_is_refused(tmp_path: Path, estimator: AgeEstimator) -> None:
    folder = _photo_folder(tmp_path)
    target = tmp_path / "not-a-dir"
    target.write_text("keep me")
    with pytest.raises(UnsafeOutputPathError, match="is a file"):
        score_folder(estimator, folder, tmp_path / "o.csv", draw_dir=target)
    assert target.read_text() == "keep me"


def test_concurrent_writes_never_interleave(tmp_path: Path, estimator: AgeEstimator) -> None:
    # Two runs drawing into the same OUTDIR at once: every file there decodes whole.
    folder = _photo_folder(tmp_path)
    drawn = tmp_path / "drawn"
    failures: list[BaseException] = []

    def run(index: int) -> None:
        try:
            score_folder(
                estimator, folder, tmp_path / f"o{index}.csv", recursive=True, draw_dir=drawn
            )
        except BaseException as exc:  # surfaced below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    files = [p for p in drawn.rglob("*") if p.is_file()]
    assert len(files) == 6 and not any(p.name.endswith(".tmp") for p in files)
    for path in files:
        assert load_image(path).shape[2] == 3
