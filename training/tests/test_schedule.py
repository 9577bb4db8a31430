"""The learning-rate schedule: linear warm-up, then cosine decay."""

from __future__ import annotations

from itertools import pairwise

import pytest

pytest.importorskip("torch")

from training.schedule import learning_rate

STEPS = 100  # steps per epoch
BASE = {"lr": 1.0, "final_lr_fraction": 0.01, "warmup_epochs": 1}


def test_warm_up_then_cosine_to_the_final_fraction() -> None:
    total = 10 * STEPS
    assert learning_rate(BASE, 0, total, STEPS) == pytest.approx(0.01)
    assert learning_rate(BASE, STEPS - 1, total, STEPS) == pytest.approx(1.0)
    assert learning_rate(BASE, total, total, STEPS) == pytest.approx(0.01)
    rates = [learning_rate(BASE, s, total, STEPS) for s in range(STEPS, total)]
    assert all(a >= b for a, b in pairwise(rates))
