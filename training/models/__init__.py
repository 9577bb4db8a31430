"""The age networks, by registry name, and the graph wrapper that ONNX export uses."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from training.models.agegendernet import AgeGenderNet
from training.models.c3ae import C3AE
from training.models.common import AGE_MAX, count_params
from training.models.hsrnet import HSRNet
from training.models.mobileagenet import MobileAgeNet
from training.models.ssrnet import SSRNet

#: name -> (builder, parameter count the paper reports)
ARCHITECTURES: dict[str, tuple[Callable[..., nn.Module], int]] = {
    "c3ae": (lambda: C3AE(num_crops=3, use_se=True), 39_700),
    "ssrnet": (lambda: SSRNet(target="age"), 40_900),
    "ssrnet-gender": (lambda: SSRNet(value_range=1.0, target="gender"), 40_900),
    "hsrnet": (lambda: HSRNet(30, 15, separable=False, pool=4), 50_200),
    "sephsrnet": (lambda: HSRNet(90, 30, separable=True, pool=2), 75_700),
    "sephsrnet-tiny": (lambda: HSRNet(30, 10, separable=True, pool=4), 13_100),
    "agegendernet": (lambda: AgeGenderNet(), 6_000_000),
    "mobileagenet": (lambda: MobileAgeNet(), 3_230_000),
}


def build_model(architecture: str) -> nn.Module:
    """A fresh network of a registered architecture."""
    try:
        builder, _ = ARCHITECTURES[architecture]
    except KeyError:
        raise ValueError(
            f"unknown architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}"
        ) from None
    return builder()


class ExportGraph(nn.Module):
    """What goes into the ONNX file: normalised input -> ``age`` (clipped to [0, 116]) and,
    when given, ``gender`` as P(female) in [0, 1].

    ``gender_model`` is a second network whose ``"gender"`` output is used (SSR-Net's
    separate gender net); otherwise the age model's own gender output is used.
    """

    def __init__(
        self,
        age_model: nn.Module,
        gender_model: nn.Module | None = None,
        *,
        with_gender: bool = False,
    ) -> None:
        super().__init__()
        self.age_model = age_model
        self.gender_model = gender_model
        self.with_gender = with_gender or gender_model is not None

    def forward(self, x: torch.Tensor):
        out = self.age_model(x)
        age = out["age"].clamp(0.0, AGE_MAX)
        if not self.with_gender:
            return age
        source = self.gender_model(x) if self.gender_model is not None else out
        return age, gender_probability(source)


def gender_probability(out: dict[str, torch.Tensor]) -> torch.Tensor:
    if "gender_logit" in out:
        return torch.sigmoid(out["gender_logit"])
    return out["gender"].clamp(0.0, 1.0)


__all__ = ["ARCHITECTURES", "ExportGraph", "build_model", "count_params", "gender_probability"]
