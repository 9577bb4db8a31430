"""Joint age + gender CNN (seed paper "joint-age-gender-cnn"), one 64x64 crop.

Figure 1 of the paper: four 3x3 convolutions with 64 / 128 / 256 / 512 filters, each
with BN + ReLU + 2x2 max pooling (64 -> 4), then two fully connected layers of 512
with dropout 0.5, regressing (age, gender) jointly with an L2 loss. About 6.0M
parameters, as the paper says.

Choices: "same" padding; the age target is scaled to age / 116 so the two L2 terms
weigh alike; gender is regressed to 0 (male) / 1 (female), so the output estimates the
probability of "female" and is clipped to [0, 1] at export.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.models.common import AGE_MAX, conv_bn


class AgeGenderNet(nn.Module):
    def __init__(
        self,
        widths: tuple[int, ...] = (64, 128, 256, 512),
        input_size: int = 64,
        hidden: int = 512,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for width in widths:
            layers += [*conv_bn(cin, width, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            cin = width
        self.features = nn.Sequential(*layers)
        grid = input_size // 2 ** len(widths)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(cin * grid * grid, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, 2),
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.dim() == 5:
            x = x[:, 0]
        out = self.head(self.features(x))
        return {"age": out[:, 0] * AGE_MAX, "gender": out[:, 1]}

    def loss(
        self, out: dict[str, torch.Tensor], ages: torch.Tensor, genders: torch.Tensor
    ) -> torch.Tensor:
        return F.mse_loss(out["age"] / AGE_MAX, ages / AGE_MAX) + F.mse_loss(
            out["gender"], genders.float()
        )
