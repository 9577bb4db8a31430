"""Read and validate a spec's ``age_interval`` block (:mod:`faceage.intervals` uses it).

Every check names the model and the field, so a hand-edited or truncated calibration
is refused at load with a message saying where it is wrong, never half-used.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

from faceage.errors import ModelSpecError
from faceage.intervals import (
    FEATURES,
    MAX_COVERAGE,
    MIN_COVERAGE,
    VARIANTS,
    AgeCalibration,
    IntervalTable,
)


def _numbers(value: Any, field: str, where: str, length: int | None = None) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)) or (length is not None and len(value) != length):
        size = f" of {length}" if length is not None else ""
        raise ModelSpecError(f"{where}: {field} must be a list{size} numbers, got {value!r}")
    if not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value
    ):
        raise ModelSpecError(f"{where}: {field} must hold finite numbers, got {value!r}")
    return tuple(float(v) for v in value)


def _increasing(values: tuple[float, ...], field: str, where: str) -> None:
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise ModelSpecError(f"{where}: {field} must be strictly increasing, got {list(values)}")


def parse_table(entry: Any, where: str, *, variant: str, ensemble: bool) -> IntervalTable:
    """Validate one variant of an ``age_interval`` block (``where`` names its path)."""
    if not isinstance(entry, Mapping):
        raise ModelSpecError(f"{where}: must be an object")
    missing = [k for k in ("scale", "age_edges", "levels", "low", "high", "rms") if k not in entry]
    if missing:
        raise ModelSpecError(f"{where}: missing field(s) {', '.join(missing)}")
    scale = entry["scale"]
    if not isinstance(scale, Mapping) or not scale:
        raise ModelSpecError(f"{where}.scale: must be an object of feature: coefficient")
    for name, coef in scale.items():
        allowed = name in FEATURES
        allowed &= name != "log_flip_gap" or variant == "flip"
        allowed &= name != "log_member_spread" or ensemble
        if not allowed:
            raise ModelSpecError(
                f"{where}.scale: unknown or unavailable feature {name!r}; a {variant!r} "
                f"table of {'an ensemble' if ensemble else 'a model'} may use "
                f"{', '.join(_available(variant, ensemble))}"
            )
        _numbers([coef], f"scale.{name}", where)
    edges = _numbers(entry["age_edges"], "age_edges", where)
    _increasing(edges, "age_edges", where)
    levels = _numbers(entry["levels"], "levels", where)
    _increasing(levels, "levels", where)
    if not levels or levels[0] > MIN_COVERAGE or levels[-1] < MAX_COVERAGE:
        raise ModelSpecError(
            f"{where}: levels must run from {MIN_COVERAGE} to {MAX_COVERAGE}, got {list(levels)}"
        )
    bins = len(edges) + 1
    tables = {}
    for field, sign in (("low", -1), ("high", 1)):
        rows = entry[field]
        if not isinstance(rows, (list, tuple)) or len(rows) != bins:
            raise ModelSpecError(
                f"{where}: {field} must hold one list per age bin ({bins}), got {rows!r}"
            )
        parsed = []
        for index, row in enumerate(rows):
            values = _numbers(row, f"{field}[{index}]", where, len(levels))
            if any(sign * v < 0 for v in values) or any(
                sign * (b - a) < 0 for a, b in itertools.pairwise(values)
            ):
                side = "<= 0 and non-increasing" if sign < 0 else ">= 0 and non-decreasing"
                raise ModelSpecError(
                    f"{where}: {field}[{index}] must be {side} as the level grows, "
                    f"got {list(values)}"
                )
            parsed.append(values)
        tables[field] = tuple(parsed)
    rms = _numbers(entry["rms"], "rms", where, bins)
    if any(v <= 0 for v in rms):
        raise ModelSpecError(f"{where}: rms must be positive, got {list(rms)}")
    return IntervalTable(
        scale=tuple((str(k), float(v)) for k, v in scale.items()),
        age_edges=edges,
        levels=levels,
        low=tables["low"],
        high=tables["high"],
        rms=rms,
    )


def _available(variant: str, ensemble: bool) -> list[str]:
    return [
        f
        for f in FEATURES
        if (f != "log_flip_gap" or variant == "flip") and (f != "log_member_spread" or ensemble)
    ]


def parse_calibration(entry: Any, where: str, *, ensemble: bool = False) -> AgeCalibration:
    """Validate a spec's ``age_interval`` block; ``where`` names the model.

    Raises:
        ModelSpecError: a field is missing or malformed; the message names the model
            and the field.
    """
    where = f"{where}: age_interval"
    if not isinstance(entry, Mapping):
        raise ModelSpecError(f"{where}: must be an object")
    unknown = sorted(set(entry) - {*VARIANTS, "weights_sha256", "fitted_on", "command"})
    if unknown:
        raise ModelSpecError(f"{where}: unknown field(s) {', '.join(unknown)}")
    tables = tuple(
        (
            variant,
            parse_table(entry[variant], f"{where}.{variant}", variant=variant, ensemble=ensemble),
        )
        for variant in VARIANTS
        if variant in entry
    )
    if not tables:
        raise ModelSpecError(f"{where}: needs a 'flip' or a 'plain' table")
    sha = entry.get("weights_sha256")
    weights: str | tuple[tuple[str, str], ...] | None
    if sha is None or isinstance(sha, str):
        weights = sha
    elif isinstance(sha, Mapping) and all(isinstance(v, str) for v in sha.values()):
        weights = tuple(sorted((str(k), v) for k, v in sha.items()))
    else:
        raise ModelSpecError(
            f"{where}.weights_sha256: must be a hex digest or {{member: digest}}, got {sha!r}"
        )
    return AgeCalibration(
        tables=tables,
        weights_sha256=weights,
        fitted_on=str(entry.get("fitted_on", "")),
        command=str(entry.get("command", "")),
    )
