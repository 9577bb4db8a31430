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
