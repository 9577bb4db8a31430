"""Validation during training: plain and mirrored val faces."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from training.splits import validate  # noqa: E402


class _Split:
    """Four val faces whose left half is bright or dark; gender label 1 = female."""

    def __init__(self) -> None:
        x = torch.zeros(4, 1, 3, 8, 8)
        x[[0, 1], ..., :4] = 1.0  # bright on the left
        x[[2, 3], ..., 4:] = 1.0  # bright on the right
        self.x = x
        self.ages = np.array([10.0, 20.0, 30.0, 40.0], np.float32)
        self.genders = np.array([1, 1, 0, 1])
        self.names = ["utkface"]

    def __len__(self) -> int:
        return 4

    def inputs(self, rows: np.ndarray) -> torch.Tensor:
        return self.x[rows]


class _LeftBright(torch.nn.Module):
    """Says 'female' when the left half is brighter: not mirror-symmetric on purpose."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = x[:, 0]
        left, right = x[..., :4].mean((1, 2, 3)), x[..., 4:].mean((1, 2, 3))
        return {"gender": (left > right).float()}


def test_validate_scores_the_mirrored_faces_when_asked() -> None:
    data = _Split()
    val, mirrored, score = validate(_LeftBright(), data, {})  # type: ignore[arg-type]
    assert mirrored is None
    assert val["gender_accuracy"] == 0.75 and score == pytest.approx(0.25)
    val, mirrored, score = validate(
        _LeftBright(),
        data,  # type: ignore[arg-type]
        {"validate_mirrored": True},
    )
    assert val["gender_accuracy"] == 0.75
    assert mirrored is not None and mirrored["gender_accuracy"] == 0.25
    assert score == pytest.approx((0.25 + 0.75) / 2)
