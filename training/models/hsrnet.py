"""HSR-Net and SepHSR-Net (Huang et al., IEEE Access 2023), k-resolution setting.

Table 1 (HSR) / Table 3 (SepHSR): six 3x3 convolutions with p kernels, zero padding,
BN + ReLU, 2x2 average pooling after every second one (64 -> 32 -> 16 -> 8). SepHSR
replaces convolutions 2..6 by a depthwise 3x3 followed by a pointwise 1x1 + BN + ReLU.
The conv layers are shared by the k crops ("resolutions"); their 8x8xp maps are
concatenated to 8x8x(pk) (Table 4) and read by two homologous staged sub-networks
(stage H, coarse; stage L, fine), both on the last conv layer:
    1x1 conv pk -> q, adaptive average pooling, flatten, dropout 0.2,
    Dense+ReLU -> q, Dense+ReLU -> 2q, Dense+Softmax -> q, Dense q -> 1 (no bias)
whose last weights start at the left end-points of the stage's age intervals
(stage H: i * U / q, stage L: i * U / q^2) and are trained: the paper's dynamic range.
Predicted age = stage H + stage L; loss MAE.

``pool`` is the adaptive pooling grid: 4 as in Table 2, except SepHSR(90,30) where 2
brings the count to the paper's 75.7K (with 4 the tables give 102K; see the card).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.models.common import AGE_MAX, conv_bn, fold_crops


def _conv_layers(p: int, separable: bool) -> nn.Sequential:
    layers: list[nn.Module] = [*conv_bn(3, p, 3, padding=1), nn.ReLU(inplace=True)]
    for index in range(1, 6):
        if separable:
            layers.append(nn.Conv2d(p, p, 3, padding=1, groups=p, bias=False))
            layers += conv_bn(p, p, 1)
        else:
            layers += conv_bn(p, p, 3, padding=1)
        layers.append(nn.ReLU(inplace=True))
        if index % 2 == 1:
            layers.append(nn.AvgPool2d(2))
    return nn.Sequential(*layers)


class StagedSubNetwork(nn.Module):
    def __init__(self, channels: int, q: int, pool: int, left_endpoints: torch.Tensor) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, q, 1)
        # the last conv map is always 8x8 (64 px input); a fixed pooling window equals
        # the paper's adaptive pooling and, unlike it, exports with a dynamic batch axis
        self.pool = nn.AvgPool2d(8 // pool)
        self.head = nn.Sequential(
            nn.Dropout(0.2),
            nn.Linear(q * pool * pool, q),
            nn.ReLU(inplace=True),
            nn.Linear(q, 2 * q),
            nn.ReLU(inplace=True),
            nn.Linear(2 * q, q),
        )
        self.value = nn.Linear(q, 1, bias=False)
        with torch.no_grad():
            self.value.weight.copy_(left_endpoints[None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = torch.flatten(self.pool(self.reduce(x)), 1)
        return self.value(torch.softmax(self.head(features), dim=1)).squeeze(1)


class HSRNet(nn.Module):
    def __init__(
        self,
        p: int,
        q: int,
        *,
        separable: bool,
        num_crops: int = 3,
        pool: int = 4,
        value_range: float = AGE_MAX,
    ) -> None:
        super().__init__()
        self.num_crops = num_crops
        self.convs = _conv_layers(p, separable)
        index = torch.arange(q, dtype=torch.float32)
        self.stage_h = StagedSubNetwork(p * num_crops, q, pool, index * value_range / q)
        self.stage_l = StagedSubNetwork(p * num_crops, q, pool, index * value_range / q**2)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.dim() == 4:
            x = x[:, None]
        crops, n = fold_crops(x, self.num_crops)
        maps = self.convs(crops)
        # the k crops' last conv maps, concatenated: (N, k * p, 8, 8)
        maps = maps.reshape(n, self.num_crops * maps.shape[1], *maps.shape[2:])
        return {"age": self.stage_h(maps) + self.stage_l(maps)}

    def loss(
        self, out: dict[str, torch.Tensor], ages: torch.Tensor, genders: torch.Tensor
    ) -> torch.Tensor:
        return F.l1_loss(out["age"], ages)
