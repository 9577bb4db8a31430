"""One person's age and gender over the frames of their track: a running estimate that
settles as frames accumulate.

Run frame by frame, a model's age for a still face moves with camera noise, small head
turns and focus. The age of a track is instead a weighted running mean of its frames'
ages:

* each frame weighs ``1 / sigma**2``, where ``sigma`` is that face's own uncertainty in
  years: from its calibrated interval (``age_low``, ``age_high`` at ``age_coverage``)
  where the model gives one, else ``age_std``; a model that gives neither makes every
  frame weigh alike. (The detection score is not a weight: it says how sure the
  detector is that there is a face, not how good the age is.)
* by default no frame is forgotten: a person's age does not change during a video, so
  the mean of all their frames is the steadiest estimate, and it keeps settling as
  frames accumulate. Being a weighted mean of the track's frame ages, it is never
  further from the truth than they are on the same weighted average (with equal
  weights, than their plain mean error). ``half_life`` (in frames)
  makes older frames fade instead, for a track that runs for hours through changing
  light; on the 14 tracks of ``python -m benchmarks.video_tracking --models
  c3ae,mobileagenet --singles 8`` no half-life from 10 to 100 frames was reliably
  nearer the truth than none, and each was less steady.
* a new track starts from its first frame alone (no prior, so no lag behind a new
  face), and if a track's frames disagree with its estimate by more than
  ``change_years`` (or three spreads) ``change_frames`` times running, on the same
  side, the tracker has most likely handed the track to another person: the estimate
  restarts from those frames instead of drifting over for many seconds.

Gender is the same running mean of P(female), each frame weighing alike. The spread is
the weighted standard deviation of the frame ages the estimate rests on.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Final

#: Defaults of :class:`AgeSmoother` (guarded by tests/test_tracking.py); a half-life of
#: None forgets nothing.
DEFAULT_HALF_LIFE: Final[float | None] = None
DEFAULT_CHANGE_YEARS: Final = 10.0
DEFAULT_CHANGE_FRAMES: Final = 5
# Uncertainty assumed for a face whose model gives none: only ratios of weights matter,
# so any constant gives equal weights.
_DEFAULT_SIGMA: Final = 5.0
# No frame may dominate a track because its interval is implausibly narrow.
_MIN_SIGMA: Final = 0.5
# Coverage assumed for an interval that does not say its own.
_DEFAULT_COVERAGE: Final = 0.9


def age_sigma(face: Any) -> float | None:
    """A face's age uncertainty in years (one standard deviation), or None if unknown.

    Read from a calibrated interval (``age_low``, ``age_high``, ``age_coverage``) where the
    face has one, as the normal sigma whose central interval of that coverage has that
    width; else from ``age_std``.
    """
    low = _finite(getattr(face, "age_low", None))
    high = _finite(getattr(face, "age_high", None))
    if low is not None and high is not None and high > low:
        coverage = _finite(getattr(face, "age_coverage", None))
        if coverage is None or not 0.0 < coverage < 1.0:
            coverage = _DEFAULT_COVERAGE
        z = NormalDist().inv_cdf(0.5 + coverage / 2)
        return (high - low) / (2.0 * z)
    std = _finite(getattr(face, "age_std", None))
    return std if std is not None and std > 0 else None


def frame_weight(sigma: float | None) -> float:
    """The weight of a frame whose age uncertainty is ``sigma`` years (None: unknown) in a
    track's running mean: ``1 / sigma**2``, ``sigma`` floored at half a year."""
    sigma = max(_DEFAULT_SIGMA if sigma is None else sigma, _MIN_SIGMA)
    return 1.0 / sigma**2


def _finite(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


@dataclass(frozen=True)
class SmoothedEstimate:
    """A track's estimate after one more frame.

    Attributes:
        age: the running age in years.
        age_spread: weighted standard deviation of the frame ages behind ``age``.
        female_probability: running P(female), or None for models without gender.
        observations: frames behind the estimate since it (re)started.
    """

    age: float
    age_spread: float
    female_probability: float | None
    observations: int


class AgeSmoother:
    """The running age (and P(female)) of one track; see the module notes.

    Args:
        half_life: frames after which a frame weighs half as much as a new one; None
            (default): frames never fade.
        change_years: a frame this many years (or three spreads, if more) from the
            estimate counts as disagreeing with it.
        change_frames: after this many disagreeing frames in a row, all on the same side,
            the estimate restarts from them.
    """

    def __init__(
        self,
        *,
        half_life: float | None = DEFAULT_HALF_LIFE,
        change_years: float = DEFAULT_CHANGE_YEARS,
        change_frames: int = DEFAULT_CHANGE_FRAMES,
    ) -> None:
        if half_life is not None and not half_life > 0:
            raise ValueError(f"half_life must be > 0 or None, got {half_life}")
        if change_frames < 1:
            raise ValueError(f"change_frames must be >= 1, got {change_frames}")
        self.decay = 1.0 if half_life is None else 0.5 ** (1.0 / half_life)
        self.change_years = change_years
        self.change_frames = change_frames
        self._recent: deque[tuple[float, float, float | None]] = deque(maxlen=change_frames)
        self._streak = 0
        self._reset()

    def _reset(self) -> None:
        self._weight = self._age_sum = self._square_sum = 0.0
        self._gender_weight = self._female_sum = 0.0
        self.observations = 0

    def update(
        self,
        age: float,
        *,
        sigma: float | None = None,
        female_probability: float | None = None,
    ) -> SmoothedEstimate:
        """Add one frame's age (``sigma``: its uncertainty in years, None if unknown) and
        P(female); returns the new estimate."""
        if not math.isfinite(age):
            return self.estimate()  # a frame without an age changes nothing
        weight = frame_weight(sigma)
        if self.observations >= self.change_frames:
            mean, spread = self._age_sum / self._weight, self._spread()
            offset = age - mean
            if abs(offset) > max(self.change_years, 3.0 * spread):
                side = 1 if offset > 0 else -1
                self._streak = self._streak + side if self._streak * side >= 0 else side
            else:
                self._streak = 0
        self._recent.append((age, weight, female_probability))
        self._add(age, weight, female_probability)
        if abs(self._streak) >= self.change_frames:
            self._reset()
            for item in self._recent:
                self._add(*item)
            self._streak = 0
        return self.estimate()

    def _add(self, age: float, weight: float, female: float | None) -> None:
        decay = self.decay
        self._weight = decay * self._weight + weight
        self._age_sum = decay * self._age_sum + weight * age
        self._square_sum = decay * self._square_sum + weight * age * age
        if female is not None and math.isfinite(female):
            self._gender_weight = decay * self._gender_weight + 1.0
            self._female_sum = decay * self._female_sum + female
        self.observations += 1

    def _spread(self) -> float:
        mean = self._age_sum / self._weight
        return math.sqrt(max(self._square_sum / self._weight - mean * mean, 0.0))

    def estimate(self) -> SmoothedEstimate:
        """The current estimate (NaN age before the first frame)."""
        if self._weight <= 0:
            return SmoothedEstimate(math.nan, math.nan, None, 0)
        female = self._female_sum / self._gender_weight if self._gender_weight > 0 else None
        return SmoothedEstimate(
            self._age_sum / self._weight, self._spread(), female, self.observations
        )
