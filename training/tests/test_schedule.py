"""The learning-rate schedule, including replayed cosine restarts (``schedule_epochs``)."""

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


def test_schedule_epochs_replays_a_short_run_resumed_with_more_epochs() -> None:
    config = {**BASE, "schedule_epochs": [9, 30]}
    total = 30 * STEPS
    short = 9 * STEPS
    for step in (0, 50, 400, short - 1):  # the first 9 epochs: the 9-epoch cosine
        assert learning_rate(config, step, total, STEPS) == learning_rate(BASE, step, short, STEPS)
    for step in (short, 2000, total - 1):  # afterwards: the 30-epoch cosine
        assert learning_rate(config, step, total, STEPS) == learning_rate(BASE, step, total, STEPS)
    # the restart raises the rate again
    assert learning_rate(config, short, total, STEPS) > 10 * learning_rate(
        config, short - 1, total, STEPS
    )


def test_schedule_epochs_replays_two_restarts() -> None:
    config = {**BASE, "schedule_epochs": [9, 30, 50]}
    total = 50 * STEPS
    for step, stage in ((500, 9), (2000, 30), (4000, 50)):
        expected = learning_rate(BASE, step, stage * STEPS, STEPS)
        assert learning_rate(config, step, total, STEPS) == expected
    for end in (9, 30):  # each restart raises the rate again
        before = learning_rate(config, end * STEPS - 1, total, STEPS)
        assert learning_rate(config, end * STEPS, total, STEPS) > 10 * before
