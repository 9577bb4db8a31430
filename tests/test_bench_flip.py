"""benchmarks.accuracy's choice of each model's default test-time flip from val."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

accuracy = pytest.importorskip("benchmarks.accuracy")


def _runs(off: float, on: float, gender: tuple[float, float] | None = None) -> dict:
    runs: dict = {"off": {"mae": off}, "on": {"mae": on}}
    if gender is not None:
        runs["off"]["gender_accuracy"], runs["on"]["gender_accuracy"] = gender
    return runs


@pytest.mark.parametrize(
    ("runs", "pays"),
    [
        (_runs(5.2, 5.1), True),
        (_runs(5.1, 5.1), False),
        (_runs(5.1, 5.2), False),
        (_runs(5.2, 5.1, (0.92, 0.92)), True),
        (_runs(5.2, 5.1, (0.92, 0.91)), False),
    ],
)
def test_flip_pays_only_when_it_lowers_mae_and_keeps_gender(runs: dict, pays: bool) -> None:
    assert accuracy.flip_pays([runs]) is pays


def test_flip_is_chosen_on_the_mean_of_the_data_sets() -> None:
    # UTKFace gains 0.1, All-Age-Faces loses 0.05: the mean still gains
    assert accuracy.flip_pays([_runs(5.2, 5.1), _runs(7.0, 7.05)]) is True
    assert accuracy.flip_pays([_runs(5.2, 5.1), _runs(7.0, 7.2)]) is False
    # gender: +1 point on one set, -3 on the other lowers the mean
    assert (
        accuracy.flip_pays([_runs(5.2, 5.1, (0.92, 0.93)), _runs(7.0, 6.9, (0.90, 0.87))]) is False
    )


def test_set_flip_defaults_writes_each_measured_entry(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.json"
    entries = {"a": {"task": "age"}, "b": {"task": "age", "flip": True}, "c": {"task": "age"}}
    manifest.write_text(json.dumps({"models": entries, "ensembles": {"e": {"members": {}}}}))
    results = {
        "models": {"a": _runs(5.2, 5.0), "b": _runs(5.0, 5.2), "e": _runs(4.9, 4.8), "x": {}}
    }
    accuracy.set_flip_defaults([results], manifest)
    written = json.loads(manifest.read_text())
    assert written["models"]["a"]["flip"] is True
    assert written["models"]["b"]["flip"] is False
    assert "flip" not in written["models"]["c"]  # not measured: left as it was
    assert written["ensembles"]["e"]["flip"] is True
