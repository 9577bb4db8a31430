"""Tables and the plot of ``benchmarks.intervals``: what ``intervals.md`` and the README show."""

from __future__ import annotations

from pathlib import Path
from typing import Any

DATASET_NAMES = {"utkface": "UTKFace", "aaf": "All-Age-Faces"}


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def summary_table(results: dict[str, Any]) -> list[str]:
    """The 0.8 row of every model: coverage and width per test split, narrow/wide ratio."""
    level = str(results["main_level"])
    lines = [
        "| model | run | coverage, UTKFace test | coverage, AAF test | mean width (UTKFace "
        "/ AAF) | narrow / wide quarter MAE, UTKFace | same, AAF | same within a predicted-"
        "age bin (UTKFace / AAF) | shift check: AAF coverage |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["models"].items():
        utk, aaf = r["test"]["utkface"], r["test"]["aaf"]
        q_utk, q_aaf = utk["quarters"], aaf["quarters"]
        lines.append(
            f"| `{name}` | {r['default']} | {_pct(utk['levels'][level]['coverage'])} | "
            f"{_pct(aaf['levels'][level]['coverage'])} | "
            f"{utk['levels'][level]['width']:.1f} / {aaf['levels'][level]['width']:.1f} | "
            f"{q_utk['narrow_mae']:.1f} / {q_utk['wide_mae']:.1f} = {q_utk['ratio']:.2f}x | "
            f"{q_aaf['narrow_mae']:.1f} / {q_aaf['wide_mae']:.1f} = {q_aaf['ratio']:.2f}x | "
            f"{q_utk['within_age_ratio']:.2f}x / {q_aaf['within_age_ratio']:.2f}x | "
            f"{_pct(r['shift_check']['aaf'][level]['coverage'])} |"
        )
    return lines


def markdown(results: dict[str, Any]) -> str:
    """The whole report: summary, coverage per level, per age group, by detection."""
    level = str(results["main_level"])
    lines = [
        f"Age intervals fitted on {results['fitted_on']}; measured on the test splits, "
        f"{results['machine']}. Command: `{results['command']}`",
        "",
        f"Nominal coverage {level}, each model run as `from_pretrained(name)` runs it:",
        "",
        *summary_table(results),
        "",
        "Coverage (mean width in years) at each nominal level:",
        "",
        "| model | test split | 0.5 | 0.8 | 0.9 | 0.95 | other run at 0.8 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results["models"].items():
        for dataset, t in r["test"].items():
            cells = [
                f"{_pct(t['levels'][lv]['coverage'])} ({t['levels'][lv]['width']:.1f})"
                for lv in ("0.5", "0.8", "0.9", "0.95")
            ]
            other = r["other_variant"][dataset]
            lines.append(
                f"| `{name}` | {DATASET_NAMES[dataset]} | "
                + " | ".join(cells)
                + f" | {_pct(other['coverage'])} ({other['width']:.1f}) |"
            )
    groups = list(next(iter(results["models"].values()))["test"]["utkface"]["age_groups"])
    lines += [
        "",
        f"Coverage at {level} by true age group (groups of 100+ faces in **bold**; mean "
        "width in years):",
        "",
        "| model | test split | " + " | ".join(groups) + " |",
        "|---|---|" + "---|" * len(groups),
    ]
    for name, r in results["models"].items():
        for dataset, t in r["test"].items():
            cells = []
            for g in groups:
                cell = t["age_groups"].get(g)
                if cell is None:
                    cells.append("")
                    continue
                text = f"{_pct(cell['coverage'])} ({cell['width']:.0f})"
                cells.append(f"**{text}**" if cell["n"] >= 100 else text)
            lines.append(f"| `{name}` | {DATASET_NAMES[dataset]} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Detection score and face size (box's shorter side, px), quartiles lowest first, at "
        f"{level}: MAE / coverage / mean width:",
        "",
        "| model | test split | detection score | face size |",
        "|---|---|---|---|",
    ]
    for name, r in results["models"].items():
        for dataset, t in r["test"].items():
            cells = [
                ", ".join(
                    f"{q['mae']:.1f} / {_pct(q['coverage'])} / {q['width']:.0f}"
                    for q in t["by_detection"][key]
                )
                for key in ("score", "face_size")
            ]
            lines.append(f"| `{name}` | {DATASET_NAMES[dataset]} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Cost of the interval against the model (batch of 64 faces, 1 thread, ms per face; "
        "the model time includes the mirror pass where the run flips):",
        "",
        "| model | model ms/face | interval ms/face | share | `age_std` RMS vs error RMS "
        "(UTKFace; AAF) |",
        "|---|---|---|---|---|",
    ]
    for name, r in results["models"].items():
        c = r["cost"]
        stds = "; ".join(f"{t['rms_age_std']:.1f} vs {t['rmse']:.1f}" for t in r["test"].values())
        lines.append(
            f"| `{name}` | {c['model_ms']:.3f} | {c['interval_ms']:.4f} | "
            f"{100 * c['share']:.2f}% | {stds} |"
        )
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> Path | None:
    """Coverage against nominal level on both test splits, every model, and the shift check."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), sharey=True)
    colours = [plt.get_cmap("tab20")(i) for i in range(20)]
    for ax, dataset in zip(axes, ("utkface", "aaf")):
        for index, (name, r) in enumerate(results["models"].items()):
            levels = sorted(r["test"][dataset]["levels"], key=float)
            ax.plot(
                [float(lv) for lv in levels],
                [r["test"][dataset]["levels"][lv]["coverage"] for lv in levels],
                marker="o",
                ms=3,
                lw=1,
                color=colours[index % len(colours)],
                label=name,
            )
        if dataset == "aaf":
            for name, r in results["models"].items():
                shift = r["shift_check"]["aaf"]
                levels = sorted(shift, key=float)
                ax.plot(
                    [float(lv) for lv in levels],
                    [shift[lv]["coverage"] for lv in levels],
                    color="grey",
                    lw=0.8,
                    ls="--",
                    label="fitted on UTKFace val only"
                    if name == next(iter(results["models"]))
                    else None,
                )
        ax.plot([0.5, 1.0], [0.5, 1.0], color="k", lw=0.8)
        ax.set_title(f"{DATASET_NAMES[dataset]} test")
        ax.set_xlabel("nominal coverage")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("share of faces inside their interval")
    fig.legend(fontsize=7, loc="lower right", bbox_to_anchor=(0.49, 0.12), ncol=2)
    fig.suptitle("Age intervals: coverage against nominal (fitted on UTKFace val + AAF val)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _extremes(results: dict[str, Any]) -> tuple[str, str]:
    """The lowest and highest 0.8 coverage of a true-age group of 100+ test faces."""
    cells = [
        (g["coverage"], f"`{name}`, {group}, {DATASET_NAMES[dataset]}")
        for name, r in results["models"].items()
        for dataset, t in r["test"].items()
        for group, g in t["age_groups"].items()
        if g["n"] >= 100
    ]
    low, high = min(cells), max(cells)
    return f"{_pct(low[0])} ({low[1]})", f"{_pct(high[0])} ({high[1]})"


def readme_section(results: dict[str, Any]) -> str:
    """The README's "How sure" part of the models block, from ``intervals.json``."""
    level = str(results["main_level"])
    models = results["models"]
    costs = [r["cost"]["share"] for r in models.values()]

    def span(dataset: str, key: str = "coverage") -> str:
        values = [r["test"][dataset]["levels"][level][key] for r in models.values()]
        return f"{_pct(min(values))}-{_pct(max(values))}"

    shift = [r["shift_check"]["aaf"][level]["coverage"] for r in models.values()]
    low, high = _extremes(results)
    reference = "c3ae" if "c3ae" in models else next(iter(models))
    quartiles = models[reference]["test"]["utkface"]["by_detection"]
    score, size = quartiles["score"], quartiles["face_size"]
    lines = [
        "### How sure: age intervals",
        "",
        f"Each face's `age_low`-`age_high` should hold its true age for {level} of faces "
        "(`age_coverage`, 0.5-0.99). Coverage and mean width (years) on the test splits, "
        "each model run as `from_pretrained(name)` runs it (*run*: with its mirror image "
        "or without):",
        "",
        *summary_table(results),
        "",
        "![coverage against nominal](benchmarks/results/interval_coverage.png)",
        "",
        f"- `{results['command']}` on {results['machine']}; fitted on {results['fitted_on']}, "
        "measured once on test. Per age group, per level, by detection score and face size: "
        "`benchmarks/results/intervals.md`.",
        f"- At {level} the intervals hold {span('utkface')} of UTKFace test faces and "
        f"{span('aaf')} of AAF test faces. AAF's faces (mostly East Asian, adults "
        "under-estimated) stay harder for every model, in a way neither the mirror gap nor "
        "the members' spread sees, so one calibration for both is wider than needed on "
        "UTKFace and narrower on AAF. By true age group (100+ faces) "
        f"coverage runs from {low} to {high}.",
        f"- **Shift**: fitted on UTKFace val alone, the {level} intervals hold only "
        f"{_pct(min(shift))}-{_pct(max(shift))} of AAF test faces (last column). Expect "
        "less than the promised coverage on faces unlike both data sets.",
        "- *Narrow / wide*: MAE of the faces in the narrowest against the widest quarter "
        "of intervals; *within a predicted-age bin*: the same quarters taken among faces "
        "of one predicted-age bin, what the per-face signal buys beyond the age itself.",
        f"- Detection score and face size are not in the scale: on UTKFace test every face "
        f"scores {score[0]['from']:.2f} or more and is {size[0]['from']:.0f}+ px wide, and "
        f"within that range the error moves little (`{reference}`: lowest-score quarter MAE "
        f"{score[0]['mae']:.1f}, covered {_pct(score[0]['coverage'])}, against "
        f"{score[-1]['mae']:.1f} and {_pct(score[-1]['coverage'])} for the highest; "
        f"smallest-face quarter {size[0]['mae']:.1f} and {_pct(size[0]['coverage'])} against "
        f"{size[-1]['mae']:.1f} and {_pct(size[-1]['coverage'])}). On val, a higher score "
        "went with a larger error, because AAF's faces score higher: a data-set marker, "
        "not a sign of a hard face, so it stays out.",
        f"- Computing the interval costs {100 * min(costs):.2f}-{100 * max(costs):.2f}% of "
        "a face's model time (batch of 64, 1 thread).",
    ]
    return "\n".join(lines) + "\n"
