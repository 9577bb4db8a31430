"""SSR-Net (Yang et al., IJCAI 2018): soft stagewise regression, two streams.

Figure 1 of the paper, SSR-Net(3,3,3) on one 64x64 crop:
- stream 1: four blocks of 3x3 conv (32 channels) + BN + ReLU, 2x2 average pooling
  after the first three; stream 2: the same with 16 channels, Tanh and max pooling;
- stage k takes both streams at one depth (stage 1: after block 4; stage 2: after
  block 2; stage 3: after block 1), and its fusion block makes a distribution p(k)
  over s_k bins, shifts eta(k) of each bin index and a scale Delta_k of the bin width:
      y = V * sum_k sum_i p_i(k) * (i + lambda_eta * eta_i(k))
                / prod_{j<=k} (s_j (1 + lambda_d * Delta_j))
- fusion block: 1x1 conv to 10 channels (ReLU / Tanh), pooling to about 4x4 or 3x3,
  flatten; Delta from the element-wise product of the two streams through FC + Tanh;
  p (ReLU) and eta (Tanh) from the product of both streams after dropout + FC + ReLU
  (the prediction block), then FC to 2 s_k + ReLU.

Parameters: 40.5K trainable (the paper's 40.9K also counts BN running statistics).
The same network with V = 1 regresses gender (the paper's "bonus" gender model).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.models.common import AGE_MAX, conv_bn

LAMBDA_ETA = 0.25
LAMBDA_DELTA = 0.25
FUSION_CHANNELS = 10


def _stream(channels: int, activation: type[nn.Module], pool: type[nn.Module]) -> nn.ModuleList:
    blocks = nn.ModuleList()
    cin = 3
    for block in range(4):
        layers: list[nn.Module] = [*conv_bn(cin, channels, 3), activation()]
        if block < 3:
            layers.append(pool(2))
        blocks.append(nn.Sequential(*layers))
        cin = channels
    return blocks


class FusionBlock(nn.Module):
    """One stage: distribution, per-bin shift and width scale from both streams."""

    def __init__(self, bins: int, pool: int, grid: int) -> None:
        super().__init__()
        self.bins = bins
        self.x_reduce = nn.Sequential(
            nn.Conv2d(32, FUSION_CHANNELS, 1),
            nn.ReLU(),
            nn.AvgPool2d(pool) if pool > 1 else nn.Identity(),
        )
        self.s_reduce = nn.Sequential(
            nn.Conv2d(16, FUSION_CHANNELS, 1),
            nn.Tanh(),
            nn.MaxPool2d(pool) if pool > 1 else nn.Identity(),
        )
        flat = FUSION_CHANNELS * grid * grid
        self.x_predict = nn.Sequential(nn.Dropout(0.2), nn.Linear(flat, bins), nn.ReLU())
        self.s_predict = nn.Sequential(nn.Dropout(0.2), nn.Linear(flat, bins), nn.ReLU())
        self.delta = nn.Linear(flat, 1)
        self.mix = nn.Linear(bins, 2 * bins)
        self.prob = nn.Linear(2 * bins, bins)
        self.eta = nn.Linear(2 * bins, bins)

    def forward(self, x: torch.Tensor, s: torch.Tensor):
        xf = torch.flatten(self.x_reduce(x), 1)
        sf = torch.flatten(self.s_reduce(s), 1)
        delta = torch.tanh(self.delta(xf * sf)).squeeze(1)
        mixed = torch.relu(self.mix(self.x_predict(xf) * self.s_predict(sf)))
        prob = torch.relu(self.prob(mixed))
        eta = torch.tanh(self.eta(mixed))
        return prob, eta, delta


# stage 1 on block 4 (4x4), stage 2 on block 2 (14x14 -> 3x3), stage 3 on block 1
# (31x31 -> 3x3)
DEPTH_OF_STAGE = (3, 1, 0)


def _fusion_blocks(stages: tuple[int, ...]) -> nn.ModuleList:
    return nn.ModuleList(
        [FusionBlock(stages[0], 1, 4), FusionBlock(stages[1], 4, 3), FusionBlock(stages[2], 8, 3)]
    )


class SSRNet(nn.Module):
    def __init__(
        self,
        stages: tuple[int, ...] = (3, 3, 3),
        value_range: float = AGE_MAX,
        target: str = "age",
    ) -> None:
        super().__init__()
        if len(stages) != 3:
            raise ValueError("SSR-Net here has exactly three stages")
        self.stages = stages
        self.value_range = value_range
        self.target = target
        self.x_stream = _stream(32, nn.ReLU, nn.AvgPool2d)
        self.s_stream = _stream(16, nn.Tanh, nn.MaxPool2d)
        self.fusion = _fusion_blocks(stages)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.dim() == 5:
            x = x[:, 0]
        xs, ss = [], []
        a, s = x, x
        for xb, sb in zip(self.x_stream, self.s_stream):
            a, s = xb(a), sb(s)
            xs.append(a)
            ss.append(s)
        return {self.target: self._regress(self.fusion, xs, ss) * self.value_range}

    def _regress(
        self, fusion_blocks: nn.ModuleList, xs: list[torch.Tensor], ss: list[torch.Tensor]
    ) -> torch.Tensor:
        """The soft stagewise sum of the three stages, in units of V."""
        x = xs[0]
        value = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        width = torch.ones(x.shape[0], dtype=x.dtype, device=x.device)
        for stage, (fusion, bins) in enumerate(zip(fusion_blocks, self.stages)):
            depth = DEPTH_OF_STAGE[stage]
            prob, eta, delta = fusion(xs[depth], ss[depth])
            index = torch.arange(bins, dtype=x.dtype, device=x.device)
            width = width * bins * (1 + LAMBDA_DELTA * delta)
            value = value + ((index + LAMBDA_ETA * eta) * prob).sum(1) / width
        return value

    def loss(
        self, out: dict[str, torch.Tensor], ages: torch.Tensor, genders: torch.Tensor
    ) -> torch.Tensor:
        if self.target == "age":
            return F.l1_loss(out["age"], ages)
        # gender regressed to 0 (male) / 1 (female) by squared error (the paper's), so
        # the output estimates P(female)
        return F.mse_loss(out["gender"], genders.float())
