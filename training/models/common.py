"""Pieces shared by the age networks: output conventions and small blocks.

Every network's ``forward`` takes normalised pixels, ``(N, 3, S, S)`` or
``(N, K, 3, S, S)``, and returns a dict with ``"age"`` in years ``(N,)`` and, for
joint models, ``"gender"`` as a raw score whose meaning ``gender_probability`` knows.
Each network's ``loss(outputs, ages, genders)`` is the loss of its paper.
"""

from __future__ import annotations

import torch
from torch import nn

AGE_MAX = 116.0  # oldest age in UTKFace; the contract clips to [0, 116]


def count_params(module: nn.Module) -> int:
    """Trainable parameters (BatchNorm running statistics are buffers, not counted)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def fold_crops(x: torch.Tensor, num_crops: int) -> tuple[torch.Tensor, int]:
    """(N, K, 3, S, S) -> (N*K, 3, S, S) so a shared CNN runs every crop in one call."""
    if x.dim() != 5 or x.shape[1] != num_crops:
        raise ValueError(f"expected (N, {num_crops}, 3, S, S) input, got {tuple(x.shape)}")
    n = x.shape[0]
    return x.reshape(n * num_crops, *x.shape[2:]), n


class SqueezeExcite(nn.Module):
    """Channel attention (Hu et al.): global pool, bottleneck, gate."""

    def __init__(self, channels: int, squeezed: int, gate: nn.Module | None = None) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.expand = nn.Conv2d(squeezed, channels, 1)
        self.gate = gate if gate is not None else nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean(dim=(2, 3), keepdim=True)
        scale = self.gate(self.expand(torch.relu(self.reduce(scale))))
        return x * scale


def conv_bn(
    cin: int, cout: int, kernel: int, *, padding: int = 0, stride: int = 1, groups: int = 1
) -> list[nn.Module]:
    """Convolution without bias (BatchNorm's shift replaces it) followed by BatchNorm."""
    return [
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
