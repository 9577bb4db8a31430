"""Write the README's "Models" table from the benchmark results, never by hand.

    python -m benchmarks.readme

Reads ``benchmarks/results/accuracy.json`` and ``speed.json`` (made by
``python -m benchmarks.accuracy`` and ``python -m benchmarks.speed``) and the manifest,
and replaces the text between ``<!-- models-table:start -->`` and
``<!-- models-table:end -->`` in README.md.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS_DIR, ROOT
from faceage.spec import load_manifest

START, END = "<!-- models-table:start -->", "<!-- models-table:end -->"


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def models_table(accuracy: dict[str, Any], speed: dict[str, Any]) -> str:
    manifest = load_manifest()
    lines = [
        "| model | task | params | size | test MAE | CS(5) | gender acc | ms/face | faces/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in sorted(manifest.models):
        spec = manifest.models[name]
        acc = accuracy.get("models", {}).get(name, {}).get("off", {})
        spd = speed.get("models", {}).get(name, {})
        thr = spd.get("threads", {}).get("1", {})
        thr2 = spd.get("threads", {}).get("2", {})
        size = spd.get("file_bytes") or spec.file.size
        gender = acc.get("gender_accuracy")
        lines.append(
            "| "
            + " | ".join(
                [
                    f"`{name}`",
                    spec.task,
                    f"{spec.params / 1e3:.1f}K"
                    if spec.params and spec.params < 1e6
                    else (f"{spec.params / 1e6:.2f}M" if spec.params else ""),
                    f"{size / 1024:.0f} KB" if size else "",
                    f"{acc['mae']:.2f}" if "mae" in acc else "",
                    f"{100 * acc['cs5']:.1f}%" if "cs5" in acc else "",
                    f"{100 * gender:.1f}%" if gender is not None else "",
                    f"{thr['latency_ms_batch1']:.2f}" if thr else "",
                    f"{thr2['faces_per_s_batch64']:.0f}" if thr2 else "",
                ]
            )
            + " |"
        )
    notes = []
    if accuracy:
        notes.append(
            f"Accuracy: `{accuracy.get('command')}` on the UTKFace test split "
            f"({accuracy.get('images')} images), full pipeline, flip off; "
            f"{accuracy.get('machine')}."
        )
    if speed:
        notes.append(
            f"Speed: `{speed.get('command')}`; ms/face at batch 1 with 1 thread, faces/s at "
            f"batch 64 with 2 threads; {speed.get('machine')}."
        )
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"


def main() -> int:
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise SystemExit(f"README.md has no {START} ... {END} block")
    table = models_table(_load(RESULTS_DIR / "accuracy.json"), _load(RESULTS_DIR / "speed.json"))
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.DOTALL)
    readme.write_text(pattern.sub(lambda _: f"{START}\n{table}{END}", text), encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
