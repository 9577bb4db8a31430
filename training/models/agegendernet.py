"""Joint age + gender CNN (seed paper "joint-age-gender-cnn"), one 64x64 crop.

Figure 1 of the paper: four 3x3 convolutions with 64 / 128 / 256 / 512 filters, each
with BN + ReLU + 2x2 max pooling (64 -> 4), then two fully connected layers of 512
with dropout, regressing (age, gender) jointly with an L2 loss. About 6.0M
parameters, as the paper says.

Choices: "same" padding; both regression targets are standardised so the two L2 terms
weigh alike: age as (age - 33) / 20 (about the mean and spread of UTKFace ages) and
gender as -1 (male) / +1 (female); the gender output maps back to P(female) as
(g + 1) / 2, clipped to [0, 1] at export. (The paper's scale, age / 116 next to a 0/1
gender, gives the gender term ~8x the age term's variance.) The paper uses dropout
without a rate; 0.5, our first choice, stalled learning: val MAE stayed at 13.3-14.4
for 6 epochs (with either target scale) with predictions squeezed towards the mean
(std 6 years against the labels' 20); after 150 batches val MAE was 12.2 with dropout
0.5 against 9.3 without, so the rate is 0.1.
"""

from __future__ import annotations

import torch
from torch import nn

from training.models.common import conv_bn

AGE_CENTER, AGE_SPREAD = 33.0, 20.0


class AgeGenderNet(nn.Module):
    def __init__(
        self,
        widths: tuple[int, ...] = (64, 128, 256, 512),
        input_size: int = 64,
        hidden: int = 512,
        dropout: float = 0.1,
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
        return {"age": out[:, 0] * AGE_SPREAD + AGE_CENTER, "gender": (out[:, 1] + 1.0) / 2.0}

    def loss(
        self, out: dict[str, torch.Tensor], ages: torch.Tensor, genders: torch.Tensor
    ) -> torch.Tensor:
        age_error = (out["age"] - ages) / AGE_SPREAD
        gender_error = 2.0 * (out["gender"] - genders.float())  # in the +-1 target's units
        return age_error.square().mean() + gender_error.square().mean()
