"""score_folder and the --draw writer: every file gets rows, files stay whole, resume is exact."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from faceage.alignment import crop_landmarks
from faceage.batch import (
    OUTPUT_COLUMNS,
    clean_text,
    encode_rows,
    output_format,
    result_rows,
    score_folder,
)
from faceage.detection.base import Detection
from faceage.draw import (
    AnnotationWriter,
    UnsafeOutputPathError,
    draw_faces,
    face_label,
    write_annotated,
)
from faceage.estimator import AgeEstimator
from faceage.folders import iter_image_files
from faceage.results import Face, ImageResult
from faceage.spec import load_spec_file
from tests._shared import utkface_image, utkface_rows
from tests.tiny_models import write_tiny_model

NON_UTF8_NAME = b"caf\xe9-latin1.jpg"
#: Files of the mixed folder that must come out as error rows.
BAD_FILES = ("empty.jpg", "not-an-image.jpg", "truncated.jpg")


class StubDetector:
    """Finds nothing on a (nearly) black image, two faces on a wide one, else one."""

    name = "stub"

    def detect(self, image: np.ndarray) -> list[Detection]:
        height, width = image.shape[:2]
        if float(image.mean()) < 2.0:
            return []
        halves = [(0, width // 2), (width // 2, width)] if width >= 2 * height else [(0, width)]
        found = []
        for index, (left, right) in enumerate(halves):
            points = crop_landmarks(right - left, height) + np.array([left, 0])
            found.append(
                Detection(
                    box=(float(left), 0.0, float(right), float(height)),
                    landmarks=tuple((float(x), float(y)) for x, y in points),
                    score=0.9 - 0.1 * index,
                )
            )
        return found


def tiny_estimator(tmp_path: Path, *, gender: bool = True, detector: Any = None) -> AgeEstimator:
    directory = write_tiny_model(tmp_path / "tiny-model", gender=gender)
    spec = load_spec_file(directory / "faceage.json")
    return AgeEstimator(spec, directory / "model.onnx", detector=detector)


def real_face_files(count: int) -> list[Path]:
    return [utkface_image(row) for row in utkface_rows("test", limit=count)]


def make_mixed_folder(root: Path, *, faces: int = 4) -> Path:
    """A folder of real faces and every kind of file a photo folder can hold.

    Holds: ``faces`` real UTKFace images, an empty file, a text file named .jpg, a
    truncated JPEG, grayscale / RGBA / 16-bit PNGs, a 1x1 image, a black image (no face
    for :class:`StubDetector`), a wide image (two faces), names with a comma, quotes and
    a newline, a non-UTF-8 name, a hidden file and a directory named ``x.jpg``.
    """
    folder = root / "photos"
    folder.mkdir(parents=True)
    sources = real_face_files(faces)
    for index, source in enumerate(sources):
        shutil.copy(source, folder / f"face{index:02d}.jpg")
    face = cv2.imread(str(sources[0]))
    assert face is not None
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "not-an-image.jpg").write_text("this is a text file, not a JPEG\n")
    data = sources[1].read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    cv2.imwrite(str(folder / "gray.png"), cv2.cvtColor(face, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(folder / "rgba.png"), cv2.cvtColor(face, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(folder / "deep16.png"), face.astype(np.uint16) * 257)
    cv2.imwrite(str(folder / "one-pixel.png"), np.full((1, 1, 3), 128, np.uint8))
    cv2.imwrite(str(folder / "black.png"), np.zeros((60, 60, 3), np.uint8))
    cv2.imwrite(str(folder / "wide-two-faces.jpg"), np.hstack([face, face]))
    shutil.copy(sources[2], folder / 'comma, "quoted".jpg')
    shutil.copy(sources[3 % len(sources)], folder / "new\nline.jpg")
    with open(os.path.join(os.fsencode(folder), NON_UTF8_NAME), "wb") as handle:
        handle.write(sources[0].read_bytes())
    shutil.copy(sources[0], folder / ".hidden.jpg")
    (folder / "x.jpg").mkdir()
    shutil.copy(sources[1], folder / "x.jpg" / "inside.jpg")
    return folder


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV or JSONL output, parsed strictly as pandas would take them."""
    text = path.read_bytes().decode("utf-8")  # strict: the file must be valid UTF-8
    if output_format(path) == "jsonl":
        return [json.loads(line) for line in text.splitlines(keepends=False) if line]
    reader = csv.DictReader(io.StringIO(text, newline=""))
    assert tuple(reader.fieldnames or ()) == OUTPUT_COLUMNS
    rows = list(reader)
    assert all(None not in row and len(row) == len(OUTPUT_COLUMNS) for row in rows)
    return rows


def expected_paths(folder: Path, *, recursive: bool = False) -> list[str]:
    return [clean_text(p) for p in iter_image_files(folder, recursive=recursive)]


def rows_by_path(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Rows grouped by path; also checks each image's rows are contiguous."""
    groups: dict[str, list[dict[str, Any]]] = {}
    previous = None
    for row in rows:
        path = row["path"]
        assert path == previous or path not in groups, f"rows of {path!r} are not contiguous"
        groups.setdefault(path, []).append(row)
        previous = path
    return groups


def _blank(value: Any) -> bool:
    return value is None or value == ""


def check_complete(rows: list[dict[str, Any]], folder: Path, *, recursive: bool = False) -> None:
    """Every file once, with the right kind of rows."""
    groups = rows_by_path(rows)
    assert sorted(groups) == sorted(expected_paths(folder, recursive=recursive))
    for path, group in groups.items():
        name = os.path.basename(path)
        if name in BAD_FILES:
            assert len(group) == 1 and group[0]["error"] and group[0]["error_type"], path
            assert _blank(group[0]["face_index"]) and _blank(group[0]["age"])
        elif name == "black.png":
            assert len(group) == 1 and str(group[0]["no_face"]) == "True"
            assert _blank(group[0]["face_index"]) and _blank(group[0]["error"])
        else:
            expected_faces = 2 if name == "wide-two-faces.jpg" else 1
            assert [int(r["face_index"]) for r in group] == list(range(expected_faces)), path
            for row in group:
                assert _blank(row["error"]) and str(row["no_face"]) == "False"
                assert 0 <= float(row["age"]) <= 116
                assert row["gender"] in ("male", "female")
                assert 0.5 <= float(row["gender_probability"]) <= 1
                landmarks = row["landmarks"]
                points = json.loads(landmarks) if isinstance(landmarks, str) else landmarks
                assert len(points) == 5 and all(len(p) == 2 for p in points)
                assert int(row["width"]) > 0 and row["model"] == "tiny"


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    return make_mixed_folder(tmp_path)


@pytest.fixture
def estimator(tmp_path: Path) -> AgeEstimator:
    return tiny_estimator(tmp_path, detector=StubDetector())


# --- output format ---------------------------------------------------------------------


def test_column_order_is_stable() -> None:
    assert OUTPUT_COLUMNS[:3] == ("path", "face_index", "no_face")
    assert OUTPUT_COLUMNS[-3:] == ("model", "error", "error_type")
    assert len(set(OUTPUT_COLUMNS)) == len(OUTPUT_COLUMNS) == 21


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.csv", "csv"),
        ("a.CSV", "csv"),
        ("a.jsonl", "jsonl"),
        ("a.ndjson", "jsonl"),
        ("a.json", "jsonl"),
    ],
)
def test_output_format_from_suffix(name: str, fmt: str) -> None:
    assert output_format(name) == fmt


def test_unknown_suffix_says_which_to_use() -> None:
    with pytest.raises(ValueError, match=r"\.csv or \*\.jsonl"):
        output_format("results.xlsx")


def test_clean_text_keeps_one_line_and_valid_utf8() -> None:
    weird = os.fsdecode(b"a\xe9\nb\r\x00c") + "\u2028d"
    cleaned = clean_text(weird)
    assert cleaned == "a\\xe9\\nb\\r\\x00c\\u2028d"
    cleaned.encode("utf-8")  # no lone surrogates left
    assert clean_text("plain é ü 名前.jpg") == "plain é ü 名前.jpg"


def test_rows_of_face_no_face_and_error() -> None:
    face = Face(age=float("nan"), box=(1, 2, 3, 4), landmarks=((0, 0),) * 5, detection_score=1.0)
    rows = result_rows(ImageResult("a.jpg", (face,), 10, 20), model="m")
    assert rows[0]["age"] is None and rows[0]["face_index"] == 0
    assert result_rows(ImageResult("b.jpg", (), 10, 20), model="m")[0]["no_face"] is True
    error = result_rows(ImageResult("c.jpg", error="bad\nthing", error_type="X"), model="m")[0]
    assert error["error"] == "bad\\nthing" and error["no_face"] is None
    jsonl = encode_rows(rows, "jsonl")
    assert json.loads(jsonl)["age"] is None and jsonl.count("\n") == 1
    csv_text = encode_rows(rows, "csv")
    assert csv_text.count("\n") == 1 and '"[[0.0,0.0],' in csv_text


# --- scoring a folder -----------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_every_file_appears_exactly_once(
    tmp_path: Path, mixed_folder: Path, estimator: AgeEstimator, suffix: str
) -> None:
    out = tmp_path / f"results{suffix}"
    seen: list[tuple[int, int]] = []
    summary = score_folder(
        estimator,
        mixed_folder,
        out,
        chunk_size=5,
        progress=lambda done, total: seen.append((done, total)),
    )
    rows = read_rows(out)
    check_complete(rows, mixed_folder)
    total = len(expected_paths(mixed_folder))
    assert summary.images == total and summary.errors == len(BAD_FILES)
    assert summary.no_face == 1 and summary.skipped == 0
    assert summary.faces == sum(1 for r in rows if not _blank(r["face_index"]))
    assert seen[0] == (0, total) and seen[-1] == (total, total)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert summary.images_per_second > 0 and summary.to_dict()["out"] == str(out)


def test_recursive_scores_sub_folders(
    tmp_path: Path, mixed_folder: Path, estimator: AgeEstimator
) -> None:
    out = tmp_path / "r.jsonl"
    score_folder(estimator, mixed_folder, out, recursive=True)
    rows = read_rows(out)
    check_complete(rows, mixed_folder, recursive=True)
    assert any(r["path"].endswith(os.path.join("x.jpg", "inside.jpg")) for r in rows)


def test_output_inside_the_folder_is_never_scored(
    mixed_folder: Path, estimator: AgeEstimator
) -> None:
    out = mixed_folder / "ages.csv"
    score_folder(estimator, mixed_folder, out)
    score_folder(estimator, mixed_folder, out, overwrite=True)
    rows = read_rows(out)
    assert not any(r["path"].endswith("ages.csv") for r in rows)
    assert len(rows_by_path(rows)) == len(expected_paths(mixed_folder)) - 1


def test_existing_output_needs_resume_or_overwrite(
    tmp_path: Path, mixed_folder: Path, estimator: AgeEstimator
) -> None:
    out = tmp_path / "a.csv"
    out.write_text("precious\n")
    with pytest.raises(FileExistsError, match="--resume"):
        score_folder(estimator, mixed_folder, out)
    assert out.read_text() == "precious\n"
    with pytest.raises(ValueError, match="header is not faceage"):
        score_folder(estimator, mixed_folder, out, resume=True)
    assert out.read_text() == "precious\n"


def test_missing_folder_is_a_clear_error(tmp_path: Path, estimator: AgeEstimator) -> None:
    with pytest.raises(FileNotFoundError, match="no such directory"):
        score_folder(estimator, tmp_path / "nope", tmp_path / "a.csv")
    assert not (tmp_path / "a.csv").exists()


def test_empty_folder_gives_a_header_only(tmp_path: Path, estimator: AgeEstimator) -> None:
    (tmp_path / "empty").mkdir()
    summary = score_folder(estimator, tmp_path / "empty", tmp_path / "a.csv")
    assert summary.images == 0 and read_rows(tmp_path / "a.csv") == []


# --- resume ---------------------------------------------------------------------------


def _cut(out: Path, *, keep_lines: int, torn_bytes: int) -> None:
    """Keep the first ``keep_lines`` lines plus ``torn_bytes`` of the next one."""
    lines = out.read_bytes().splitlines(keepends=True)
    out.write_bytes(b"".join(lines[:keep_lines]) + lines[keep_lines][:torn_bytes])


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
@pytest.mark.parametrize("keep_lines", [0, 1, 4, 9])
def test_resume_after_a_cut_gives_each_image_once(
    tmp_path: Path, mixed_folder: Path, estimator: AgeEstimator, suffix: str, keep_lines: int
) -> None:
    out = tmp_path / f"results{suffix}"
    score_folder(estimator, mixed_folder, out, chunk_size=4)
    complete = read_rows(out)
    _cut(out, keep_lines=keep_lines, torn_bytes=7)
    summary = score_folder(estimator, mixed_folder, out, resume=True, chunk_size=4)
    rows = read_rows(out)
    check_complete(rows, mixed_folder)
    key = lambda r: (r["path"], str(r["face_index"]))  # noqa: E731
    assert sorted(map(key, rows)) == sorted(map(key, complete))
    assert summary.skipped + summary.images == len(expected_paths(mixed_folder))


def test_resume_rescores_an_image_cut_between_its_faces(
    tmp_path: Path, mixed_folder: Path, estimator: AgeEstimator
) -> None:
    out = tmp_path / "results.csv"
    score_folder(estimator, mixed_folder, out)
    lines = out.read_bytes().splitlines(keepends=True)
    first_face = next(i for i, line in enumerate(lines) if b"wide-two-faces" in line)
    out.write_bytes(b"".join(lines[: first_face + 1]))  # whole lines, second face missing
    score_folder(estimator, mixed_folder, out, resume=True)
    rows = read_rows(out)
    check_complete(rows, mixed_folder)
    wide = [r for r in rows if r["path"].endswith("wide-two-faces.jpg")]
    assert [r["face_index"] for r in wide] == ["0", "1"]


def test_resume_of_a_finished_run_adds_nothing_new(
    tmp_path: Path, mixed_folder: Path, estimator: AgeEstimator
) -> None:
    out = tmp_path / "results.jsonl"
    score_folder(estimator, mixed_folder, out)
    before = read_rows(out)
    summary = score_folder(estimator, mixed_folder, out, resume=True)
    assert summary.images <= 1  # only the last image is scored again, to be safe
    assert read_rows(out) == before


def test_resume_skips_error_rows_and_new_files_are_added(
    tmp_path: Path, mixed_folder: Path, estimator: AgeEstimator
) -> None:
    out = tmp_path / "results.csv"
    score_folder(estimator, mixed_folder, out)
    shutil.copy(real_face_files(1)[0], mixed_folder / "zz-new.jpg")
    shutil.copy(real_face_files(1)[0], mixed_folder / "aa-new.jpg")
    summary = score_folder(estimator, mixed_folder, out, resume=True)
    assert summary.images == 3  # two new files + the last image of the old run
    check_complete(read_rows(out), mixed_folder)


def test_resume_refuses_a_corrupt_middle_line(
    tmp_path: Path, mixed_folder: Path, estimator: AgeEstimator
) -> None:
    out = tmp_path / "results.jsonl"
    score_folder(estimator, mixed_folder, out)
    lines = out.read_bytes().splitlines(keepends=True)
    lines[2] = b"{not json\n"
    out.write_bytes(b"".join(lines))
    with pytest.raises(ValueError, match="line 3 is not a faceage jsonl row"):
        score_folder(estimator, mixed_folder, out, resume=True)


# --- drawing --------------------------------------------------------------------------


def _face(**kwargs: Any) -> Face:
    values: dict[str, Any] = dict(
        age=34.4,
        box=(10.0, 12.0, 60.0, 70.0),
        landmarks=((20, 30), (40, 30), (30, 40), (22, 55), (38, 55)),
        detection_score=0.99,
    )
    values.update(kwargs)
    return Face(**values)


def test_labels() -> None:
    assert face_label(_face()) == "34"
    assert face_label(_face(gender="female", gender_probability=0.934)) == "34 F 0.93"
    assert face_label(_face(gender="male", gender_probability=0.5)) == "34 M 0.50"


def test_draw_faces_returns_an_annotated_copy() -> None:
    image = np.zeros((80, 90, 3), np.uint8)
    drawn = draw_faces(
        image,
        [_face(gender="female", gender_probability=0.9), _face(box=(-50.0, -50.0, 500.0, 500.0))],
    )
    assert drawn.shape == image.shape and drawn.dtype == np.uint8
    assert not image.any() and drawn.any()
    assert draw_faces(image, []).tobytes() == image.tobytes()
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        draw_faces(np.zeros((4, 4), np.uint8), [])


def _digest(folder: Path) -> dict[str, str]:
    return {
        os.fsdecode(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_batch_draws_only_inside_outdir(
    tmp_path: Path, mixed_folder: Path, estimator: AgeEstimator
) -> None:
    before = _digest(mixed_folder)
    outside_before = sorted(p.name for p in tmp_path.iterdir())
    draw_dir = tmp_path / "drawn"
    summary = score_folder(
        estimator, mixed_folder, tmp_path / "a.csv", recursive=True, draw_dir=draw_dir
    )
    assert _digest(mixed_folder) == before  # inputs untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*outside_before, "drawn", "a.csv"])
    written = [p for p in draw_dir.rglob("*") if p.is_file()]
    ok_images = len(expected_paths(mixed_folder, recursive=True)) - len(BAD_FILES)
    assert summary.drawn == len(written) == ok_images
    for path in written:
        assert os.path.realpath(path).startswith(os.path.realpath(draw_dir) + os.sep)
        assert cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR) is not None
    assert (draw_dir / "x.jpg" / "inside.jpg").is_file()
    assert (draw_dir / "new_line.jpg").is_file()


def test_draw_dir_inside_the_folder_is_not_scored(
    tmp_path: Path, mixed_folder: Path, estimator: AgeEstimator
) -> None:
    draw_dir = mixed_folder / "annotated"
    out = tmp_path / "a.jsonl"
    score_folder(estimator, mixed_folder, out, recursive=True, draw_dir=draw_dir)
    score_folder(estimator, mixed_folder, out, recursive=True, draw_dir=draw_dir, overwrite=True)
    rows = read_rows(out)
    assert not any("annotated" in r["path"] for r in rows)
    shutil.rmtree(draw_dir)
    check_complete(rows, mixed_folder, recursive=True)


def test_draw_dir_equal_to_the_folder_is_refused(
    tmp_path: Path, mixed_folder: Path, estimator: AgeEstimator
) -> None:
    before = _digest(mixed_folder)
    for target in (mixed_folder, mixed_folder / ".", Path(str(mixed_folder) + "/")):
        with pytest.raises(UnsafeOutputPathError, match="input folder"):
            score_folder(estimator, mixed_folder, tmp_path / "a.csv", draw_dir=target)
    assert _digest(mixed_folder) == before
    assert not (tmp_path / "a.csv").exists()


def test_writer_refuses_paths_leading_out(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    (inputs / "sub").mkdir(parents=True)
    writer = AnnotationWriter(tmp_path / "out", input_root=inputs, inputs=[str(inputs / "a.jpg")])
    assert writer.output_path(str(inputs / "sub" / "a.gif")) == tmp_path / "out/sub/a.gif.jpg"
    for source in (str(tmp_path / "elsewhere.jpg"), str(inputs / ".." / "x.jpg"), "/etc/passwd"):
        with pytest.raises(UnsafeOutputPathError):
            writer.output_path(source)
    # A symlink inside OUTDIR that points out of it is never followed.
    (tmp_path / "out").mkdir()
    (tmp_path / "victim").mkdir()
    (tmp_path / "out" / "sub").symlink_to(tmp_path / "victim")
    with pytest.raises(UnsafeOutputPathError, match="outside"):
        writer.output_path(str(inputs / "sub" / "a.jpg"))


def test_writer_never_overwrites_an_input(tmp_path: Path) -> None:
    # OUTDIR is the parent of the input folder: in/in/a.jpg would mirror onto in/a.jpg.
    inputs = tmp_path / "in"
    (inputs / "in").mkdir(parents=True)
    image = np.full((20, 20, 3), 100, np.uint8)
    for path in (inputs / "a.jpg", inputs / "in" / "a.jpg"):
        cv2.imwrite(str(path), image)
    before = _digest(inputs)
    results = [ImageResult(str(inputs / "in" / "a.jpg"), (), 20, 20)]
    writer = AnnotationWriter(
        tmp_path, input_root=inputs, inputs=[str(inputs / "a.jpg"), str(inputs / "in" / "a.jpg")]
    )
    with pytest.raises(UnsafeOutputPathError, match="overwrite the input"):
        writer.output_path(results[0].source)
    assert writer.write(results[0]) is None
    assert _digest(inputs) == before


def test_write_annotated_and_name_collisions(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    image = np.full((30, 30, 3), 90, np.uint8)
    cv2.imwrite(str(inputs / "b.jpg"), image)
    (inputs / "b").write_bytes((inputs / "b.jpg").read_bytes())  # -> b.jpg as well
    results = [
        ImageResult(str(inputs / name), (_face(box=(1, 1, 20, 20)),), 30, 30)
        for name in ("b", "b.jpg")
    ]
    results.append(ImageResult(str(inputs / "bad.jpg"), error="x", error_type="E"))
    written = write_annotated(results, tmp_path / "out", input_root=inputs)
    assert sorted(p.name for p in written) == ["b-2.jpg", "b.jpg"]
    with pytest.raises(UnsafeOutputPathError, match="input folder"):
        write_annotated(results, inputs, input_root=inputs)


def test_resume_refuses_rows_of_another_model(
    tmp_path: Path, mixed_folder: Path, estimator: AgeEstimator
) -> None:
    out = tmp_path / "results.csv"
    score_folder(estimator, mixed_folder, out)
    before = out.read_bytes()
    out.write_bytes(before.replace(b",tiny,", b",c3ae,"))
    with pytest.raises(ValueError, match="written by model c3ae, not tiny"):
        score_folder(estimator, mixed_folder, out, resume=True)


def test_resume_of_a_torn_header(
    tmp_path: Path, mixed_folder: Path, estimator: AgeEstimator
) -> None:
    out = tmp_path / "results.csv"
    out.write_text("path,face_in")
    score_folder(estimator, mixed_folder, out, resume=True)
    check_complete(read_rows(out), mixed_folder)
    out.write_text("precious")
    with pytest.raises(ValueError, match="not a faceage csv output"):
        score_folder(estimator, mixed_folder, out, resume=True)
    assert out.read_text() == "precious"
