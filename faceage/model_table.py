"""The registry as rows: what ``faceage models`` prints (a table, or JSON with ``--json``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # faceage.cli imports this module before any heavy one (--version)
    from faceage.spec import EnsembleSpec, Manifest, ModelSpec


def model_rows(manifest: Manifest) -> list[dict[str, Any]]:
    """One row per model, ensemble and detector of the manifest."""
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
    return rows


def table_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The rows as a plain-text table, one string per line."""
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
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in table
    ]


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
