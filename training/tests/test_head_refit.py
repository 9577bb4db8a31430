"""The head_refit stage: reset modules, frozen trunk, best val epoch kept."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from training.head_refit import head_parameters, refit_heads, reset_modules  # noqa: E402
from training.models.hsrnet import HSRNet  # noqa: E402


def _tiny(seed: int) -> HSRNet:
    torch.manual_seed(seed)
    return HSRNet(4, 3, separable=True, pool=2)


def test_reset_modules_restores_only_the_named_ones() -> None:
    model, fresh = _tiny(1), _tiny(2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    reset_modules(model, fresh, ["stage_h.value", "stage_l.head.5"])
    after, initial = model.state_dict(), fresh.state_dict()
    for key in after:
        reset = key.startswith(("stage_h.value.", "stage_l.head.5."))
        assert torch.equal(after[key], initial[key] if reset else before[key]), key
    with pytest.raises(ValueError, match="stage_x"):
        reset_modules(model, fresh, ["stage_x"])


def test_head_parameters_leave_out_the_trunk() -> None:
    model = _tiny(0)
    heads = {id(p) for p in head_parameters(model)}
    assert not heads & {id(p) for p in model.convs.parameters()}
    assert heads == {id(p) for p in [*model.stage_h.parameters(), *model.stage_l.parameters()]}


def test_refit_trains_the_heads_on_a_frozen_trunk_and_keeps_the_best_epoch() -> None:
    model = _tiny(0)
    rng = np.random.default_rng(0)
    x_train = torch.from_numpy(rng.standard_normal((64, 3, 3, 64, 64)).astype(np.float32))
    x_val = x_train[:16]
    ages = rng.uniform(1, 80, 64).astype(np.float32)
    trunk = {k: v.clone() for k, v in model.convs.state_dict().items()}
    heads = {k: v.clone() for k, v in model.stage_h.state_dict().items()}
    seen: list[np.ndarray] = []

    def score(predicted: np.ndarray) -> float:  # val prefers the second epoch
        seen.append(predicted.copy())
        return [3.0, 1.0, 2.0, 4.0][len(seen) - 1]

    config = {
        "architecture": "tiny",
        "seed": 0,
        "head_refit": {"reset": ["stage_h.value"], "epochs": 4, "lr": 0.01, "batch_size": 16},
    }
    history = refit_heads(
        model,
        _tiny(5),
        config,
        (lambda rows: x_train[rows], ages, np.zeros(64, np.float32)),
        score,
        (lambda rows: x_val[rows], 16),
    )
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    for key, value in model.convs.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(value, trunk[key]), key  # frozen, BatchNorm statistics too
    assert any(not torch.equal(v, heads[k]) for k, v in model.stage_h.state_dict().items())
    model.eval()
    with torch.no_grad():
        final = model(x_val)["age"].clamp(0, 116).numpy()
    np.testing.assert_allclose(final, seen[1], atol=1e-4)
    assert not np.allclose(final, seen[3], atol=1e-4)
    assert [r["val_score"] for r in history] == [3.0, 1.0, 2.0, 4.0]


def test_refit_refuses_a_model_it_cannot_split() -> None:
    module = torch.nn.Linear(2, 1)
    config = {"architecture": "linear", "head_refit": {}}
    with pytest.raises(ValueError, match="linear"):
        refit_heads(module, module, config, None, None, None)  # type: ignore[arg-type]


def test_flip_adds_the_mirrored_training_faces(monkeypatch) -> None:
    import training.head_refit as head_refit

    calls: list[torch.Tensor] = []
    original = head_refit.trunk_features

    def spy(model, inputs, rows, batch=128):
        calls.append(inputs(np.arange(rows)))
        return original(model, inputs, rows, batch)

    monkeypatch.setattr(head_refit, "trunk_features", spy)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((32, 3, 3, 64, 64)).astype(np.float32))
    ages = rng.uniform(1, 80, 32).astype(np.float32)
    settings = {"reset": [], "epochs": 1, "lr": 0.01, "batch_size": 16}
    runs = (
        ({}, [x, x[:8]]),
        ({"flip": True}, [x, x.flip(-1), x[:8]]),
        ({"flip": True, "augmented_copies": 2}, [x, x.flip(-1), x + 1, x + 1, x[:8]]),
    )
    for extra, expected in runs:
        calls.clear()
        config = {"architecture": "tiny", "seed": 0, "head_refit": dict(settings, **extra)}
        refit_heads(
            _tiny(0),
            _tiny(5),
            config,
            (lambda rows: x[rows], ages, np.zeros(32, np.float32)),
            lambda predicted: 1.0,
            (lambda rows: x[rows], 8),
            lambda rows, generator: x[rows] + 1,  # a stand-in for the random augmentation
        )
        assert len(calls) == len(expected)
        for seen, wanted in zip(calls, expected, strict=True):
            assert torch.equal(seen, wanted)


def test_trunk_features_are_kept_on_disk_and_reused(monkeypatch, tmp_path) -> None:
    import training.head_refit as head_refit

    calls: list[int] = []
    original = head_refit.trunk_features

    def spy(model, inputs, rows, batch=128):
        calls.append(rows)
        return original(model, inputs, rows, batch)

    monkeypatch.setattr(head_refit, "trunk_features", spy)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((32, 3, 3, 64, 64)).astype(np.float32))
    ages = rng.uniform(1, 80, 32).astype(np.float32)
    config = {
        "architecture": "tiny",
        "seed": 0,
        "head_refit": {"reset": [], "epochs": 2, "lr": 0.01, "batch_size": 16, "flip": True},
    }
    cache = tmp_path / "features" / "key.pt"
    histories = []
    for _ in range(2):
        histories.append(
            refit_heads(
                _tiny(0),
                _tiny(5),
                config,
                (lambda rows: x[rows], ages, np.zeros(32, np.float32)),
                lambda predicted: float(np.mean(predicted)),
                (lambda rows: x[rows], 8),
                cache=cache,
            )
        )
    assert calls == [32, 32, 8]  # train, mirrored train, val: once, by the first refit
    assert cache.exists() and not cache.with_suffix(".partial").exists()
    # the same features give the same refit
    assert [r["val_score"] for r in histories[0]] == [r["val_score"] for r in histories[1]]
    with pytest.raises(ValueError, match="other rows"):  # a cache of another data set
        refit_heads(
            _tiny(0),
            _tiny(5),
            config,
            (lambda rows: x[rows], ages[:16], np.zeros(16, np.float32)),
            lambda predicted: 1.0,
            (lambda rows: x[rows], 8),
            cache=cache,
        )


def test_features_key_follows_what_the_features_depend_on() -> None:
    from training.head_refit import features_key

    config = {
        "init_from_onnx": "sephsrnet@abc",
        "architecture": "sephsrnet",
        "input_size": 64,
        "crop_scales": [0.8, 1.0, 1.25],
        "head_refit": {"reset": ["stage_h"], "epochs": 90, "lr": 0.001, "flip": True},
        "distill": {"weight": 0.5},
    }
    key = features_key(config)
    same = {**config, "head_refit": {**config["head_refit"], "lr": 0.01, "epochs": 5}}
    assert features_key({**same, "distill": {"weight": 0.7}}) == key
    assert features_key({**config, "init_from_onnx": "sephsrnet@def"}) != key
    assert features_key({**config, "head_refit": {**config["head_refit"], "flip": False}}) != key
    tail = {**config, "head_refit": {**config["head_refit"], "train_blocks": 2}}
    assert features_key(tail) != key


def test_train_blocks_trains_the_end_of_the_trunk_with_the_heads() -> None:
    from training.models.mobileagenet import MobileAgeNet

    torch.manual_seed(0)
    model = MobileAgeNet(hidden=8)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((32, 3, 32, 32)).astype(np.float32))
    ages = rng.uniform(1, 80, 32).astype(np.float32)
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    config = {
        "architecture": "mobileagenet",
        "seed": 0,
        "head_refit": {"epochs": 1, "lr": 0.01, "batch_size": 16, "train_blocks": 1},
    }
    refit_heads(
        model,
        MobileAgeNet(hidden=8),
        config,
        (lambda rows: x[rows], ages, np.zeros(32, np.float32)),
        lambda predicted: 1.0,
        (lambda rows: x[rows], 8),
    )
    changed = {
        key.split(".")[0]
        for key, value in model.backbone.state_dict().items()
        if not torch.equal(value, before[key])
    }
    assert changed == {"17", "18", "19"}  # the last block, the 1x1 conv and its BatchNorm
    no_split = {"architecture": "tiny", "head_refit": {"train_blocks": 1}}
    with pytest.raises(ValueError, match="tiny cannot train part of its trunk"):
        refit_heads(_tiny(0), _tiny(1), no_split, None, None, None)  # type: ignore[arg-type]
