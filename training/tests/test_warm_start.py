"""Warm restarts from an exported ONNX file: same function, BatchNorms that train."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from torch import nn

from training.export import to_onnx
from training.models import ExportGraph, build_model
from training.warm_start import GENDER_PART, load_onnx_weights, unfold_batchnorm, warm_start


def _trained_like(architecture: str, seed: int) -> nn.Module:
    """A model whose BatchNorms hold non-trivial statistics and affine parameters."""
    torch.manual_seed(seed)
    model = build_model(architecture)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n) * 0.3)
            module.running_var.copy_(torch.rand(n) + 0.5)
            module.weight.data.copy_(torch.rand(n) + 0.5)
            module.bias.data.copy_(torch.randn(n) * 0.2)
    return model.eval()


def _onnx_bytes(model: nn.Module, x: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    to_onnx(ExportGraph(model).eval(), x[:2], buffer, ["age"])
    return buffer.getvalue()


def _batch_norms_train(model: nn.Module) -> None:
    model.eval()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.train()


@pytest.mark.parametrize("architecture", ["sephsrnet-tiny", "ssrnet"])
def test_loaded_model_computes_the_exported_function(architecture: str) -> None:
    source = _trained_like(architecture, seed=0)
    x = torch.rand(96, 3, 3, 64, 64) * 2 - 1
    data = _onnx_bytes(source, x)
    with torch.no_grad():
        expected = source(x)["age"]

    target = _trained_like(architecture, seed=1)
    folded = load_onnx_weights(target, data, x[:2])
    assert folded and all(norm is not None for _, norm, _ in folded)
    with torch.no_grad():
        before = target.eval()(x)["age"]
    torch.testing.assert_close(before, expected, rtol=1e-4, atol=1e-3)

    unfold_batchnorm(target, folded, [x[:48], x[48:]])
    with torch.no_grad():
        after = target.eval()(x)["age"]
        _batch_norms_train(target)
        batch_stats = target(x)["age"]  # normalised by x's own statistics
    torch.testing.assert_close(after, expected, rtol=1e-4, atol=1e-3)
    # the re-fitted statistics are those of the calibration data: train mode on the same
    # faces normalises the same way
    torch.testing.assert_close(batch_stats, expected, rtol=1e-3, atol=1e-2)
    # and not the identity the loader leaves before fitting
    norm = folded[0][1]
    assert norm is not None and not torch.allclose(norm.weight, torch.ones_like(norm.weight))


def test_warm_start_checks_parity_against_onnxruntime(tmp_path, monkeypatch) -> None:
    source = _trained_like("sephsrnet-tiny", seed=0)
    x = torch.rand(64, 3, 3, 64, 64) * 2 - 1
    data = _onnx_bytes(source, x)
    monkeypatch.setattr("training.warm_start.onnx_file", lambda spec: (spec, data))
    target = _trained_like("sephsrnet-tiny", seed=2)
    worst = warm_start(target, "sephsrnet-tiny", lambda rows: x[np.sort(rows)], len(x))
    assert worst <= 0.01
    with torch.no_grad():
        torch.testing.assert_close(target.eval()(x)["age"], source(x)["age"], rtol=1e-4, atol=1e-3)


def test_another_architecture_is_refused() -> None:
    x = torch.rand(4, 3, 3, 64, 64)
    data = _onnx_bytes(_trained_like("sephsrnet-tiny", seed=0), x)
    with pytest.raises(ValueError, match=r"not this architecture|shape"):
        load_onnx_weights(build_model("hsrnet"), data, x[:2])


def test_packed_gender_net_loads_from_its_own_part(monkeypatch) -> None:
    # ssrnet-gender's file holds two SSR-Nets: the age net, then the gender net
    age_net, gender_net = _trained_like("ssrnet", seed=0), _trained_like("ssrnet-gender", seed=1)
    x = torch.rand(64, 1, 3, 64, 64) * 2 - 1
    buffer = io.BytesIO()
    to_onnx(ExportGraph(age_net, gender_net).eval(), x[:2], buffer, ["age", "gender"])
    monkeypatch.setattr("training.warm_start.onnx_file", lambda spec: (spec, buffer.getvalue()))

    target = _trained_like("ssrnet-gender", seed=2)
    worst = warm_start(target, "ssrnet-gender", lambda r: x[np.sort(r)], len(x), part=GENDER_PART)
    assert worst <= 1e-3
    with torch.no_grad():
        torch.testing.assert_close(
            target.eval()(x)["gender"], gender_net(x)["gender"], rtol=1e-4, atol=1e-4
        )
    # the default part is the age net, not the gender net it was packed with
    age_target = _trained_like("ssrnet", seed=3)
    load_onnx_weights(age_target, buffer.getvalue(), x[:2])
    with torch.no_grad():
        torch.testing.assert_close(age_target(x)["age"], age_net(x)["age"], rtol=1e-4, atol=1e-3)


def test_a_file_of_another_input_size_is_calibrated_at_its_own_size(monkeypatch) -> None:
    # mobileagenet pools globally, so the same weights run at 64 and 96 px
    source = _trained_like("mobileagenet", seed=0)
    small = torch.rand(32, 1, 3, 64, 64) * 2 - 1
    buffer = io.BytesIO()
    to_onnx(ExportGraph(source, with_gender=True).eval(), small[:2], buffer, ["age", "gender"])
    monkeypatch.setattr("training.warm_start.onnx_file", lambda spec: (spec, buffer.getvalue()))
    large = torch.nn.functional.interpolate(
        small.reshape(-1, 3, 64, 64), size=(96, 96), mode="bilinear"
    ).reshape(32, 1, 3, 96, 96)
    target = _trained_like("mobileagenet", seed=2)
    # fed 96 px faces, it checks parity on them resized back to the file's 64 px
    worst = warm_start(target, "mobileagenet", lambda rows: large[np.sort(rows)], len(large))
    assert worst <= 0.01
    with torch.no_grad():
        assert target.eval()(large)["age"].shape == (32,)
