"""C3AE (Zhang et al., CVPR 2019): compact plain CNN, two-point representation, context.

Table 1 of the paper: a plain CNN shared by three context crops of 64x64 — Conv1..Conv4
3x3x32 with BN + ReLU (+ 2x2 average pooling after the first three, "BRA"), Conv5
1x1x32 — then the crops' features are concatenated, a fully connected layer ``W1``
predicts a distribution over age bins of width K=10 (KL loss against the two-point
representation of the label), and ``W2`` maps the distribution to the age (L1 loss).
Total loss ``alpha * KL + L1`` with alpha = 10.

Choices where the paper is vague (written in the model card):
- "valid" 3x3 convolutions (64 -> 62 -> 31 -> 29 -> 14 -> 12 -> 6 -> 4), as the table's
  output sizes imply;
- SE modules (squeeze factor 2, the paper reports them as better) after each of the four
  BN + ReLU blocks;
- each crop's 4x4x32 Conv5 map is average-pooled to 2x2x32 (128 values) before the
  concatenation, which lands the model on the paper's 39.7K parameters;
- 13 bins at 0, 10, ..., 120 so every UTKFace age (0..116) has two adjacent bins;
  ``W2`` starts at the bin centres, so the first prediction is the distribution's mean.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.models.common import SqueezeExcite, conv_bn, fold_crops

BIN_WIDTH = 10.0
NUM_BINS = 13  # 0, 10, ..., 120


class C3AEBackbone(nn.Module):
    def __init__(self, channels: int = 32, use_se: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for block in range(4):
            layers += conv_bn(cin, channels, 3)
            layers.append(nn.ReLU(inplace=True))
            if block < 3:
                layers.append(nn.AvgPool2d(2))
            if use_se:
                layers.append(SqueezeExcite(channels, channels // 2))
            cin = channels
        layers.append(nn.Conv2d(channels, channels, 1))
        layers.append(nn.AvgPool2d(2))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.layers(x), 1)


class C3AE(nn.Module):
    def __init__(
        self, num_crops: int = 3, use_se: bool = True, alpha: float = 10.0, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.num_crops = num_crops
        self.alpha = alpha
        self.backbone = C3AEBackbone(use_se=use_se)
        self.dropout = nn.Dropout(dropout)
        self.to_bins = nn.Linear(num_crops * 128, NUM_BINS)  # W1
        self.to_age = nn.Linear(NUM_BINS, 1)  # W2
        with torch.no_grad():
            self.to_age.weight.copy_(torch.arange(NUM_BINS, dtype=torch.float32) * BIN_WIDTH)
            self.to_age.bias.zero_()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        crops, n = fold_crops(x, self.num_crops)
        features = self.backbone(crops).reshape(n, -1)
        log_bins = F.log_softmax(self.to_bins(self.dropout(features)), dim=1)
        age = self.to_age(log_bins.exp()).squeeze(1)
        return {"age": age, "log_bins": log_bins}

    def loss(
        self, out: dict[str, torch.Tensor], ages: torch.Tensor, genders: torch.Tensor
    ) -> torch.Tensor:
        target = two_point_representation(ages)
        kl = F.kl_div(out["log_bins"], target, reduction="batchmean")
        return self.alpha * kl + F.l1_loss(out["age"], ages)


def two_point_representation(ages: torch.Tensor) -> torch.Tensor:
    """Each age as weights on its two adjacent bins (paper eq. 3)."""
    position = (ages / BIN_WIDTH).clamp(0, NUM_BINS - 1 - 1e-4)
    low = position.floor().long()
    frac = position - low.float()
    target = torch.zeros(ages.shape[0], NUM_BINS, dtype=ages.dtype, device=ages.device)
    target.scatter_(1, low[:, None], (1 - frac)[:, None])
    target.scatter_add_(1, (low + 1)[:, None], frac[:, None])
    return target
