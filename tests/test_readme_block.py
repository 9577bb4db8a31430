"""The README's models block is what ``python -m benchmarks.readme`` makes of the results.

A figure typed by hand, or a benchmark re-run without the README rewritten, fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import readme


def test_readme_models_block_matches_the_benchmark_results(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert readme.main(["--check"]) == 0, capsys.readouterr().out


def test_check_reports_a_stale_block(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    text = (readme.ROOT / "README.md").read_text(encoding="utf-8")
    stale = text.replace(readme.END, "| `made-up` | age | 1 | 1 KB | 1.00 |\n" + readme.END)
    (tmp_path / "README.md").write_text(stale, encoding="utf-8")
    monkeypatch.setattr(readme, "ROOT", tmp_path)
    assert readme.main(["--check"]) == 1
    assert (tmp_path / "README.md").read_text(encoding="utf-8") == stale  # --check writes nothing


def _quantize_report(name: str) -> dict:
    variant = {
        "file_bytes": 40_000,
        "speedup": {"geomean": 1.4, "b1_t1": 1.3, "b64_t2": 1.5},
        "mae": 5.01,
        "mae_delta": 0.01,
        "qualifies": True,
    }
    return {
        "machine": "test machine",
        "onnxruntime": "1.0",
        "calibration_images": 10,
        "images": 10,
        "min_speedup": 1.3,
        "max_mae_loss": 0.1,
        "command": f"python -m benchmarks.quantize --models {name}",
        "models": {
            name: {
                "fp32": {"file_bytes": 160_000, "sha256": None},
                "variants": {"qdq": variant},
                "qualifying_variant": "qdq",
            }
        },
    }


@pytest.mark.parametrize(("name", "shipped"), [("agegendernet", True), ("c3ae", False)])
def test_a_qualifying_variant_ships_only_when_the_manifest_holds_it(
    name: str, shipped: bool
) -> None:
    registered = f"{name}-int8" in readme.load_manifest().models
    assert registered is shipped  # agegendernet-int8 is in the manifest, c3ae-int8 is not
    row = next(
        line
        for line in readme.quantize_section(_quantize_report(name)).splitlines()
        if "| qdq |" in line
    )
    assert row.endswith(f"**ships** (`{name}-int8`) |" if shipped else "qualifies (not shipped) |")
