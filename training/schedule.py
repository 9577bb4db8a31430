"""The learning-rate schedule every fit shares: linear warm-up, then cosine decay."""

from __future__ import annotations

import math
from typing import Any


def learning_rate(
    config: dict[str, Any], step: int, total_steps: int, steps_per_epoch: int
) -> float:
    """Linear warm-up, then cosine decay to ``final_lr_fraction * lr``."""
    warmup = config.get("warmup_epochs", 1) * steps_per_epoch
    base, final = config["lr"], config["lr"] * config.get("final_lr_fraction", 0.01)
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    return final + 0.5 * (base - final) * (1 + math.cos(math.pi * progress))
