"""int8 variants of every registered model: are they faster, and what do they cost in MAE?

    python -m benchmarks.quantize                       # all models, full test split
    python -m benchmarks.quantize --models c3ae --limit 300 --rounds 1

For each model, onnxruntime's quantization tools build three int8 graphs from the
verified float32 file (float16-stored weights are widened back to float32 first; then
``quant_pre_process``):

- ``dynamic``: int8 weights, activations quantized at run time (``quantize_dynamic``);
- ``qdq``: static, QuantizeLinear/DequantizeLinear pairs (``QuantFormat.QDQ``);
- ``qoperator``: static, quantized operators such as QLinearConv (``QuantFormat.QOperator``).

The static ones are calibrated (MinMax, per-channel int8 weights, uint8 activations) on
crops of *val* images, half UTKFace and half All-Age-Faces, made by faceage's own
pipeline (RetinaFace, alignment, context crops, normalisation), never on test. Each
variant is then timed with ``benchmarks.speed.bench_model`` (ms/face at batch 1, faces/s
at batch 64, 1 and 2 threads), alternating with the float32 file over ``--rounds``
rounds and keeping each file's best figure, because the machine is shared; and scored
through the full pipeline with ``benchmarks.accuracy.evaluate``, flip off, on the val
splits (to choose; the val MAE is the mean of the two data sets' MAEs, as in training)
and on each test split (to report): the choice never looks at test.

A variant qualifies for shipping as ``NAME-int8`` when its speed-up (geometric mean of
the four ratios: batch-1 latency and batch-64 throughput at 1 and 2 threads) is at least
1.3x and its val MAE is at most 0.1 years worse than the float32 file's. Of the
qualifying variants the fastest is chosen; variants within 5% of its speed-up count as
equally fast (the timings are that noisy), and among those the lowest val MAE wins (see
:func:`choose_variant`). Files go to ``.cache/int8/``
(``NAME-int8-VARIANT.onnx``, and ``NAME-int8.onnx`` for the chosen variant);
with ``--ship`` that file is bundled as model ``NAME-int8`` (``faceage/weights`` and the
manifest, see :func:`ship`); without it nothing is added to the package.

Writes ``benchmarks/results/quantize.json`` and ``quantize.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import math
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_dynamic,
    quantize_static,
)

import faceage
from benchmarks.accuracy import MemoDetector, evaluate
from benchmarks.common import (
    MANIFEST,
    RESULTS_DIR,
    ROOT,
    commands,
    dump_manifest,
    machine_description,
    read_dataset,
    signed,
    write_json,
)
from benchmarks.speed import bench_model, matmul_peak_gflops
from faceage.detection.retinaface import RetinaFaceDetector
from faceage.estimator import AgeEstimator
from faceage.hub import resolve_weight_file
from faceage.images import load_image
from faceage.preprocess import face_crops, to_input_tensor
from faceage.spec import ModelSpec, load_manifest
from training.onnx_weights import restore_float32_weights

INT8_DIR = ROOT / ".cache" / "int8"
VARIANTS = ("dynamic", "qdq", "qoperator")
MIN_SPEEDUP = 1.3
MAX_MAE_LOSS = 0.1
SPEED_TIE = 0.05  # speed-ups within this fraction of the fastest are a tie
DATASETS = ("utkface", "aaf")  # calibrated, chosen and reported on both


class CropReader(CalibrationDataReader):  # type: ignore[misc]
    """Feeds calibration tensors to onnxruntime's calibrator in small batches."""

    def __init__(self, input_name: str, tensor: np.ndarray, batch: int = 16) -> None:
        self._batches: Iterator[dict[str, np.ndarray]] = (
            {input_name: tensor[i : i + batch]} for i in range(0, len(tensor), batch)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def calibration_tensor(
    spec: ModelSpec, detector: MemoDetector, *, images: int, split: str = "val"
) -> np.ndarray:
    """The model's input for the best-scored face of ``images`` evenly spaced ``split``
    images, an equal share from each data set, made exactly as at inference (detect,
    align, context crops, normalise)."""
    crops = []
    for dataset in DATASETS:
        rows = read_dataset(dataset, split)
        share = images // len(DATASETS)
        for row in rows[:: max(len(rows) // share, 1)][:share]:
            image = load_image(row.path)
            found = detector.detect(image)
            if found:
                crops.append(face_crops(image, [np.asarray(found[0].landmarks)], spec))
    return to_input_tensor(np.concatenate(crops), spec)


def evaluate_splits(estimator: AgeEstimator, rows: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
    """``benchmarks.accuracy.evaluate`` on each data set's rows: its report on UTKFace,
    with ``by_dataset`` MAEs and ``mean_mae`` (their mean) added."""
    reports = {name: evaluate(estimator, subset) for name, subset in rows.items()}
    report = dict(reports["utkface"])
    report["by_dataset"] = {name: r["mae"] for name, r in reports.items()}
    report["mean_mae"] = float(np.mean(list(report["by_dataset"].values())))
    return report


def build_variant(
    variant: str, source: Path, target: Path, spec: ModelSpec, calib: np.ndarray
) -> None:
    """Write the int8 graph of ``variant`` for the (pre-processed) float32 ``source``."""
    if variant == "dynamic":
        quantize_dynamic(source, target, weight_type=QuantType.QInt8, per_channel=True)
        return
    quantize_static(
        source,
        target,
        CropReader(spec.input_name, calib),
        quant_format=QuantFormat.QDQ if variant == "qdq" else QuantFormat.QOperator,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )


@contextlib.contextmanager
def quiet_root_logger() -> Iterator[None]:
    """onnxruntime's quantizers log shape-inference chatter on the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def preprocess(path: Path, work: Path) -> Path:
    """``quant_pre_process`` (shape inference, graph clean-up) or the file as it is."""
    out = work / f"{path.stem}-pre.onnx"
    model = onnx.load(str(path))
    if restore_float32_weights(model):  # float16-stored weights: quantize float32 ones
        path = work / f"{path.stem}-fp32.onnx"
        onnx.save(model, str(path))
    try:
        quant_pre_process(path, out, skip_symbolic_shape=True)
        return out
    except Exception as exc:  # the quantizers still work on the raw graph
        print(f"  quant_pre_process failed ({exc}); quantizing the raw graph", file=sys.stderr)
        return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def best_of(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One speed report from several rounds: the lowest latency, the highest throughput."""
    best = dict(reports[0])
    best["threads"] = {}
    for threads in reports[0]["threads"]:
        entries = [r["threads"][threads] for r in reports]
        merged: dict[str, Any] = {}
        for key in entries[0]:
            values = [e[key] for e in entries if e[key] is not None]
            if not values:
                merged[key] = None
            elif key.startswith("latency"):
                merged[key] = min(values)
            else:
                merged[key] = max(values)
        best["threads"][threads] = merged
    return best


def speedups(base: dict[str, Any], int8: dict[str, Any]) -> dict[str, float]:
    out = {}
    for threads in ("1", "2"):
        b, q = base["threads"][threads], int8["threads"][threads]
        out[f"latency_batch1_{threads}thr"] = b["latency_ms_batch1"] / q["latency_ms_batch1"]
        out[f"throughput_batch64_{threads}thr"] = (
            q["faces_per_s_batch64"] / b["faces_per_s_batch64"]
        )
    out["geomean"] = math.exp(np.mean([math.log(v) for v in out.values()]))
    return out


def timed_rounds(
    paths: dict[str, Path], spec: ModelSpec, *, rounds: int, repeats: int
) -> dict[str, Any]:
    """``bench_model`` for every file, in alternating order, best figure over the rounds."""
    peak = matmul_peak_gflops()
    reports: dict[str, list[dict[str, Any]]] = {key: [] for key in paths}
    order = list(paths)
    for index in range(rounds):
        for key in order if index % 2 == 0 else reversed(order):
            reports[key].append(bench_model(spec, paths[key], repeats=repeats, peak=peak))
    return {key: best_of(values) for key, values in reports.items()}


def choose_variant(variants: dict[str, dict[str, Any]]) -> str | None:
    """The variant to ship: the fastest qualifying one, where speed-ups within
    ``SPEED_TIE`` of the fastest are a tie that the lower val MAE breaks."""
    qualified = {v: e for v, e in variants.items() if e.get("qualifies")}
    if not qualified:
        return None
    fastest = max(e["speedup"]["geomean"] for e in qualified.values())
    tied = [v for v, e in qualified.items() if e["speedup"]["geomean"] >= fastest * (1 - SPEED_TIE)]
    return min(tied, key=lambda v: (qualified[v]["val_mae"], -qualified[v]["speedup"]["geomean"]))


def quantize_model(
    spec: ModelSpec,
    *,
    detector: MemoDetector,
    rows: Mapping[str, Sequence[Any]],
    val_rows: Mapping[str, Sequence[Any]],
    calibration_images: int,
    rounds: int,
    repeats: int,
    out_dir: Path,
    log: Callable[[str], None],
) -> dict[str, Any]:
    source = resolve_weight_file(spec.file, name=spec.name)
    calib = calibration_tensor(spec, detector, images=calibration_images)
    log(f"{spec.name}: {len(calib)} calibration faces from val")
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {"fp32": source}
    report: dict[str, Any] = {"calibration_faces": len(calib), "variants": {}}
    with tempfile.TemporaryDirectory() as work, quiet_root_logger():
        prepared = preprocess(source, Path(work))
        for variant in VARIANTS:
            target = out_dir / f"{spec.name}-int8-{variant}.onnx"
            try:
                build_variant(variant, prepared, target, spec, calib)
                ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
            except Exception as exc:  # a quantizer or kernel gap is a result too
                report["variants"][variant] = {"error": str(exc).splitlines()[0][:300]}
                log(f"  {variant}: failed: {report['variants'][variant]['error']}")
                continue
            files[variant] = target
            report["variants"][variant] = {
                "file": str(target.relative_to(ROOT)),
                "sha256": sha256(target),
                "file_bytes": target.stat().st_size,
            }

    speed = timed_rounds(files, spec, rounds=rounds, repeats=repeats)
    report["fp32"] = {
        "file_bytes": source.stat().st_size,
        "sha256": spec.file.sha256,  # which weights: models are retrained in place
        "speed": speed["fp32"],
    }
    base_estimator = AgeEstimator(spec, source, detector=detector, flip=False)
    base = evaluate_splits(base_estimator, rows)
    base_val = evaluate_splits(base_estimator, val_rows)
    report["fp32"].update(
        mae=base["mae"],
        cs5=base["cs5"],
        no_face=base["no_face"],
        test_mae_by_dataset=base["by_dataset"],
        val_mae=base_val["mean_mae"],
        val_mae_by_dataset=base_val["by_dataset"],
    )
    log(f"  fp32: test MAE {base['by_dataset']} (val mean {base_val['mean_mae']:.3f})")
    for variant, path in files.items():
        if variant == "fp32":
            continue
        entry = report["variants"][variant]
        int8_spec = replace(
            spec,
            name=f"{spec.name}-int8",
            file=replace(
                spec.file,
                filename=path.name,
                sha256=entry["sha256"],
                size=entry["file_bytes"],
                bundled=False,
            ),
        )
        estimator = AgeEstimator(int8_spec, path, detector=detector, flip=False)
        result = evaluate_splits(estimator, rows)
        val = evaluate_splits(estimator, val_rows)
        entry.update(
            speed=speed[variant],
            speedup=speedups(speed["fp32"], speed[variant]),
            mae=result["mae"],
            cs5=result["cs5"],
            mae_delta=result["mae"] - base["mae"],
            test_mae_by_dataset=result["by_dataset"],
            val_mae=val["mean_mae"],
            val_mae_by_dataset=val["by_dataset"],
            val_mae_delta=val["mean_mae"] - base_val["mean_mae"],
        )
        if base.get("gender_accuracy") is not None:
            entry["gender_accuracy_delta"] = result["gender_accuracy"] - base["gender_accuracy"]
        entry["qualifies"] = bool(
            entry["speedup"]["geomean"] >= MIN_SPEEDUP and entry["val_mae_delta"] <= MAX_MAE_LOSS
        )
        log(
            f"  {variant}: x{entry['speedup']['geomean']:.2f}, val MAE {val['mean_mae']:.3f} "
            f"({entry['val_mae_delta']:+.3f}), UTKFace test MAE {result['mae']:.3f} "
            f"({entry['mae_delta']:+.3f}){'  qualifies' if entry['qualifies'] else ''}"
        )
    chosen = choose_variant(report["variants"])
    report["qualifying_variant"] = chosen
    report["chosen_on"] = "val"
    final = out_dir / f"{spec.name}-int8.onnx"
    if chosen:
        shutil.copyfile(files[chosen], final)
        report["int8_file"] = str(final.relative_to(ROOT))
    elif final.exists():
        final.unlink()  # a stale choice from an earlier run must not look current
    return report


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"int8 variants on {results['machine']}, onnxruntime {results['onnxruntime']}; test "
        f"MAE on UTKFace test ({results['images']} images) and All-Age-Faces test, full "
        f"pipeline, flip off; calibration on {results['calibration_images']} val images, "
        "half from each data set; val ΔMAE: of the mean of the two val MAEs.",
        f"Command: {commands(results)}",
        "",
        "| model | variant | size | ms/face b=1 1 thr | faces/s b=64 2 thr | speed-up "
        "(b1 1thr / b1 2thr / b64 1thr / b64 2thr) | geo-mean | val ΔMAE | test MAE | "
        "ΔMAE | AAF test MAE | ships? |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["models"].items():
        if "error" in r:
            lines.append(f"| `{name}` | | failed: {r['error'][:80].replace('|', '/')} |" + " |" * 9)
            continue
        fp32 = r["fp32"]
        s = fp32["speed"]["threads"]
        lines.append(
            f"| `{name}` | fp32 | {fp32['file_bytes'] / 1024:.0f} KB | "
            f"{s['1']['latency_ms_batch1']:.3f} | {s['2']['faces_per_s_batch64']:.0f} | | | | "
            f"{fp32['mae']:.3f} | | {aaf_mae(fp32)} | |"
        )
        for variant, e in r["variants"].items():
            if "error" in e:
                lines.append(
                    f"| `{name}` | {variant} | failed: {e['error'][:80]} | | | | | | | | | no |"
                )
                continue
            t, x = e["speed"]["threads"], e["speedup"]
            ratios = " / ".join(
                f"{x[k]:.2f}"
                for k in (
                    "latency_batch1_1thr",
                    "latency_batch1_2thr",
                    "throughput_batch64_1thr",
                    "throughput_batch64_2thr",
                )
            )
            lines.append(
                f"| `{name}` | {variant} | {e['file_bytes'] / 1024:.0f} KB | "
                f"{t['1']['latency_ms_batch1']:.3f} | {t['2']['faces_per_s_batch64']:.0f} | "
                f"{ratios} | **{x['geomean']:.2f}x** | {signed(e.get('val_mae_delta'), 3)} | "
                f"{e['mae']:.3f} | {e['mae_delta']:+.3f} | {aaf_mae(e)} | "
                f"{'**yes**' if e['qualifies'] else 'no'} |"
            )
    lines += [
        "",
        f"- Ships as `NAME-int8` only at >= {MIN_SPEEDUP}x geo-mean speed-up and <= "
        f"{MAX_MAE_LOSS} years val MAE loss; the fastest qualifying variant ships, speed-ups "
        f"within {SPEED_TIE:.0%} of it being a tie that the lower val MAE breaks. Speed: best "
        f"of {results['rounds']} alternating rounds of `benchmarks.speed.bench_model` (the "
        "machine is shared). A blank val ΔMAE: measured before the choice moved to val (it "
        "was made on test MAE then).",
        "- Qualifying: "
        + (
            ", ".join(
                f"`{n}` ({r['qualifying_variant']})"
                for n, r in results["models"].items()
                if r.get("qualifying_variant")
            )
            or "none"
        )
        + ".",
    ]
    return "\n".join(lines) + "\n"


def aaf_mae(entry: dict[str, Any]) -> str:
    """An entry's All-Age-Faces test MAE as a table cell (blank: measured before it was)."""
    value = entry.get("test_mae_by_dataset", {}).get("aaf")
    return "" if value is None else f"{value:.3f}"


def ship(
    results: dict[str, Any],
    manifest_path: Path,
    weights_dir: Path,
    names: Sequence[str] | None = None,
) -> list[str]:
    """Bundle each qualifying variant as ``NAME-int8`` (file + manifest entry).

    Only ``names`` (default: every model in ``results``) are acted on: a run over part of
    the zoo keeps the other models' figures in ``results`` but has no int8 files of its
    own for them, and leaves their shipped variants as they are.

    The entry copies ``NAME``'s, with the int8 file, the measured figures and
    ``quantized_from`` (the float32 file's sha256, so a retrained ``NAME`` shows up as a
    stale int8 model in the tests). Models measured here that no longer qualify lose
    their int8 entry and file. Returns the names shipped.
    """
    data = json.loads(manifest_path.read_text(encoding="utf-8"))
    models = data["models"]
    shipped = []
    for name, report in results["models"].items():
        if names is not None and name not in names:
            continue
        int8_name = f"{name}-int8"
        target = weights_dir / f"{int8_name}.onnx"
        variant = report.get("qualifying_variant")
        if not variant:
            if models.pop(int8_name, None) is not None:
                target.unlink(missing_ok=True)
            continue
        shutil.copyfile(ROOT / report["int8_file"], target)
        measured = report["variants"][variant]
        entry = json.loads(json.dumps(models[name]))
        entry["file"].update(
            filename=target.name,
            sha256=sha256(target),
            size=target.stat().st_size,
            repo_id=f"faceage/{int8_name}",
        )
        entry["description"] = (
            f"{name} quantized to int8 ({variant}, onnxruntime); "
            f"{measured['speedup']['geomean']:.2f}x faster than the float32 file here, "
            f"UTKFace test MAE {measured['mae_delta']:+.3f} years. " + entry.get("description", "")
        )
        entry["quantized_from"] = {
            "model": name,
            "sha256": report["fp32"]["sha256"],
            "variant": variant,
        }
        previous = models.get(int8_name, {})
        kept = (  # same bytes: keep figures measured elsewhere (the pipeline benchmark)
            previous.get("metrics", {})
            if previous.get("file", {}).get("sha256") == entry["file"]["sha256"]
            else {}
        )
        entry["metrics"] = {
            **kept,
            "utkface_test_quantize": {
                "mae": measured["mae"],
                "cs5": measured["cs5"],
                "mae_delta": measured["mae_delta"],
                "aaf_mae": measured.get("test_mae_by_dataset", {}).get("aaf"),
                "speedup": measured["speedup"],
                "command": report.get("command", results["command"]),
                "machine": results["machine"],
            },
        }
        models[int8_name] = entry
        shipped.append(int8_name)
    manifest_path.write_text(dump_manifest(data), encoding="utf-8")
    return shipped


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="all", help="comma-separated names, or 'all'")
    parser.add_argument(
        "--limit", type=int, default=None, help="first N val and N test images only"
    )
    parser.add_argument("--calibration-images", type=int, default=200, help="val images")
    parser.add_argument("--rounds", type=int, default=2, help="alternating speed rounds")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per figure")
    parser.add_argument("--int8-dir", type=Path, default=INT8_DIR)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--ship",
        action="store_true",
        help="bundle qualifying variants as NAME-int8 (faceage/weights + manifest)",
    )
    args = parser.parse_args(argv)
    names = (
        [s.name for s in faceage.list_models() if not s.name.endswith("-int8")]
        if args.models == "all"
        else args.models.split(",")
    )
    rows = {name: read_dataset(name, "test")[: args.limit] for name in DATASETS}
    val_rows = {name: read_dataset(name, "val")[: args.limit] for name in DATASETS}
    detector = MemoDetector(RetinaFaceDetector())
    manifest = load_manifest()
    results: dict[str, Any] = {
        "machine": machine_description(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "faceage": faceage.__version__,
        "images": len(rows["utkface"]),
        "aaf_images": len(rows["aaf"]),
        "calibration_images": args.calibration_images,
        "rounds": args.rounds,
        "min_speedup": MIN_SPEEDUP,
        "max_mae_loss": MAX_MAE_LOSS,
        "speed_tie": SPEED_TIE,
        "val_images": {name: len(subset) for name, subset in val_rows.items()},
        "command": " ".join(
            ["python -m benchmarks.quantize", *(sys.argv[1:] if argv is None else argv)]
        ).strip(),
        "models": {},
    }

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    for name in names:
        try:
            results["models"][name] = {"command": results["command"]}
            results["models"][name] |= quantize_model(
                manifest.model(name),
                detector=detector,
                rows=rows,
                val_rows=val_rows,
                calibration_images=args.calibration_images,
                rounds=args.rounds,
                repeats=args.repeats,
                out_dir=args.int8_dir,
                log=log,
            )
        except Exception as exc:  # one model's failure is reported, the others still run
            results["models"][name] = {
                "command": results["command"],
                "error": str(exc).splitlines()[0][:300],
            }
            log(f"{name}: failed: {results['models'][name]['error']}")
    measured = list(results["models"])
    suffix = "" if args.limit is None else f"_{args.limit}"
    previous = args.out / f"quantize{suffix}.json"
    if args.models != "all" and previous.exists():
        # a run over some models keeps the other models' figures from the last run
        kept = json.loads(previous.read_text(encoding="utf-8")).get("models", {})
        results["models"] = {**kept, **results["models"]}
    write_json(args.out / f"quantize{suffix}.json", results)
    (args.out / f"quantize{suffix}.md").write_text(markdown(results), encoding="utf-8")
    print(markdown(results))
    if args.ship and args.limit is None:
        shipped = ship(results, MANIFEST, ROOT / "faceage" / "weights", measured)
        log(f"shipped: {', '.join(shipped) or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
