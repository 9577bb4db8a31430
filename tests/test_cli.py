"""The ``faceage`` command, in-process (``main([...])``) and as ``python -m faceage``."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from faceage import __version__, spec
from faceage.cli import main
from faceage.cli_registry import find_mae
from faceage.progress import ProgressBar
from tests._shared import YUNET_DIR
from tests.test_batch import (
    BAD_FILES,
    check_complete,
    expected_paths,
    make_mixed_folder,
    read_rows,
    real_face_files,
    rows_by_path,
)
from tests.tiny_models import write_tiny_model

REPO = Path(__file__).resolve().parents[1]


def run_faceage(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "faceage", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


@pytest.fixture
def tiny_model(tmp_path: Path) -> str:
    return str(write_tiny_model(tmp_path / "tiny-model", gender=True))


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr
    assert lines and lines[-1].startswith("faceage: error: ")
    return lines[-1]


# --- version and import weight --------------------------------------------------------


def test_version_answers_without_heavy_imports() -> None:
    code = (
        "import sys\n"
        "from faceage.cli import main\n"
        "rc = main(['--version'])\n"
        "heavy = sorted(m for m in ('onnxruntime', 'cv2')"
        " if m in sys.modules)\n"
        "print('heavy:', heavy, 'rc:', rc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert done.stdout.strip().splitlines() == [f"faceage {__version__}", "heavy: [] rc: 0"]


def test_python_dash_m_version() -> None:
    done = run_faceage("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"faceage {__version__}"


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["predict"]) == 2
    assert main(["batch", "somewhere"]) == 2  # --out is required
    assert main(["predict", "x.jpg", "--detector", "haar"]) == 2
    assert main(["batch", "d", "--out", "x.csv", "--threads", "0"]) == 2
    assert main(["batch", "d", "--out", "x.csv", "--resume", "--overwrite"]) == 2
    assert "usage: faceage" in capsys.readouterr().err


# --- predict --------------------------------------------------------------------------


def test_predict_subprocess_json_lines_and_bad_file(tmp_path: Path, tiny_model: str) -> None:
    faces = [str(p) for p in real_face_files(2)]
    bad = tmp_path / "bad.jpg"
    bad.write_text("not a jpeg")
    done = run_faceage(
        "predict", faces[0], str(bad), faces[1], "--model", tiny_model, "--detector", "none"
    )
    assert done.returncode == 1
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["source"] for line in lines] == [faces[0], str(bad), faces[1]]
    for line in (lines[0], lines[2]):
        assert line["error"] is None and line["model"] == "tiny"
        assert line["width"] == line["height"] == 200
        (face,) = line["faces"]
        assert 0 <= face["age"] <= 116 and face["gender"] in ("male", "female")
        assert len(face["box"]) == 4 and len(face["landmarks"]) == 5
    assert lines[1]["error"] and lines[1]["error_type"] == "ImageDecodeError"
    assert lines[1]["faces"] == [] and lines[1]["model"] == "tiny"
    assert "1 of 3 image(s)" in _one_error_line(done.stderr)


def test_min_face_size_skips_smaller_faces(
    tiny_model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    face = str(real_face_files(1)[0])  # a 200x200 chip: its face is ~100-150 px wide

    def widths(*extra: str) -> list[float]:
        assert main(["predict", face, "--model", tiny_model, "--threads", "1", *extra]) == 0
        (line,) = capsys.readouterr().out.splitlines()
        return [f["box"][2] - f["box"][0] for f in json.loads(line)["faces"]]

    found = widths()
    assert len(found) == 1
    assert widths("--min-face-size", "64") == pytest.approx(found, rel=0.05)  # fewer pixels
    assert widths("--min-face-size", str(int(found[0]) + 20)) == []
    assert main(["predict", face, "--min-face-size", "0"]) == 2


def test_predict_in_process(
    tmp_path: Path, tiny_model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    face = str(real_face_files(1)[0])
    assert (
        main(
            [
                "predict",
                face,
                "--model",
                tiny_model,
                "--detector",
                "none",
                "--flip",
                "--threads",
                "1",
                "--providers",
                "CPUExecutionProvider",
            ]
        )
        == 0
    )
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["faces"][0]["detection_score"] == 1.0
    assert (
        main(
            ["predict", str(tmp_path / "missing.jpg"), "--model", tiny_model, "--detector", "none"]
        )
        == 1
    )
    out, err = capsys.readouterr()
    assert json.loads(out)["error_type"] == "ImageNotFoundError"
    _one_error_line(err)


def test_non_utf8_names_print_as_valid_json(
    tmp_path: Path, tiny_model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    name = os.path.join(os.fsencode(tmp_path), b"caf\xe9.jpg")
    with open(name, "wb") as handle:
        handle.write(real_face_files(1)[0].read_bytes())
    assert main(["predict", os.fsdecode(name), "--model", tiny_model, "--detector", "none"]) == 0
    out = capsys.readouterr().out
    out.encode("utf-8")
    assert json.loads(out)["source"].endswith("caf\\xe9.jpg")


@pytest.mark.parametrize(
    ("model", "needle", "code"),
    [
        ("no-such-model", "unknown model", 2),
        ("{tmp}/bad-spec", "input", 2),
        ("{tmp}/empty-dir", "faceage.json", 1),
    ],
)
def test_model_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], model: str, needle: str, code: int
) -> None:
    (tmp_path / "empty-dir").mkdir()
    (tmp_path / "bad-spec").mkdir()
    (tmp_path / "bad-spec" / "faceage.json").write_text('{"task": "age"}')
    model = model.replace("{tmp}", str(tmp_path))
    assert main(["predict", "x.jpg", "--detector", "none", "--model", model]) == code
    assert needle in _one_error_line(capsys.readouterr().err)


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown model"):
        main(["predict", "x.jpg", "--model", "no-such-model", "--detector", "none", "--debug"])


# --- batch ----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_batch_mixed_folder(
    tmp_path: Path, tiny_model: str, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    folder = make_mixed_folder(tmp_path)
    (folder / "black.png").unlink()  # without a detector every image is one face
    (folder / "wide-two-faces.jpg").unlink()
    out = tmp_path / f"ages{suffix}"
    code = main(
        [
            "batch",
            str(folder),
            "--out",
            str(out),
            "--model",
            tiny_model,
            "--detector",
            "none",
            "--recursive",
        ]
    )
    assert code == 1  # some files are not images
    rows = read_rows(out)
    check_complete(rows, folder, recursive=True)
    err = capsys.readouterr().err
    total = len(expected_paths(folder, recursive=True))
    assert f"faceage: {total} image(s), {total - len(BAD_FILES)} face(s)" in err
    assert f"{len(BAD_FILES)} error(s)" in err and "Traceback" not in err
    # Not a terminal: plain progress lines, no carriage returns.
    assert "\r" not in err and f"faceage: {total}/{total} images" in err


def test_batch_subprocess_resume_after_a_cut(tmp_path: Path, tiny_model: str) -> None:
    folder = tmp_path / "faces"
    folder.mkdir()
    for index, source in enumerate(real_face_files(12)):
        (folder / f"{index:02d}.jpg").write_bytes(source.read_bytes())
    out = tmp_path / "ages.csv"
    common = ["--out", str(out), "--model", tiny_model, "--detector", "none", "--chunk-size", "5"]
    first = run_faceage("batch", str(folder), *common)
    assert first.returncode == 0, first.stderr
    assert "faceage: 12 image(s), 12 face(s), 0 without a face, 0 error(s)" in first.stderr
    complete = out.read_bytes()
    again = run_faceage("batch", str(folder), *common)
    assert again.returncode == 2 and "--resume" in _one_error_line(again.stderr)
    # Cut the run: the last 4 rows are gone and the row before them is torn; the
    # last whole row is scored again too.
    lines = complete.splitlines(keepends=True)
    out.write_bytes(b"".join(lines[:-5]) + lines[-5][:20])
    resumed = run_faceage("batch", str(folder), *common, "--resume", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    (summary,) = resumed.stderr.splitlines()  # --no-progress: the summary line only
    assert summary.startswith("faceage: 6 image(s)") and "6 already done" in summary
    rows = read_rows(out)
    assert sorted(rows_by_path(rows)) == sorted(expected_paths(folder))
    assert out.read_bytes() == complete  # same rows, same order, same numbers


def test_batch_draw_refuses_the_input_folder(
    tmp_path: Path, tiny_model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "faces"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(real_face_files(1)[0].read_bytes())
    before = sorted(folder.iterdir())
    code = main(
        [
            "batch",
            str(folder),
            "--out",
            str(tmp_path / "a.csv"),
            "--model",
            tiny_model,
            "--detector",
            "none",
            "--draw",
            str(folder),
        ]
    )
    assert code == 2
    assert "input folder" in _one_error_line(capsys.readouterr().err)
    assert sorted(folder.iterdir()) == before and not (tmp_path / "a.csv").exists()


def test_batch_draw_writes_inside_outdir(
    tmp_path: Path, tiny_model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "faces"
    (folder / "sub").mkdir(parents=True)
    faces = real_face_files(2)
    (folder / "a.jpg").write_bytes(faces[0].read_bytes())
    (folder / "sub" / "b.png").write_bytes(faces[1].read_bytes())
    drawn = tmp_path / "drawn"
    code = main(
        [
            "batch",
            str(folder),
            "-r",
            "--out",
            str(tmp_path / "a.jsonl"),
            "--model",
            tiny_model,
            "--detector",
            "none",
            "--draw",
            str(drawn),
            "--no-progress",
        ]
    )
    assert code == 0
    assert sorted(p.relative_to(drawn).as_posix() for p in drawn.rglob("*") if p.is_file()) == [
        "a.jpg",
        "sub/b.png",
    ]
    assert "2 drawn into" in capsys.readouterr().err


def test_batch_bad_arguments(
    tmp_path: Path, tiny_model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["batch", str(tmp_path), "--out", str(tmp_path / "a.xlsx"), "--model", tiny_model])
        == 2
    )
    assert ".csv or *.jsonl" in _one_error_line(capsys.readouterr().err)
    assert (
        main(
            [
                "batch",
                str(tmp_path / "nope"),
                "--out",
                str(tmp_path / "a.csv"),
                "--model",
                tiny_model,
                "--detector",
                "none",
            ]
        )
        == 2
    )
    assert "no such directory" in _one_error_line(capsys.readouterr().err)


class _FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal_and_in_a_log() -> None:
    ticks = iter([0.0, 0.05, 1.0, 2.0, 2.01])
    tty = _FakeTTY()
    bar = ProgressBar(tty, clock=lambda: next(ticks))
    for done in (0, 10, 20, 30, 40):
        bar(done, 40)
    bar.close()
    text = tty.getvalue()
    assert text.startswith("\r") and text.endswith("\n") and "40/40 images 100.0%" in text
    assert "10/40" not in text  # redrawn at most every 0.1 s
    assert "20/40 images  50.0%   20.0 img/s ETA 0:01" in text

    log = io.StringIO()
    seconds = iter(range(0, 100, 3))
    bar = ProgressBar(log, clock=lambda: float(next(seconds)), log_interval=10)
    for done in range(0, 101, 10):
        bar(done, 100)
    lines = log.getvalue().splitlines()
    assert all(line.startswith("faceage: ") for line in lines) and "\r" not in log.getvalue()
    assert 3 <= len(lines) <= 5 and lines[-1].startswith("faceage: 100/100 images")


# --- models and download --------------------------------------------------------------


def _manifest_with_models() -> spec.Manifest:
    entry: dict[str, Any] = {
        "task": "age+gender",
        "architecture": "tiny",
        "params": 39_700,
        "file": {"filename": "tiny.onnx", "sha256": "0" * 64, "size": 250_000, "bundled": True},
        "input": {"size": 64, "crop_scales": [1.0, 1.25, 1.5]},
        "output": {"age": "age", "gender": "gender"},
        "metrics": {
            "utkface_val": {"mae": 6.1},
            "utkface_test": {"mae": 5.432},
            "aaf_test_pipeline": {"mae": 7.0, "mae_flip": 6.789},
        },
    }
    data = {
        "schema_version": 1,
        "models": {
            "tinyc3": entry,
            "noscore": {**entry, "metrics": {}, "task": "age", "output": {}},
        },
        "detectors": {"yunet": {"file": {"filename": "y.onnx", "size": 232589}}},
    }
    return spec.parse_manifest(data)


def test_models_table_and_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(spec, "load_manifest", _manifest_with_models)
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        *("NAME", "KIND", "TASK", "PARAMS", "SIZE", "UTKFACE", "MAE", "AAF", "MAE", "BUNDLED")
    ]
    assert lines[1].split() == ["noscore", "model", "age", "39.7K", "244", "KB", "-", "-", "yes"]
    assert lines[2].split() == [
        "tinyc3",
        "model",
        "age+gender",
        "39.7K",
        "244",
        "KB",
        "5.43",
        "7.00",  # flip is off for this model: the plain figure
        "yes",
    ]
    assert lines[3].split()[:3] == ["yunet", "detector", "face"]
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["noscore", "tinyc3", "yunet"]
    assert rows[1]["mae"] == 5.432 and rows[1]["crops"] == 3 and rows[2]["kind"] == "detector"
    assert rows[1]["mae_by_dataset"] == {"utkface": 5.432, "aaf": 7.0}


def test_models_with_the_shipped_manifest() -> None:
    done = run_faceage("models", "--json")
    assert done.returncode == 0
    rows = json.loads(done.stdout)
    assert {"yunet"} <= {r["name"] for r in rows}


def test_find_mae() -> None:
    assert find_mae({}) is None
    assert find_mae({"utkface_val": {"mae": 6.0}}) is None
    assert find_mae({"utkface_test": {"mae": 4.2}, "utkface_val": {"mae": 4.0}}) == 4.2
    both = {"utkface_test": {"mae": 4.2}, "utkface_test_pipeline": {"mae": 4.4}}
    assert find_mae(both) == 4.4
    flipped = {"utkface_test_pipeline": {"mae": 4.4, "mae_flip": 4.3}}
    assert find_mae(flipped) == 4.4
    assert find_mae(flipped, flip=True) == 4.3
    assert find_mae(both, flip=True) == 4.4  # no figure with flip: the plain one
    assert find_mae(both, dataset="aaf") is None
    assert find_mae({"aaf_test_pipeline": {"mae": 6.9}, **both}, dataset="aaf") == 6.9


def test_download_needs_a_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["download"]) == 2
    assert "name a model" in _one_error_line(capsys.readouterr().err)
    assert main(["download", "no-such-model"]) == 2
    assert "unknown model" in _one_error_line(capsys.readouterr().err)


def test_download_offline_without_cache_is_one_line_exit_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["download", "--detector", "yunet"]) == 1
    _one_error_line(capsys.readouterr().err)


def test_download_detector_from_the_cache(
    seed_hub_cache: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    detector = spec.load_manifest().detector("yunet")
    assert detector.file.repo_id is not None
    seed_hub_cache(
        detector.file.repo_id,
        detector.file.filename,
        YUNET_DIR / detector.file.filename,
        revision=detector.file.revision or "main",
    )
    assert main(["download", "--detector", "yunet", "--detector", "retinaface"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("yunet\t") and lines[0].endswith(detector.file.filename)
    assert lines[1].startswith("retinaface\t")


def test_interrupt_is_one_line_exit_130(
    tmp_path: Path,
    tiny_model: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import faceage.batch

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(faceage.batch, "score_folder", interrupted)
    code = main(
        [
            "batch",
            str(tmp_path),
            "--out",
            str(tmp_path / "a.csv"),
            "--model",
            tiny_model,
            "--detector",
            "none",
        ]
    )
    assert code == 130
    assert "with --resume" in _one_error_line(capsys.readouterr().err)


def test_logged_exceptions_have_no_traceback_without_debug() -> None:
    from faceage.cli import _LogFormatter

    try:
        raise RuntimeError("model call exploded\nsecond line")
    except RuntimeError:
        record = logging.getLogger("faceage.test").makeRecord(
            "faceage.test", logging.ERROR, __file__, 1, "model call failed", (), sys.exc_info()
        )
    assert _LogFormatter(show_tracebacks=False).format(record) == (
        "faceage: ERROR: model call failed (model call exploded)"
    )
    assert "Traceback" in _LogFormatter(show_tracebacks=True).format(record)


@pytest.mark.parametrize(
    ("option", "expected"), [([], None), (["--flip"], True), (["--no-flip"], False)]
)
def test_flip_option_leaves_the_default_to_the_model(
    option: list[str], expected: bool | None, tiny_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from faceage import estimator

    seen: dict[str, Any] = {}

    def spy(name: str, **kwargs: Any) -> None:
        seen.update(kwargs)
        raise SystemExit(0)

    monkeypatch.setattr(estimator.AgeEstimator, "from_pretrained", spy)
    with pytest.raises(SystemExit):
        main(["predict", "x.jpg", "--model", tiny_model, *option])
    assert seen["flip"] is expected
