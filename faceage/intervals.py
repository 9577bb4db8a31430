"""Calibrated age intervals: how far to trust one face's age, from data.

Each model's spec may carry an ``age_interval`` block, fitted on the val splits by
``python -m benchmarks.intervals --update-manifest`` (split-conformal). For a face of
predicted age ``a`` the interval is

    [a + scale * low[bin](coverage), a + scale * high[bin](coverage)]

clipped to the model's age range, where

- ``scale = exp(sum of coef * feature)``: how hard this face is. The features are
  ``log1p(flip_gap)`` (``|age(face) - age(mirror)|``, free when the model mirrors each
  face anyway), ``log1p(member_spread)`` (the standard deviation of an ensemble's
  members), ``log1p(age)`` and ``const``; the block names the ones it uses.
- ``bin`` is the face's predicted-age group (``age_edges``), each with its own table,
  so an interval may lean up where the model under-estimates (older adults) and down
  where it over-estimates (children); ``low <= 0 <= high``, so it always holds ``a``.
- ``low`` / ``high`` are the conformal quantiles of ``(true - a) / scale`` on val at
  the tails ``(1 -/+ coverage) / 2``, tabulated at ``levels`` and linearly interpolated
  in between, so a larger coverage never gives a narrower interval.
- ``rms`` per bin is the root-mean-square of ``(true - a) / scale`` on val:
  ``scale * rms[bin]`` is the face's ``age_std``, the expected error in years.

A spec has one such table per way of running the model (``flip``: with the mirror
image, ``plain``: without); a variant the spec lacks gives no interval.
:mod:`faceage.interval_spec` reads and validates the block.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np

logger = logging.getLogger(__name__)

#: Coverage an interval promises unless told (``age_coverage=``, ``--age-coverage``).
DEFAULT_COVERAGE: Final = 0.8
#: The coverages a calibration must tabulate, and so the ones a user may ask for.
MIN_COVERAGE: Final = 0.5
MAX_COVERAGE: Final = 0.99
#: Names of the features a scale may use (guarded by tests/test_intervals.py).
FEATURES: Final = ("const", "log_age", "log_flip_gap", "log_member_spread")
VARIANTS: Final = ("flip", "plain")

Variant = Literal["flip", "plain"]


@dataclass(frozen=True)
class IntervalTable:
    """One way of running a model (with or without the mirror image), calibrated.

    Attributes:
        scale: coefficient of each feature in ``log(scale)``.
        age_edges: inner edges of the predicted-age bins (years, increasing).
        levels: the tabulated coverages, increasing, from 0.5 to 0.99.
        low, high: per bin, per level: the interval's ends in units of ``scale``.
        rms: per bin: root-mean-square of the error in units of ``scale``.
    """

    scale: tuple[tuple[str, float], ...]
    age_edges: tuple[float, ...]
    levels: tuple[float, ...]
    low: tuple[tuple[float, ...], ...]
    high: tuple[tuple[float, ...], ...]
    rms: tuple[float, ...]

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.scale)

    def multipliers(self, coverage: float) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)`` per bin at ``coverage``, interpolated between the levels."""
        check_coverage(coverage)
        low = np.array([np.interp(coverage, self.levels, row) for row in self.low])
        high = np.array([np.interp(coverage, self.levels, row) for row in self.high])
        return low, high

    def face_scale(
        self,
        age: np.ndarray,
        *,
        flip_gap: np.ndarray | None = None,
        member_spread: np.ndarray | None = None,
    ) -> np.ndarray:
        """``scale`` of each face (years) from the signals its run produced."""
        values = {
            "const": np.ones_like(age, dtype=np.float64),
            "log_age": np.log1p(np.maximum(age, 0.0)),
            "log_flip_gap": None if flip_gap is None else np.log1p(np.abs(flip_gap)),
            "log_member_spread": None if member_spread is None else np.log1p(member_spread),
        }
        log_scale = np.zeros(len(age), dtype=np.float64)
        for name, coef in self.scale:
            feature = values[name]
            if feature is None:
                raise ValueError(f"this calibration needs {name!r}, which the run did not give")
            log_scale += coef * feature
        return np.exp(log_scale)

    def bins(self, age: np.ndarray) -> np.ndarray:
        return np.searchsorted(np.asarray(self.age_edges), age, side="right")


@dataclass(frozen=True)
class AgeCalibration:
    """A model's ``age_interval`` block: a table per variant and what it was fitted for.

    Attributes:
        tables: the calibrated variants (``"flip"``, ``"plain"``), each optional.
        weights_sha256: sha256 of the weights it was fitted on (an ensemble: of each
            member by name); None when the spec does not say.
        fitted_on, command: text for people: the data and the command that fitted it.
    """

    tables: tuple[tuple[str, IntervalTable], ...]
    weights_sha256: str | tuple[tuple[str, str], ...] | None = None
    fitted_on: str = ""
    command: str = ""

    def table(self, variant: Variant) -> IntervalTable | None:
        return dict(self.tables).get(variant)


@dataclass(frozen=True)
class Intervals:
    """Per-face arrays: the interval's ends and the expected error, in years."""

    low: np.ndarray
    high: np.ndarray
    std: np.ndarray


def check_coverage(coverage: float) -> float:
    """``coverage`` as a float, or ValueError saying the range it must lie in."""
    if (
        isinstance(coverage, bool)
        or not isinstance(coverage, (int, float))
        or not MIN_COVERAGE <= coverage <= MAX_COVERAGE
    ):
        raise ValueError(
            f"age_coverage must be a number from {MIN_COVERAGE} to {MAX_COVERAGE} "
            f"(the share of faces the interval should hold), got {coverage!r}"
        )
    return float(coverage)


class IntervalMaker:
    """A table read for one coverage: turns ages and signals into intervals, vectorised."""

    def __init__(
        self, table: IntervalTable, coverage: float, age_range: tuple[float, float]
    ) -> None:
        self.table = table
        self.coverage = check_coverage(coverage)
        self.age_range = age_range
        self._low, self._high = table.multipliers(self.coverage)
        self._rms = np.asarray(table.rms)

    def __call__(
        self,
        age: np.ndarray,
        *,
        flip_gap: np.ndarray | None = None,
        member_spread: np.ndarray | None = None,
    ) -> Intervals:
        age = np.asarray(age, dtype=np.float64)
        scale = self.table.face_scale(age, flip_gap=flip_gap, member_spread=member_spread)
        bins = self.table.bins(age)
        low = np.clip(age + scale * self._low[bins], *self.age_range)
        high = np.clip(age + scale * self._high[bins], *self.age_range)
        # low <= 0 <= high keeps the age inside; min/max also guard rounding at the edges.
        return Intervals(np.minimum(low, age), np.maximum(high, age), scale * self._rms[bins])


def interval_maker(
    calibration: AgeCalibration | None,
    *,
    model: str,
    weights_sha256: str | Mapping[str, str | None] | None,
    flip: bool,
    coverage: float,
    age_range: tuple[float, float],
) -> IntervalMaker | None:
    """The interval maker for a model run with or without ``flip``, or None (and one
    log line saying why) when its spec has no calibration for that run or its
    calibration was fitted on other weights."""
    check_coverage(coverage)
    variant: Variant = "flip" if flip else "plain"
    refit = "re-fit it with python -m benchmarks.intervals --update-manifest"
    if calibration is None:
        logger.warning(
            "model %r has no age-interval calibration (no age_interval in its spec): its "
            "faces get age_low = age_high = None. A registered model: %s; your own "
            "model: add an age_interval block to its faceage.json",
            model,
            refit,
        )
        return None
    table = calibration.table(variant)
    if table is None:
        logger.warning(
            "model %r has no age-interval calibration for flip=%s (its spec has %s): its "
            "faces get age_low = age_high = None",
            model,
            flip,
            ", ".join(name for name, _ in calibration.tables),
        )
        return None
    expected = calibration.weights_sha256
    actual: str | tuple[tuple[str, str | None], ...] | None = (
        tuple(sorted(weights_sha256.items()))
        if isinstance(weights_sha256, Mapping)
        else weights_sha256
    )
    if expected is not None and actual is not None and expected != actual:
        logger.warning(
            "model %r: its age-interval calibration was fitted on other weights (sha256 "
            "%s, the weights are %s): its faces get no interval until you %s",
            model,
            expected,
            actual,
            refit,
        )
        return None
    return IntervalMaker(table, coverage, age_range)
