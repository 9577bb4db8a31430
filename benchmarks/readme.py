"""Write the README's "Models" table from the benchmark results, never by hand.

    python -m benchmarks.readme

Reads ``benchmarks/results/accuracy.json`` and ``speed.json`` (made by
``python -m benchmarks.accuracy`` and ``python -m benchmarks.speed``) and the manifest,
and replaces the text between ``<!-- models-table:start -->`` and
``<!-- models-table:end -->`` in README.md. When ``peer.json`` (``python -m
benchmarks.peer``), ``quantize.json`` (``python -m benchmarks.quantize``) and
``intervals.json`` (``python -m benchmarks.intervals``) exist, the block also gets a
"Side by side with a peer", a "Quantized variants" and a "How sure" section, and
``throughput.json`` (``python -m benchmarks.throughput``) a "Folders and photo
libraries" section.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS_DIR, ROOT, commands, signed
from faceage.spec import EnsembleSpec, ModelSpec, load_manifest

START, END = "<!-- models-table:start -->", "<!-- models-table:end -->"


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _names(names: tuple[str, ...]) -> str:
    return " and ".join(f"`{n}`" for n in names)


TITLES = {"utkface": "UTKFace", "aaf": "AAF"}


def _learned_from(spec: ModelSpec | EnsembleSpec) -> str:
    """The data sets a model learned from (an ensemble: its members'), from the
    manifest's ``trained_on`` (models exported before data sets were a parameter: UTKFace)."""
    members = spec.members if isinstance(spec, EnsembleSpec) else (spec,)
    sets = dict.fromkeys(d for m in members for d in m.metrics.get("trained_on", ["utkface"]))
    return " + ".join(TITLES[d] for d in sets)


def _mae_cells(runs: dict[str, Any], flip: bool) -> list[str]:
    """MAE without and with flip, the model's default in bold."""
    maes = [
        f"{run['mae']:.2f}" if "mae" in run else ""
        for run in (runs.get("off", {}), runs.get("on", {}))
    ]
    default = 1 if flip else 0
    if maes[default]:
        maes[default] = f"**{maes[default]}**"
    return maes


def models_table(
    accuracy: dict[str, Any], speed: dict[str, Any], aaf: dict[str, Any] | None = None
) -> str:
    manifest = load_manifest()
    aaf = aaf or {}
    lines = [
        "| model | task | learned from | params | size | UTKFace MAE | with flip | AAF MAE "
        "| with flip | gender UTKFace | gender AAF | ms/face | faces/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    specs: list[ModelSpec | EnsembleSpec] = [
        *(manifest.models[name] for name in sorted(manifest.models)),
        *(manifest.ensembles[name] for name in sorted(manifest.ensembles)),
    ]
    for spec in specs:
        name = spec.name
        plain = accuracy.get("models", {}).get(name, {}).get("off", {})
        flipped = accuracy.get("models", {}).get(name, {}).get("on", {})
        acc = flipped if spec.flip else plain  # what from_pretrained(name) gives
        spd = speed.get("models", {}).get(name, {})
        thr = spd.get("threads", {}).get("1", {})
        thr2 = spd.get("threads", {}).get("2", {})
        size = spd.get("file_bytes") or (
            sum(m.file.size or 0 for m in spec.members)
            if isinstance(spec, EnsembleSpec)
            else spec.file.size
        )
        gender = acc.get("gender_accuracy")
        aaf_runs = aaf.get("models", {}).get(name, {})
        aaf_gender = aaf_runs.get("on" if spec.flip else "off", {}).get("gender_accuracy")
        lines.append(
            "| "
            + " | ".join(
                [
                    f"`{name}`",
                    spec.task,
                    _learned_from(spec),
                    f"{spec.params / 1e3:.1f}K"
                    if spec.params and spec.params < 1e6
                    else (f"{spec.params / 1e6:.2f}M" if spec.params else ""),
                    f"{size / 1024:.0f} KB" if size else "",
                    *_mae_cells({"off": plain, "on": flipped}, spec.flip),
                    *_mae_cells(aaf_runs, spec.flip),
                    f"{100 * gender:.1f}%" if gender is not None else "",
                    f"{100 * aaf_gender:.1f}%" if aaf_gender is not None else "",
                    f"{thr['latency_ms_batch1']:.2f}" if thr else "",
                    f"{thr2['faces_per_s_batch64']:.0f}" if thr2 else "",
                ]
            )
            + " |"
        )
    notes = [
        f"`{e.name}` is not one net: its age is the mean of {_names(e.age_from)}"
        + (f", its gender the mean P(female) of {_names(e.gender_from)}" if e.gender_from else "")
        + "; size, parameters and speed are its members' together."
        for e in manifest.ensembles.values()
    ]
    if accuracy:
        notes.append(
            "Accuracy: "
            + " and ".join(
                f"`{c}`"
                for c in dict.fromkeys(
                    c
                    for results in (accuracy, aaf)
                    if results
                    for c in results.get("commands", [results.get("command")])
                )
            )
            + f" on the UTKFace test split "
            f"({accuracy.get('images')} images)"
            + (f" and the All-Age-Faces test split ({aaf.get('images')} images)" if aaf else "")
            + ", full pipeline; *with flip* averages each "
            "face with its mirror image (twice the model time, not the detection). **Bold**: "
            "what `from_pretrained(name)` does unless told (`flip=`, `--flip`/`--no-flip`): "
            "flip is on for the models where it lowered the val MAE without lowering the "
            "val gender accuracy (`python -m benchmarks.accuracy --split val --flip both "
            "--update-manifest`); gender accuracy is of that default; ms/face and "
            f"faces/s are one pass; {accuracy.get('machine')}."
        )
    if speed:
        notes.append(
            f"Speed: {commands(speed)}; ms/face at batch 1 with 1 thread, faces/s at "
            f"batch 64 with 2 threads; {speed.get('machine')}."
        )
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"


def peer_section(peer: dict[str, Any]) -> str:
    """faceage next to the peer package, both measured in one run on one machine."""
    from benchmarks.peer import TRAINING_DATA_CAVEAT, summary_rows

    versions = ", ".join(f"{k} {v}" for k, v in peer["peer"]["versions"].items())
    lines = [
        "### Side by side with a peer",
        "",
        "| package | model | detector | test MAE | CS(5) | gender acc | no face | images/s |",
        "|---|---|---|---|---|---|---|---|",
        *("| " + " | ".join(row) + " |" for row in summary_rows(peer)),
        "",
        f"- `{peer['command']}`: UTKFace {peer['split']} split ({peer['images']} images), "
        f"both in one run on {peer['machine']}, {peer['speed']['threads']} onnxruntime "
        f"thread each; images/s include decoding and detection. Each tool scores its "
        f"first face; *no face* images are left out of its MAE. The peer's age output "
        f"stops at 80. Peer environment: {versions}.",
        f"- {TRAINING_DATA_CAVEAT}",
        *(
            f"- On the {c['images']} images where both `{name}`'s and the peer's own detector "
            f"found a face: MAE {c['faceage']['mae']:.2f} (faceage) vs "
            f"{c['peer']['mae']:.2f} (peer)."
            for name, c in peer.get("both_found", {}).items()
        ),
    ]
    return "\n".join(lines) + "\n"


def _verdict(
    name: str, report: dict[str, Any], variant: str, entry: dict[str, Any], shipped: bool
) -> str:
    """``shipped``: the manifest holds ``NAME-int8`` (a qualifying variant is only
    measured until ``benchmarks.quantize --ship`` registers it)."""
    if variant == report.get("qualifying_variant"):
        return f"**ships** (`{name}-int8`)" if shipped else "qualifies (not shipped)"
    if not entry["qualifies"]:
        return "no"
    return "qualifies (another ships)" if shipped else "qualifies (not shipped)"


def quantize_section(quantize: dict[str, Any]) -> str:
    """int8 variants of each model: speed-up and the test MAE they cost."""
    lines = [
        "### Quantized variants",
        "",
        "| model | int8 variant | size | speed-up (geo-mean; min-max) | val ΔMAE | test MAE "
        "| ΔMAE | ships? |",
        "|---|---|---|---|---|---|---|---|",
    ]
    models = load_manifest().models
    stale = [
        name
        for name, r in quantize.get("models", {}).items()
        if name in models
        and r.get("fp32", {}).get("sha256") not in (None, models[name].file.sha256)
    ]
    for name, r in quantize.get("models", {}).items():
        label = f"`{name}` (earlier weights)" if name in stale else f"`{name}`"
        shipped = f"{name}-int8" in models
        if "error" in r:
            lines.append(f"| {label} | | failed | | | | | no |")
            continue
        for variant, e in r["variants"].items():
            if "error" in e:
                lines.append(f"| {label} | {variant} | failed | | | | | no |")
                continue
            ratios = [v for k, v in e["speedup"].items() if k != "geomean"]
            lines.append(
                f"| {label} | {variant} | {e['file_bytes'] / 1024:.0f} KB "
                f"(fp32 {r['fp32']['file_bytes'] / 1024:.0f} KB) | "
                f"{e['speedup']['geomean']:.2f}x; {min(ratios):.2f}-{max(ratios):.2f} | "
                f"{signed(e.get('val_mae_delta'), 2)} | {e['mae']:.2f} | {e['mae_delta']:+.2f} | "
                f"{_verdict(name, r, variant, e, shipped)} |"
            )
    lines += [
        "",
        f"- {commands(quantize)} on {quantize['machine']}, onnxruntime "
        f"{quantize['onnxruntime']}; static variants calibrated on "
        f"{quantize['calibration_images']} UTKFace val images; MAE on the "
        f"{quantize['images']} test images through the full pipeline. Speed-up: batch-1 "
        "latency and batch-64 throughput at 1 and 2 threads against the float32 file. "
        f"A variant ships only at >= {quantize['min_speedup']}x and <= "
        f"{quantize['max_mae_loss']} years MAE loss on val (test is only reported); the "
        "fastest qualifying variant ships"
        + (
            f", speed-ups within {quantize['speed_tie']:.0%} of it being a tie that the "
            "lower val MAE breaks."
            if "speed_tie" in quantize
            else "."
        ),
    ]
    earlier = [n for n, r in quantize.get("models", {}).items() if r.get("chosen_on") != "val"]
    if earlier:
        lines.append(
            f"- No val ΔMAE: {', '.join(f'`{n}`' for n in earlier)} "
            f"{'was' if len(earlier) == 1 else 'were'} measured before the choice moved to "
            "val, when it was made on test MAE (where no variant reaches the speed bar the "
            "verdict rests on speed alone); re-run `python -m benchmarks.quantize "
            f"--models {','.join(earlier)}` to choose on val."
        )
    if stale:
        names = ", ".join(f"`{n}`" for n in stale)
        lines.append(
            f"- *Earlier weights*: {names} {'was' if len(stale) == 1 else 'were'} retrained "
            "after these rows were measured, so "
            "those rows describe earlier float32 files; re-run `python -m benchmarks.quantize "
            f"--models {','.join(stale)}` to refresh them."
        )
    return "\n".join(lines) + "\n"


def breakdown_section(results_dir: Path) -> str:
    """Where the models are weak: the accuracy benchmark's breakdown tables and plots."""
    text = ""
    markdown = results_dir / "accuracy.md"
    if markdown.exists():
        # The breakdown tables follow the headline table in accuracy.md.
        body = markdown.read_text(encoding="utf-8")
        parts = body.split("\n\nMAE by age group", 1)
        if len(parts) == 2:
            text += "\n### Where the models err\n\nMAE by age group" + parts[1]
    for name, title in (
        ("mae_by_age_group.png", "MAE by age group"),
        ("predicted_vs_true.png", "predicted vs true age"),
    ):
        if (results_dir / name).exists():
            text += f"\n![{title}](benchmarks/results/{name})\n"
    return text


def detector_section(results_dir: Path) -> str:
    """Detector speed, as ``benchmarks.speed`` wrote it (whole folders: the throughput
    section)."""
    markdown = results_dir / "speed.md"
    if not markdown.exists():
        return ""
    parts = markdown.read_text(encoding="utf-8").split("\nDetectors, ms per image:", 1)
    if len(parts) != 2:
        return ""
    return "\n### Detectors\n\nDetectors, ms per image:" + parts[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Rewrite README.md's models block from benchmarks/results/ and the manifest."
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 when README.md's block differs from what the results give",
    )
    args = parser.parse_args(argv)
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise SystemExit(f"README.md has no {START} ... {END} block")
    table = models_table(
        _load(RESULTS_DIR / "accuracy.json"),
        _load(RESULTS_DIR / "speed.json"),
        _load(RESULTS_DIR / "aaf_accuracy.json"),
    )
    table = table.rstrip("\n") + "\n"
    table += breakdown_section(RESULTS_DIR)
    table += detector_section(RESULTS_DIR)
    throughput = _load(RESULTS_DIR / "throughput.json")
    if throughput:
        from benchmarks.throughput_report import readme_section as throughput_section

        table += "\n" + throughput_section(throughput)
    peer = _load(RESULTS_DIR / "peer.json")
    if peer:
        table += "\n" + peer_section(peer)
    quantize = _load(RESULTS_DIR / "quantize.json")
    if quantize:
        table += "\n" + quantize_section(quantize)
    intervals = _load(RESULTS_DIR / "intervals.json")
    if intervals:
        from benchmarks.interval_report import readme_section

        table += "\n" + readme_section(intervals)
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.DOTALL)
    updated = pattern.sub(lambda _: f"{START}\n{table}{END}", text)
    if args.check:
        if updated != text:
            print("README.md's models block is stale: run python -m benchmarks.readme")
            return 1
        print("README.md's models block matches benchmarks/results/")
        return 0
    readme.write_text(updated, encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
