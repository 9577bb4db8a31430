"""The ``faceage`` command: a thin shell over the public API.

    faceage predict IMG... [--model c3ae]          one JSON line per image on stdout
    faceage batch DIR --out ages.csv [--resume]    CSV / JSON lines, progress on stderr
    faceage video CLIP --out faces.csv             tracked, smoothed ages per frame
    faceage models [--json]                        the registry as a table
    faceage download NAME|all [--detector yunet]   pre-fetch weights for offline use

Exit codes: 0 all fine; 1 some images failed, or the run itself failed (weights that
cannot be fetched or verified); 2 a usage error (bad option, unknown model, missing
folder). A failure is one ``faceage: error: ...`` line on stderr; ``--debug`` shows the
traceback. This module imports nothing heavy at the top, so ``faceage --version`` and
``--help`` answer without loading onnxruntime or OpenCV.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from faceage import cli_registry
from faceage._version import __version__
from faceage.progress import ProgressBar

if TYPE_CHECKING:
    from faceage.estimator import AgeEstimator
    from faceage.results import ImageResult

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130

DETECTORS: Final = ("retinaface", "yunet", "none")
PREDICT_CHUNK: Final = 16

logger = logging.getLogger("faceage.cli")


# --- parser ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``faceage`` (also used to render ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="faceage",
        description="Age and gender of the faces in photos, with compact ONNX models on a CPU.",
        epilog="Exit codes: 0 ok, 1 some images (or the run) failed, 2 usage error.",
    )
    parser.add_argument("--version", action="version", version=f"faceage {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", help="show tracebacks and debug logs on failure"
    )
    common.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more to stderr (-vv for debug)"
    )
    model = argparse.ArgumentParser(add_help=False)
    model.add_argument(
        "--model",
        default="c3ae",
        help="registered model or ensemble name, 'hf-hub:owner/repo[@rev]', or a folder "
        "with model.onnx + faceage.json (default: %(default)s)",
    )
    model.add_argument(
        "--detector",
        default="retinaface",
        choices=DETECTORS,
        help="face detector; 'none' when every image is a face crop (default: %(default)s)",
    )
    model.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also score each face mirrored and average (twice the model time); "
        "default: as the model's spec says (on for the models whose val error it lowered)",
    )
    model.add_argument(
        "--age-coverage",
        type=_coverage,
        default=0.8,
        metavar="C",
        help="share of faces whose true age the age interval (age_low to age_high) "
        "should hold, 0.5 to 0.99 (default: %(default)s)",
    )
    model.add_argument(
        "--max-faces",
        type=_positive_int,
        default=None,
        metavar="N",
        help="keep the N most confident faces per image",
    )
    model.add_argument(
        "--min-face-size",
        type=_positive_int,
        default=None,
        metavar="PX",
        help="skip faces narrower than PX pixels (default 16); a larger PX lets the detector "
        "run on fewer pixels: 64 for folders of face chips is ~1.25x faster",
    )
    model.add_argument(
        "--providers",
        type=_provider_list,
        default=None,
        metavar="P1,P2",
        help="onnxruntime execution providers, in order (default: CUDA if usable, then CPU)",
    )
    model.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        metavar="N",
        help="onnxruntime threads per call (default: one per core; on a machine busy with "
        "other work, 1 is often faster)",
    )
    model.add_argument(
        "--offline", action="store_true", help="never download weights (like HF_HUB_OFFLINE=1)"
    )

    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    predict = commands.add_parser(
        "predict",
        parents=[common, model],
        help="faces of images, one JSON line per image",
        description="Print one JSON line per image: source, width, height, faces (age, "
        "age_low, age_high, gender, box, landmarks...), model; an image that cannot be read "
        "prints an error line instead and the exit code becomes 1.",
    )
    predict.add_argument("images", nargs="+", metavar="IMG", help="image files")
    predict.set_defaults(func=_cmd_predict)

    batch = commands.add_parser(
        "batch",
        parents=[common, model],
        help="score a folder into CSV or JSON lines",
        description="Score every file of a folder into one row per face (or one no-face or "
        "error row per image); the output can be resumed after an interruption.",
    )
    batch.add_argument("folder", metavar="DIR", help="folder of images")
    batch.add_argument("--out", required=True, metavar="FILE", help="output file, *.csv or *.jsonl")
    batch.add_argument("--recursive", "-r", action="store_true", help="also score sub-folders")
    existing = batch.add_mutually_exclusive_group()
    existing.add_argument(
        "--resume", action="store_true", help="keep the images already in --out and score the rest"
    )
    existing.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    batch.add_argument(
        "--draw",
        metavar="OUTDIR",
        default=None,
        help="also write annotated copies of the images into OUTDIR",
    )
    batch.add_argument(
        "--chunk-size",
        type=_positive_int,
        default=32,
        metavar="N",
        help="images per model call and per write (default: %(default)s)",
    )
    batch.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        metavar="N",
        help="threads decoding and detecting the next images while the model runs "
        "(default: one per core; 1: none); the output does not depend on it",
    )
    batch.add_argument("--no-progress", action="store_true", help="no progress on stderr")
    batch.set_defaults(func=_cmd_batch)

    video = commands.add_parser(
        "video",
        parents=[common, model],
        help="track and age the people of a video file or a camera",
        description="Score a video (or a camera, until Ctrl-C) into one row per face per "
        "scored frame: frame, time, track_id, the frame's own age and the track's smoothed "
        "age, box and the rest. A frame that cannot be read gets an error row; a file "
        "that ends before its header's frame count gets a last row saying so (exit 1).",
    )
    video.add_argument("input", nargs="?", metavar="INPUT", help="video file")
    video.add_argument(
        "--camera",
        type=int,
        default=None,
        metavar="N",
        help="read camera N (0: the first) until Ctrl-C instead of a file",
    )
    video.add_argument("--out", required=True, metavar="FILE", help="output file, *.csv or *.jsonl")
    video.add_argument(
        "--summary", metavar="FILE", default=None, help="also one row per track, *.csv or *.jsonl"
    )
    video.add_argument(
        "--draw",
        metavar="FILE",
        default=None,
        help="also write the annotated video (box, track id, smoothed age), *.mp4 or *.avi",
    )
    video.add_argument(
        "--every",
        type=_positive_int,
        default=1,
        metavar="N",
        help="score every Nth frame (default: %(default)s); see the README for real time",
    )
    video.add_argument(
        "--no-smoothing",
        action="store_true",
        help="the *_smoothed columns repeat each frame's own values (tracks still linked)",
    )
    video.add_argument("--overwrite", action="store_true", help="replace existing output files")
    video.add_argument("--no-progress", action="store_true", help="no progress on stderr")
    video.set_defaults(func=_cmd_video)

    models = commands.add_parser("models", parents=[common], help="list the registered models")
    models.add_argument("--json", action="store_true", help="a JSON array instead of a table")
    models.set_defaults(func=cli_registry.cmd_models)

    download = commands.add_parser(
        "download",
        parents=[common],
        help="pre-fetch weights for offline use",
        description="Fetch and verify weights into the Hugging Face cache, so later runs "
        "work offline. NAME is a model, 'all', or 'hf-hub:owner/repo'.",
    )
    download.add_argument("names", nargs="*", metavar="NAME", help="models to fetch, or 'all'")
    download.add_argument(
        "--detector",
        action="append",
        default=[],
        choices=DETECTORS[:2],
        help="also fetch this detector (repeatable)",
    )
    download.add_argument(
        "--cache-dir",
        default=None,
        metavar="DIR",
        help="Hugging Face cache folder (default: $HF_HOME/hub)",
    )
    download.set_defaults(func=cli_registry.cmd_download)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def _coverage(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.5 <= value <= 0.99:
        raise argparse.ArgumentTypeError(f"expected a coverage from 0.5 to 0.99, got {value}")
    return value


def _provider_list(text: str) -> list[str]:
    providers = [p.strip() for p in text.split(",") if p.strip()]
    if not providers:
        raise argparse.ArgumentTypeError("expected provider names separated by commas")
    return providers


# --- main -----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``faceage`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    _configure_logging(args.verbose, args.debug)
    try:
        code: int = args.func(args)
        return code
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `faceage predict ... | head`: stop quietly
        _silence_stdout()
        return EXIT_OK
    except Exception as exc:
        if args.debug:
            raise
        _error(_one_line(exc))
        return _exit_code(exc)


def _configure_logging(verbose: int, debug: bool) -> None:
    # Per-image problems are already in the output rows; the log is for more than that.
    level = logging.DEBUG if debug or verbose > 1 else logging.INFO if verbose else logging.ERROR
    package = logging.getLogger("faceage")
    package.setLevel(level)
    if not any(getattr(h, "_faceage_cli", False) for h in package.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_LogFormatter(show_tracebacks=debug))
        handler._faceage_cli = True  # type: ignore[attr-defined]
        package.addHandler(handler)
        package.propagate = False


class _LogFormatter(logging.Formatter):
    """``faceage: LEVEL: message``; tracebacks of logged exceptions only with --debug."""

    def __init__(self, *, show_tracebacks: bool) -> None:
        super().__init__("faceage: %(levelname)s: %(message)s")
        self.show_tracebacks = show_tracebacks

    def format(self, record: logging.LogRecord) -> str:
        if self.show_tracebacks or not (record.exc_info or record.exc_text):
            return super().format(record)
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += f" ({_one_line(record.exc_info[1])})"
        return f"faceage: {record.levelname}: {text}"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, KeyError) and text.startswith(("'", '"')):
        text = text[1:-1]
    first = text.splitlines()[0] if text else ""
    return first or type(exc).__name__


def _exit_code(exc: BaseException) -> int:
    from faceage.errors import WeightsIntegrityError, WeightsNotFoundError

    if isinstance(exc, (WeightsNotFoundError, WeightsIntegrityError)):
        return EXIT_FAILED
    if isinstance(
        exc, (ValueError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError)
    ):
        return EXIT_USAGE
    return EXIT_FAILED


def _error(message: str) -> None:
    print(f"faceage: error: {message}", file=sys.stderr, flush=True)


def _silence_stdout() -> None:
    # Python flushes stdout at exit; point it at devnull so that raises nothing more.
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


# --- predict and batch ----------------------------------------------------------------


def _load_estimator(args: argparse.Namespace) -> AgeEstimator:
    from faceage.estimator import AgeEstimator

    return AgeEstimator.from_pretrained(
        args.model,
        detector=None if args.detector == "none" else args.detector,
        providers=args.providers,
        intra_op_num_threads=args.threads,
        local_files_only=True if args.offline else None,
        max_faces=args.max_faces,
        flip=args.flip,
        age_coverage=args.age_coverage,
        detector_options=None
        if args.min_face_size is None or args.detector == "none"
        else {"min_face_size": float(args.min_face_size)},
    )


def _cmd_predict(args: argparse.Namespace) -> int:
    from faceage.batch import clean_text

    estimator = _load_estimator(args)
    failed = 0
    for start in range(0, len(args.images), PREDICT_CHUNK):
        for result in estimator.predict_batch(args.images[start : start + PREDICT_CHUNK]):
            failed += 0 if result.ok else 1
            sys.stdout.write(_result_json(result, estimator.spec.name, clean_text) + "\n")
        sys.stdout.flush()
    if failed:
        _error(f"{failed} of {len(args.images)} image(s) could not be read")
        return EXIT_FAILED
    return EXIT_OK


def _result_json(result: ImageResult, model: str, clean: Callable[[str], str]) -> str:
    data = result.to_dict()
    data["source"] = clean(result.source)
    data["model"] = model
    return json.dumps(_finite(data), ensure_ascii=False)


def _finite(value: Any) -> Any:
    """``value`` with NaN/inf floats as None, so every line is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _cmd_batch(args: argparse.Namespace) -> int:
    from faceage.batch import output_format, score_folder

    output_format(args.out)  # a bad suffix is a usage error before any model loads
    estimator = _load_estimator(args)
    bar = None if args.no_progress else ProgressBar(sys.stderr)
    try:
        summary = score_folder(
            estimator,
            args.folder,
            args.out,
            recursive=args.recursive,
            resume=args.resume,
            overwrite=args.overwrite,
            draw_dir=args.draw,
            progress=bar,
            chunk_size=args.chunk_size,
            workers=args.workers,
        )
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        _error(
            f"interrupted; {args.out} keeps every image finished so far: run the same "
            "command with --resume to go on"
        )
        return EXIT_INTERRUPTED
    finally:
        if bar is not None:
            bar.close()  # end a redrawn line before any error message
    parts = [
        f"{summary.images} image(s)",
        f"{summary.faces} face(s)",
        f"{summary.no_face} without a face",
        f"{summary.errors} error(s)",
    ]
    if summary.skipped:
        parts.append(f"{summary.skipped} already done")
    if args.draw:
        parts.append(f"{summary.drawn} drawn into {args.draw}")
    print(
        f"faceage: {', '.join(parts)} in {summary.seconds:.1f} s "
        f"({summary.images_per_second:.1f} images/s) -> {summary.out}",
        file=sys.stderr,
        flush=True,
    )
    return EXIT_FAILED if summary.errors else EXIT_OK


# --- video ----------------------------------------------------------------------------


def _cmd_video(args: argparse.Namespace) -> int:
    from faceage.video_output import check_outputs, score_video

    if (args.input is None) == (args.camera is None):
        raise ValueError("give a video file or --camera N, not both and not neither")
    source = args.input if args.input is not None else args.camera
    check_outputs(source, args.out, summary=args.summary, draw=args.draw, overwrite=args.overwrite)
    estimator = _load_estimator(args)
    if not args.debug:
        _quiet_opencv()
    bar = None if args.no_progress else ProgressBar(sys.stderr, unit="frames", rate_unit="frames/s")
    try:
        summary = score_video(
            estimator,
            source,
            args.out,
            summary=args.summary,
            draw=args.draw,
            every=args.every,
            smoothing=not args.no_smoothing,
            overwrite=args.overwrite,
            progress=bar,
        )
    finally:
        if bar is not None:
            bar.close()
    read = f"{summary.frames_read} frame(s) read"
    if summary.frames_expected is not None and summary.frames_read != summary.frames_expected:
        read = f"{summary.frames_read} of {summary.frames_expected} frame(s) read"
    parts = [
        read,
        f"{summary.frames_scored} scored",
        f"{summary.tracks} track(s)",
        f"{summary.faces} face row(s)",
        f"{summary.errors} error(s)",
    ]
    outputs = [summary.out, *(p for p in (args.summary, args.draw) if p)]
    print(
        f"faceage: {', '.join(parts)} in {summary.seconds:.1f} s "
        f"({summary.frames_per_second:.1f} frames/s) -> {', '.join(outputs)}",
        file=sys.stderr,
        flush=True,
    )
    if summary.interrupted and args.camera is None:
        _error(f"interrupted; {', '.join(outputs)} hold every frame scored until then")
        return EXIT_INTERRUPTED
    if summary.ended_early:
        _error(
            f"{summary.source} ended early: {summary.frames_read} of its "
            f"{summary.frames_expected} frames could be read; every one of them was scored"
        )
        return EXIT_FAILED
    return EXIT_FAILED if summary.errors else EXIT_OK


def _quiet_opencv() -> None:
    # OpenCV and FFmpeg print their own warnings about damaged files; our rows say it.
    import os

    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    try:
        import cv2

        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except (ImportError, AttributeError):
        pass
