"""An exponential moving average of a model's weights, validated and shipped in its place.

Late in a cosine schedule the val score of consecutive epochs still swings (mobileagenet:
4.93 to 5.26 years MAE between neighbouring epochs), so the best single epoch is partly
a lucky draw that test does not repeat. Averaging the weights over the last few hundred
steps removes most of that swing.

    "ema": {"decay": 0.998, "from_epoch": 0}

keeps ``average = decay * average + (1 - decay) * weights`` after every optimiser step
from 0-based epoch ``from_epoch`` on (the average starts as a copy of the weights then).
Floating-point buffers (BatchNorm running statistics) are averaged the same way, integer
ones copied. While it runs, validation, ``best.pt`` and so the exported file use the
average; the raw weights go on training and their val score is logged beside it.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class WeightAverage:
    """A frozen copy of ``model`` that follows its weights with an exponential decay."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for param in self.model.parameters():
            param.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        source = model.state_dict()
        for key, value in self.model.state_dict().items():
            if value.dtype.is_floating_point:
                value.lerp_(source[key], 1.0 - self.decay)
            else:
                value.copy_(source[key])

    def state_dict(self) -> dict[str, Any]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state)


def averaging(config: dict[str, Any], epoch: int) -> bool:
    """Whether 0-based ``epoch`` updates (and validates) the weight average."""
    settings = config.get("ema")
    return bool(settings) and epoch >= settings.get("from_epoch", 0)
