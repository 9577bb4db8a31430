"""Fit an age-interval calibration (:mod:`faceage.intervals`) on val faces.

1. ``log(scale) = coef . features`` by maximum likelihood of a Laplace error
   ``true - age ~ Laplace(0, scale)`` (a convex problem; Newton's method), each face
   weighted so that every data set weighs the same.
2. The normalised error ``r = (true - age) / scale`` is split by predicted-age bin, and
   each bin tabulates its weighted quantiles of ``r`` at the tails ``(1 -/+ c) / 2`` of
   every level ``c`` (split-conformal: the quantile level is raised by ``1 / n`` of the
   bin's ``n`` faces), clamped so the interval holds the age.

Pure numpy; the quantities the runtime reads come from the same
``IntervalTable.face_scale`` that :class:`faceage.AgeEstimator` calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from faceage.intervals import IntervalTable

#: Coverages tabulated in every table; a request in between is interpolated.
LEVELS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.975, 0.99)
#: Inner edges of the predicted-age bins (years).
AGE_EDGES = (5.0, 12.0, 18.0, 25.0, 35.0, 45.0, 60.0)


@dataclass(frozen=True)
class FitData:
    """Val faces: true and predicted ages, signals, and a weight per face."""

    true: np.ndarray
    age: np.ndarray
    weight: np.ndarray
    flip_gap: np.ndarray | None = None
    member_spread: np.ndarray | None = None


def _features(features: Sequence[str], data: FitData) -> np.ndarray:
    """The feature matrix ``(n, k)`` as :meth:`IntervalTable.face_scale` computes it."""
    columns = []
    for name in features:
        probe = IntervalTable(
            scale=((name, 1.0),), age_edges=(), levels=(), low=(), high=(), rms=()
        )
        value = probe.face_scale(data.age, flip_gap=data.flip_gap, member_spread=data.member_spread)
        columns.append(np.log(value))
    return np.stack(columns, axis=1)


def fit_scale(features: Sequence[str], data: FitData, *, iterations: int = 50) -> np.ndarray:
    """Coefficients maximising the weighted Laplace likelihood of ``true - age``."""
    x = _features(features, data)
    error = np.abs(data.true - data.age) + 0.05  # no face pins the scale to zero
    w = data.weight / data.weight.sum()
    theta = np.zeros(x.shape[1])
    theta[list(features).index("const")] = np.log(np.sum(w * error))

    def loss(t: np.ndarray) -> float:
        z = x @ t
        return float(np.sum(w * (error * np.exp(-z) + z)))

    for _ in range(iterations):
        ratio = error * np.exp(-(x @ theta))
        gradient = x.T @ (w * (1 - ratio))
        hessian = (x * (w * ratio)[:, None]).T @ x + 1e-9 * np.eye(len(theta))
        step = np.linalg.solve(hessian, gradient)
        size, current = 1.0, loss(theta)
        while loss(theta - size * step) > current and size > 1e-6:
            size /= 2
        theta = theta - size * step
        if np.max(np.abs(size * step)) < 1e-8:
            break
    return theta


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The smallest value whose weighted share at or below it reaches ``q``."""
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order]) / weights.sum()
    index = int(np.searchsorted(cumulative, min(max(q, 0.0), 1.0) - 1e-12))
    return float(values[order][min(index, len(values) - 1)])


def fit_table(
    features: Sequence[str],
    data: FitData,
    *,
    levels: Sequence[float] = LEVELS,
    age_edges: Sequence[float] = AGE_EDGES,
    digits: int = 4,
) -> IntervalTable:
    """A calibrated table for ``features`` (each must be one :mod:`faceage.intervals` knows)."""
    theta = fit_scale(features, data)
    scale_pairs = tuple((name, round(float(c), digits)) for name, c in zip(features, theta))
    draft = IntervalTable(
        scale=scale_pairs, age_edges=tuple(age_edges), levels=(), low=(), high=(), rms=()
    )
    scale = draft.face_scale(data.age, flip_gap=data.flip_gap, member_spread=data.member_spread)
    residual = (data.true - data.age) / scale
    bins = draft.bins(data.age)
    low, high, rms = [], [], []
    for b in range(len(age_edges) + 1):
        inside = bins == b
        r, w = residual[inside], data.weight[inside]
        if inside.sum() < 20:  # too few val faces to tabulate: borrow every bin's
            r, w = residual, data.weight
        n = len(r)
        lows, highs = [], []
        for level in levels:
            tail = (1 - level) / 2
            upper = (1 - tail) * (n + 1) / n  # the conformal rank ceil((n + 1)(1 - tail))
            lows.append(min(0.0, weighted_quantile(r, w, 1 - upper)))
            highs.append(max(0.0, weighted_quantile(r, w, upper)))
        # quantiles at larger levels already lie further out; accumulate against ties
        low.append(tuple(round(v, digits) for v in np.minimum.accumulate(lows)))
        high.append(tuple(round(v, digits) for v in np.maximum.accumulate(highs)))
        rms.append(round(float(np.sqrt(np.sum(w * r**2) / np.sum(w))), digits))
    return IntervalTable(
        scale=scale_pairs,
        age_edges=tuple(float(e) for e in age_edges),
        levels=tuple(levels),
        low=tuple(low),
        high=tuple(high),
        rms=tuple(rms),
    )


def table_to_json(table: IntervalTable) -> dict[str, object]:
    """The manifest form of a table (what :func:`faceage.intervals.parse_table` reads)."""
    return {
        "scale": dict(table.scale),
        "age_edges": list(table.age_edges),
        "levels": list(table.levels),
        "low": [list(row) for row in table.low],
        "high": [list(row) for row in table.high],
        "rms": list(table.rms),
    }
