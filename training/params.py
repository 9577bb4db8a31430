"""Print each architecture's trainable parameters next to its paper's figure.

python -m training.params
"""

from __future__ import annotations

from training.models import ARCHITECTURES, build_model, count_params


def parameter_table() -> list[tuple[str, int, int, float]]:
    rows = []
    for name, (_, paper) in ARCHITECTURES.items():
        ours = count_params(build_model(name))
        rows.append((name, ours, paper, 100.0 * (ours - paper) / paper))
    return rows


def main() -> None:
    print(f"{'model':16s} {'ours':>10s} {'paper':>10s} {'diff':>7s}")
    for name, ours, paper, diff in parameter_table():
        print(f"{name:16s} {ours:10,d} {paper:10,d} {diff:+6.1f}%")


if __name__ == "__main__":
    main()
