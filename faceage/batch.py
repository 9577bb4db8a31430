"""Score a folder of images into a CSV or JSON-lines file that survives being cut short.

A long run over a photo collection is the job most likely to be interrupted, so the
output is written the way a resumable log is: a header first, then whole lines only,
every chunk of images written with one ``write`` and flushed. Every file of the folder
gets at least one row (one per face, one ``no_face`` row, or one error row), so
``len(set(rows.path))`` always equals the number of files. Each record is exactly one
line: control characters and undecodable bytes in file names are escaped, which keeps
``pandas.read_csv`` / ``read_json(lines=True)``, ``wc -l`` and :func:`score_folder`'s
own resume parser in agreement.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from faceage.folders import iter_image_files
from faceage.results import ImageResult

if TYPE_CHECKING:
    from faceage.draw import AnnotationWriter

logger = logging.getLogger(__name__)

#: Columns of every output row, in file order (guarded by tests/test_batch.py).
OUTPUT_COLUMNS: Final = (
    "path",
    "face_index",
    "no_face",
    "age",
    "age_low",
    "age_high",
    "age_coverage",
    "age_std",
    "gender",
    "gender_probability",
    "x1",
    "y1",
    "x2",
    "y2",
    "detection_score",
    "landmarks",
    "width",
    "height",
    "model",
    "error",
    "error_type",
)

OutputFormat = Literal["csv", "jsonl"]
#: Called as ``progress(done, total)`` before the first image and after every chunk.
ProgressCallback = Callable[[int, int], None]

_FORMATS: Final[dict[str, OutputFormat]] = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
# C0 controls, DEL, and the characters str.splitlines() also breaks lines at.
_UNSAFE_CHARS = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")


class Estimator(Protocol):
    """What :func:`score_folder` needs of an :class:`~faceage.AgeEstimator`: ``spec`` and
    ``predict_batch``; an ``AgeEstimator``'s ``stream`` (worker threads) is used where
    the object has one."""

    @property
    def spec(self) -> Any: ...

    def predict_batch(self, images: Iterable[Any]) -> list[ImageResult]: ...


@dataclass(frozen=True)
class BatchSummary:
    """What one :func:`score_folder` run did.

    Attributes:
        out: the output file.
        images: images scored in this run (errors included).
        faces: faces found in them.
        errors: images that could not be read (each has an error row).
        no_face: images read without any face found.
        skipped: images left alone because the output already had them (resume).
        drawn: annotated images written (``draw_dir`` only).
        seconds: wall time of the run.
    """

    out: str
    images: int
    faces: int
    errors: int
    no_face: int
    skipped: int
    drawn: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["images_per_second"] = self.images_per_second
        return data


def output_format(out: str | os.PathLike[str]) -> OutputFormat:
    """``"csv"`` or ``"jsonl"`` from the suffix of ``out``.

    Raises:
        ValueError: an unknown suffix.
    """
    suffix = Path(os.fsdecode(out)).suffix.lower()
    try:
        return _FORMATS[suffix]
    except KeyError:
        raise ValueError(
            f"cannot tell the output format of {os.fsdecode(out)!r}; name it *.csv or "
            "*.jsonl (JSON lines; .ndjson and .json also work)"
        ) from None


def clean_text(text: str) -> str:
    """``text`` safe to put on one line of a UTF-8 file.

    Undecodable file-name bytes (kept by Python as lone surrogates) become ``\\xNN`` and
    line-breaking control characters become ``\\xNN`` / ``\\uNNNN`` escapes; other text
    is unchanged. The mapping is deterministic, so resumed runs match their own rows.
    """
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return _UNSAFE_CHARS.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def result_rows(result: ImageResult, *, model: str) -> list[dict[str, Any]]:
    """The output rows of one image: one per face, else one no-face or error row."""
    rows = []
    for flat in result.face_rows():
        row: dict[str, Any] = dict.fromkeys(OUTPUT_COLUMNS)
        row.update(flat)
        row.update(
            path=clean_text(result.source),
            model=model,
            no_face=None if not result.ok else flat["face_index"] is None,
            age=_number(flat["age"], 3),
            age_low=_number(flat["age_low"], 3),
            age_high=_number(flat["age_high"], 3),
            age_coverage=_number(flat["age_coverage"], 4),
            age_std=_number(flat["age_std"], 3),
            gender_probability=_number(flat["gender_probability"], 4),
            detection_score=_number(flat["detection_score"], 4),
            **{k: _number(flat[k], 2) for k in ("x1", "y1", "x2", "y2")},
        )
        if flat["landmarks"] is not None:
            row["landmarks"] = [[_number(x, 2), _number(y, 2)] for x, y in flat["landmarks"]]
        if not result.ok:
            row["error"] = clean_text(result.error or "")
            row["error_type"] = clean_text(result.error_type or "")
        rows.append(row)
    return rows


def _number(value: float | None, digits: int) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits)


def encode_rows(rows: Sequence[dict[str, Any]], fmt: OutputFormat) -> str:
    """Rows as whole lines of ``fmt`` (no header), each ending in ``\\n``."""
    if fmt == "jsonl":
        return "".join(
            json.dumps({k: row[k] for k in OUTPUT_COLUMNS}, ensure_ascii=False) + "\n"
            for row in rows
        )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for row in rows:
        writer.writerow([csv_cell(row[k]) for k in OUTPUT_COLUMNS])
    return buffer.getvalue()


def csv_cell(value: Any) -> Any:
    """A row value as a CSV cell: empty for None, lists as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, list):
        return json.dumps(value, separators=(",", ":"))
    return value


def _csv_header() -> str:
    return ",".join(OUTPUT_COLUMNS) + "\n"


def score_folder(
    estimator: Estimator,
    path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    recursive: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    draw_dir: str | os.PathLike[str] | None = None,
    progress: ProgressCallback | None = None,
    chunk_size: int = 32,
    workers: int | None = None,
) -> BatchSummary:
    """Score every file under ``path`` and write one row per face to ``out``.

    Args:
        estimator: an :class:`~faceage.AgeEstimator`.
        path: the folder of images (files in sorted order; hidden files skipped).
        out: ``*.csv`` or ``*.jsonl`` output; columns are :data:`OUTPUT_COLUMNS`.
        recursive: also score sub-folders.
        resume: keep the rows already in ``out`` and score only the images it lacks. A
            torn last line is dropped, and the last image in the file is scored again
            (its rows may be incomplete), so each image ends up in the file exactly once.
        overwrite: replace an existing, non-empty ``out`` (otherwise that is an error).
        draw_dir: also write annotated copies of the images there (see
            :class:`faceage.draw.AnnotationWriter`).
        progress: ``progress(done, total)`` callback.
        chunk_size: images per model call and per write.
        workers: threads decoding and detecting the next images while the model scores
            the current chunk (None: one per core; 1: none). The output is the same
            byte for byte whatever it is.

    Returns:
        A :class:`BatchSummary`.

    Raises:
        ImageNotFoundError: ``path`` does not exist.
        FileExistsError: ``out`` has rows and neither ``resume`` nor ``overwrite`` is set.
        ValueError: an unknown output suffix, an existing ``out`` that is not a faceage
            output, or an unsafe ``draw_dir``.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    started = time.perf_counter()
    fmt = output_format(out)
    out_path = Path(os.fsdecode(out))
    root = Path(os.fsdecode(path))
    if out_path.is_dir():
        raise IsADirectoryError(f"{out_path}: is a directory; --out needs a file name")
    files = list(iter_image_files(root, recursive=recursive))  # raises for a missing folder
    # Neither the output file nor the annotated copies are ever scored themselves.
    real_out = os.path.realpath(out_path)
    real_draw = None if draw_dir is None else os.path.realpath(os.fsdecode(draw_dir))
    inputs = []
    for file in files:
        real = os.path.realpath(file)
        if real == real_out or (real_draw is not None and real.startswith(real_draw + os.sep)):
            continue
        inputs.append(file)
    writer = _make_annotation_writer(draw_dir, root, inputs)  # refuses an unsafe folder

    model = str(getattr(estimator.spec, "name", ""))
    exists = out_path.exists() and out_path.stat().st_size > 0
    if exists and not (resume or overwrite):
        raise FileExistsError(
            f"{out_path}: already exists; pass resume=True (--resume) to continue it or "
            "overwrite=True (--overwrite) to replace it"
        )
    done: set[str] = set()
    if resume and exists:
        done = _prepare_resume(out_path, fmt, model)
    else:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(_csv_header() if fmt == "csv" else "", encoding="utf-8")
    todo = [file for file in inputs if _resume_key(clean_text(file)) not in done]
    skipped = len(inputs) - len(todo)

    faces = errors = no_face = drawn = 0
    if progress is not None:
        progress(0, len(todo))
    stream = getattr(estimator, "stream", None)
    scored: Iterator[ImageResult] = (
        stream(((f, f) for f in todo), chunk_size=chunk_size, workers=workers)
        if stream is not None
        else _chunk_by_chunk(estimator, todo, chunk_size)
    )
    with out_path.open("ab") as sink, _closing(scored):
        for start in range(0, len(todo), chunk_size):
            chunk = todo[start : start + chunk_size]
            results = list(islice(scored, len(chunk)))
            if len(results) != len(chunk):  # a result per input is the estimator's contract
                raise RuntimeError(
                    f"estimator returned {len(results)} results for {len(chunk)} images"
                )
            rows: list[dict[str, Any]] = []
            for result in results:
                rows.extend(result_rows(result, model=model))
                faces += len(result.faces)
                errors += 0 if result.ok else 1
                no_face += 1 if result.ok and not result.faces else 0
            sink.write(encode_rows(rows, fmt).encode("utf-8"))
            sink.flush()
            if writer is not None:
                drawn += sum(writer.write(result) is not None for result in results)
            if progress is not None:
                progress(start + len(chunk), len(todo))
    return BatchSummary(
        out=str(out_path),
        images=len(todo),
        faces=faces,
        errors=errors,
        no_face=no_face,
        skipped=skipped,
        drawn=drawn,
        seconds=time.perf_counter() - started,
    )


def _chunk_by_chunk(
    estimator: Estimator, files: Sequence[str], chunk_size: int
) -> Iterator[ImageResult]:
    for start in range(0, len(files), chunk_size):
        chunk = files[start : start + chunk_size]
        results = estimator.predict_batch(chunk)
        if len(results) != len(chunk):  # a result per input is the estimator's contract
            raise RuntimeError(f"estimator returned {len(results)} results for {len(chunk)} images")
        yield from results


@contextlib.contextmanager
def _closing(results: Iterator[ImageResult]) -> Iterator[None]:
    """Close a results generator on the way out (an error, Ctrl-C): its threads stop."""
    try:
        yield
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()


def _make_annotation_writer(
    draw_dir: str | os.PathLike[str] | None, root: Path, files: Sequence[str]
) -> AnnotationWriter | None:
    if draw_dir is None:
        return None
    from faceage.draw import AnnotationWriter

    input_root = root if root.is_dir() else root.parent
    return AnnotationWriter(draw_dir, input_root=input_root, inputs=files)


def _resume_key(path_text: str) -> str:
    return os.path.normpath(os.path.abspath(path_text))


def _prepare_resume(out: Path, fmt: OutputFormat, model: str) -> set[str]:
    """Cut ``out`` back to whole rows of complete images; return the resume keys it holds.

    Streams the file, so resuming a run of millions of rows needs little memory.
    """
    header = _csv_header().encode("utf-8") if fmt == "csv" else b""
    done: set[str] = set()
    last_path: str | None = None
    group_start = offset = 0  # byte offsets: rows of ``last_path`` begin at group_start
    torn = 0
    with out.open("r+b") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.endswith(b"\n"):  # a torn last line
                torn = len(line)
                break
            if number == 1 and header:
                if line != header:
                    text = line.decode("utf-8", "replace").rstrip()
                    raise ValueError(
                        f"{out}: its header is not faceage's ({text[:80]!r}); refusing to "
                        "append. Choose another output file or pass --overwrite"
                    )
                offset = group_start = len(line)
                continue
            path, row_model = _row_path_and_model(line[:-1], fmt, out, number)
            if row_model and row_model != model:
                raise ValueError(
                    f"{out}: line {number} was written by model {row_model}, not {model}; "
                    f"resume with --model {row_model}, or choose another output file"
                )
            if path != last_path:
                if last_path is not None:
                    done.add(_resume_key(last_path))
                last_path, group_start = path, offset
            offset += len(line)
        if header and offset == 0:  # not even a whole header line
            handle.seek(0)
            start = handle.read(len(header) + 1)
            if not header.startswith(start):
                raise ValueError(
                    f"{out}: not a faceage {fmt} output; refusing to append. Choose another "
                    "output file or pass --overwrite"
                )
            handle.seek(0)
            handle.truncate(0)
            handle.write(header)
            return set()
        # The last image's rows may be incomplete (cut between two faces): score it again.
        handle.truncate(group_start)
    logger.info(
        "resume %s: %d image(s) kept; the last image's rows (%d bytes) and %d torn byte(s) dropped",
        out,
        len(done),
        offset - group_start,
        torn,
    )
    return done


_MODEL_COLUMN: Final = OUTPUT_COLUMNS.index("model")


def _row_path_and_model(line: bytes, fmt: OutputFormat, out: Path, number: int) -> tuple[str, str]:
    try:
        text = line.decode("utf-8")
        if fmt == "jsonl":
            record = json.loads(text)
            path, model = record["path"], record.get("model") or ""
        else:
            cells = next(csv.reader([text]))
            if len(cells) != len(OUTPUT_COLUMNS):
                raise ValueError("wrong number of columns")
            path, model = cells[0], cells[_MODEL_COLUMN]
        if not isinstance(path, str) or not path or not isinstance(model, str):
            raise ValueError("no path")
        return path, model
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, IndexError, StopIteration):
        raise ValueError(
            f"{out}: line {number} is not a faceage {fmt} row; refusing to append. "
            "Choose another output file or pass --overwrite"
        ) from None
