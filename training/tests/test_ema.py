"""The weight average: its arithmetic, when it runs, and what the checkpoints hold."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from training.ema import WeightAverage, averaging
from training.train import save_checkpoints


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())


def test_average_moves_by_one_minus_decay_and_copies_counters() -> None:
    model = _net()
    average = WeightAverage(model, decay=0.9)
    start = {k: v.clone() for k, v in average.state_dict().items()}
    model.train()(torch.rand(8, 3, 6, 6))  # changes the BatchNorm statistics and counter
    with torch.no_grad():
        model[0].weight.add_(1.0)
    average.update(model)
    now = model.state_dict()
    for key, value in average.state_dict().items():
        if value.dtype.is_floating_point:
            torch.testing.assert_close(value, 0.9 * start[key] + 0.1 * now[key])
        else:
            assert torch.equal(value, now[key])
    assert not any(p.requires_grad for p in average.model.parameters())
    # the average is a copy: training the model further does not move it
    before = average.model[0].weight.clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    assert torch.equal(average.model[0].weight, before)


def test_decay_outside_the_open_unit_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(_net(), decay=1.0)


def test_average_runs_from_its_epoch() -> None:
    assert not averaging({}, 5)
    config = {"ema": {"decay": 0.998, "from_epoch": 3}}
    assert [averaging(config, epoch) for epoch in range(5)] == [False] * 3 + [True] * 2
    assert averaging({"ema": {"decay": 0.998}}, 0)


def test_best_checkpoint_holds_the_average_and_last_holds_both(tmp_path) -> None:
    model = _net()
    average = WeightAverage(model, decay=0.5)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    state = {"epoch": 1, "best_score": 1.0, "best_epoch": 1, "history": []}
    save_checkpoints(tmp_path, model, optimizer, state, {}, best=True, average=average)
    best = torch.load(tmp_path / "best.pt", weights_only=False)
    last = torch.load(tmp_path / "last.pt", weights_only=False)
    assert torch.equal(best["model"]["0.weight"], average.model[0].weight)
    assert not torch.equal(best["model"]["0.weight"], model[0].weight)
    assert torch.equal(last["model"]["0.weight"], model[0].weight)
    assert torch.equal(last["ema"]["0.weight"], average.model[0].weight)
    # without an average both hold the model
    save_checkpoints(tmp_path, model, optimizer, state, {}, best=True)
    best = torch.load(tmp_path / "best.pt", weights_only=False)
    assert torch.equal(best["model"]["0.weight"], model[0].weight)
    assert torch.load(tmp_path / "last.pt", weights_only=False)["ema"] is None
