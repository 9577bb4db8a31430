"""benchmarks.spin: each setting reaches the sessions it times, and the table reads them."""

from __future__ import annotations

from pathlib import Path

import pytest

from faceage.runtime import create_session
from tests._shared import spinning_entry
from tests.tiny_models import write_tiny_model

spin = pytest.importorskip("benchmarks.spin")


def _entry(model: Path) -> str:
    return spinning_entry(create_session(model))


def test_a_setting_holds_inside_and_the_environment_comes_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = write_tiny_model(tmp_path / "tiny") / "model.onnx"
    monkeypatch.delenv("FACEAGE_ORT_SPINNING", raising=False)
    with spin.spinning("on"):
        assert _entry(model) == "1"
    assert _entry(model) == "0"
    monkeypatch.setenv("FACEAGE_ORT_SPINNING", "1")
    with spin.spinning("off"):
        assert _entry(model) == "0"
    assert _entry(model) == "1"


def test_the_table_has_a_row_per_setting() -> None:
    keys = [
        "c3ae_predict_ms_per_image",
        "mobileagenet_predict_ms_per_image",
        "ensemble_batch1_ms",
        "ensemble_batch32_faces_per_s",
        "c3ae_session_batch1_ms",
        "c3ae_session_batch64_faces_per_s",
        "mobileagenet_session_batch1_ms",
        "mobileagenet_session_batch64_faces_per_s",
    ]
    settings = [
        {"spinning": s, "threads": t, **{k: float(i + 1) for i, k in enumerate(keys)}}
        for s, t in spin.SETTINGS
    ]
    text = spin.markdown(
        {
            "settings": settings,
            "command": "python -m benchmarks.spin",
            "machine": "m",
            "images": 100,
            "rounds": 3,
        }
    )
    rows = [line for line in text.splitlines() if line.startswith("| o")]
    assert [r.split(" | ")[:2] for r in rows] == [[f"| {s}", str(t)] for s, t in spin.SETTINGS]
    assert "| 1.00 | 2.00 | 3.00 | 4 | 5.000 | 6 | 7.000 | 8 |" in rows[0]
