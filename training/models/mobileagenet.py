"""MobileAgeNet (arXiv 2026): MobileNetV3-Large backbone + compact bounded-regression head.

The backbone is MobileNetV3-Large as in Howard et al. (ICCV 2019), Table 1: a 3x3
stride-2 stem (16, h-swish), fifteen inverted-residual blocks (kernel, expansion,
output, SE, activation, stride as in that table), a 1x1 conv to 960 (h-swish) and
global average pooling. The summary we have gives only "compact regression head",
"bounded age regression" and 3.23M parameters; our head: Linear 960 -> 256 +
h-swish + dropout 0.2, then ``116 * sigmoid(Linear 256 -> 1)`` for age (bounded to
[0, 116]) and ``Linear 256 -> 1`` for the gender logit; 3.22M parameters in all.
No ImageNet weights can be downloaded here; how the backbone got its start instead is
in ``training/cards/mobileagenet.md``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.models.common import AGE_MAX, SqueezeExcite, conv_bn

# kernel, expanded channels, output channels, squeeze-excite, h-swish, stride
LARGE_BLOCKS = (
    (3, 16, 16, False, False, 1),
    (3, 64, 24, False, False, 2),
    (3, 72, 24, False, False, 1),
    (5, 72, 40, True, False, 2),
    (5, 120, 40, True, False, 1),
    (5, 120, 40, True, False, 1),
    (3, 240, 80, False, True, 2),
    (3, 200, 80, False, True, 1),
    (3, 184, 80, False, True, 1),
    (3, 184, 80, False, True, 1),
    (3, 480, 112, True, True, 1),
    (3, 672, 112, True, True, 1),
    (5, 672, 160, True, True, 2),
    (5, 960, 160, True, True, 1),
    (5, 960, 160, True, True, 1),
)


def _divisible(value: float, divisor: int = 8) -> int:
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class InvertedResidual(nn.Module):
    def __init__(
        self,
        cin: int,
        kernel: int,
        expanded: int,
        cout: int,
        use_se: bool,
        hswish: bool,
        stride: int,
    ) -> None:
        super().__init__()
        act = nn.Hardswish if hswish else nn.ReLU
        layers: list[nn.Module] = []
        if expanded != cin:
            layers += [*conv_bn(cin, expanded, 1), act()]
        layers += [
            *conv_bn(
                expanded, expanded, kernel, padding=kernel // 2, stride=stride, groups=expanded
            ),
            act(),
        ]
        if use_se:
            layers.append(SqueezeExcite(expanded, _divisible(expanded / 4), nn.Hardsigmoid()))
        layers += conv_bn(expanded, cout, 1)
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.residual else out


class MobileAgeNet(nn.Module):
    def __init__(self, hidden: int = 256, dropout: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = [*conv_bn(3, 16, 3, padding=1, stride=2), nn.Hardswish()]
        cin = 16
        for kernel, expanded, cout, use_se, hswish, stride in LARGE_BLOCKS:
            layers.append(InvertedResidual(cin, kernel, expanded, cout, use_se, hswish, stride))
            cin = cout
        layers += [*conv_bn(cin, 960, 1), nn.Hardswish(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.backbone = nn.Sequential(*layers)
        self.neck = nn.Sequential(nn.Linear(960, hidden), nn.Hardswish(), nn.Dropout(dropout))
        self.age_head = nn.Linear(hidden, 1)
        self.gender_head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.dim() == 5:
            x = x[:, 0]
        features = self.neck(self.backbone(x))
        age = AGE_MAX * torch.sigmoid(self.age_head(features)).squeeze(1)
        return {"age": age, "gender_logit": self.gender_head(features).squeeze(1)}

    def loss(
        self, out: dict[str, torch.Tensor], ages: torch.Tensor, genders: torch.Tensor
    ) -> torch.Tensor:
        return F.l1_loss(out["age"], ages) + 5.0 * F.binary_cross_entropy_with_logits(
            out["gender_logit"], genders.float()
        )
