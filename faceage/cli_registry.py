"""Part of the command line: ``faceage models`` and ``faceage download``, the registry as
a table and its files for offline use. Like the rest of the CLI it imports nothing heavy
at the top."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from faceage.spec import EnsembleSpec, ModelSpec


def cmd_models(args: argparse.Namespace) -> int:
    from faceage.spec import load_manifest

    manifest = load_manifest()
    rows = [_model_row(manifest.models[name]) for name in sorted(manifest.models)]
    rows += [_model_row(spec) for _, spec in sorted(manifest.ensembles.items())]
    rows += [
        {
            "kind": "detector",
            "name": name,
            "task": "face detection",
            "params": None,
            "size_bytes": spec.file.size,
            "mae": None,
            "mae_by_dataset": {},
            "bundled": spec.file.bundled,
            "license": spec.license,
            "description": spec.description,
        }
        for name, spec in sorted(manifest.detectors.items())
    ]
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    header = ("NAME", "KIND", "TASK", "PARAMS", "SIZE", "UTKFACE MAE", "AAF MAE", "BUNDLED")
    table = [header] + [
        (
            str(row["name"]),
            str(row["kind"]),
            str(row["task"]),
            _params_text(row["params"]),
            _size_text(row["size_bytes"]),
            *(_mae_text(row["mae_by_dataset"].get(dataset)) for dataset in ("utkface", "aaf")),
            "yes" if row["bundled"] else "no",
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
    if not manifest.models:
        print("(no age models registered yet)", file=sys.stderr)
    return 0


def _model_row(spec: ModelSpec | EnsembleSpec) -> dict[str, Any]:
    from faceage.spec import EnsembleSpec

    files = [m.file for m in spec.members] if isinstance(spec, EnsembleSpec) else [spec.file]
    row: dict[str, Any] = {
        "kind": "ensemble" if isinstance(spec, EnsembleSpec) else "model",
        "name": spec.name,
        "task": spec.task,
        "params": spec.params,
        "size_bytes": sum(f.size or 0 for f in files) or None,
        "mae": find_mae(spec.metrics, flip=spec.flip),
        "mae_by_dataset": {
            dataset: find_mae(spec.metrics, flip=spec.flip, dataset=dataset)
            for dataset in ("utkface", "aaf")
        },
        "flip": spec.flip,
        "bundled": all(f.bundled for f in files),
        "license": spec.license,
        "description": spec.description,
        "architecture": spec.architecture,
        "input_size": spec.input_size,
        "crops": spec.num_crops,
        "metrics": dict(spec.metrics),
    }
    if isinstance(spec, EnsembleSpec):
        row["members"] = [m.name for m in spec.members]
    return row


def find_mae(
    metrics: Mapping[str, Any], *, flip: bool = False, dataset: str = "utkface"
) -> float | None:
    """The test MAE on ``dataset`` (``utkface`` or ``aaf``) a model's manifest metrics
    record, or None.

    ``{dataset}_test_pipeline`` (the full pipeline, written by ``python -m
    benchmarks.accuracy --update-manifest``) wins over ``{dataset}_test`` (onnxruntime on
    the training crop cache, written by the export). ``flip``: the model mirrors by
    default, so its figure with flip (``mae_flip``) is the one it gives, where recorded.
    """
    for key in (f"{dataset}_test_pipeline", f"{dataset}_test"):
        entry = metrics.get(key)
        if not isinstance(entry, Mapping):
            continue
        for field in ("mae_flip", "mae") if flip else ("mae",):
            if isinstance(entry.get(field), (int, float)):
                return float(entry[field])
    return None


def _mae_text(mae: float | None) -> str:
    return "-" if mae is None else f"{mae:.2f}"


def _params_text(params: Any) -> str:
    if not isinstance(params, int):
        return "-"
    if params >= 1_000_000:
        return f"{params / 1e6:.2f}M"
    if params >= 1_000:
        return f"{params / 1e3:.1f}K"
    return str(params)


def _size_text(size: Any) -> str:
    if not isinstance(size, int):
        return "-"
    if size >= 1 << 20:
        return f"{size / (1 << 20):.1f} MB"
    return f"{size / 1024:.0f} KB"


def cmd_download(args: argparse.Namespace) -> int:
    from faceage import downloads
    from faceage.spec import load_manifest

    if not args.names and not args.detector:
        raise ValueError("name a model to download, 'all', or --detector yunet")
    manifest = load_manifest()
    names: list[str] = []
    for name in args.names:
        names += (
            [*sorted(manifest.models), *sorted(manifest.detectors)] if name == "all" else [name]
        )
    names += args.detector
    kwargs: dict[str, Any] = {}
    if args.cache_dir is not None:
        kwargs["cache_dir"] = args.cache_dir
    for name in _unique(names):
        paths = downloads.download(name, **kwargs)
        if not paths:
            print(f"{name}\t(ships inside an installed package; verified)")
        for path in paths:
            print(f"{name}\t{path}")
        sys.stdout.flush()
    return 0


def _unique(items: Sequence[str]) -> Iterator[str]:
    seen: set[str] = set()
    for item in items:
        if item not in seen:
            seen.add(item)
            yield item
