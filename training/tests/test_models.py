"""Architecture checks: parameter counts against the papers, shapes, label encodings.

python -m pytest training/tests
"""

from __future__ import annotations

import io

import pytest

torch = pytest.importorskip("torch")

from training.augment import augment  # noqa: E402
from training.models import ARCHITECTURES, ExportGraph, build_model, count_params  # noqa: E402
from training.models.c3ae import BIN_WIDTH, two_point_representation  # noqa: E402
from training.models.ssrnet import SSRNet  # noqa: E402


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_parameter_count_within_ten_percent_of_paper(name: str) -> None:
    ours, paper = count_params(build_model(name)), ARCHITECTURES[name][1]
    assert abs(ours - paper) <= 0.10 * paper, f"{name}: {ours} vs paper {paper}"


@pytest.mark.parametrize("name", [n for n in ARCHITECTURES if n != "mobileagenet"])
def test_forward_gives_one_value_per_face(name: str) -> None:
    model = build_model(name).eval()
    crops = 3 if name in ("c3ae", "hsrnet", "sephsrnet", "sephsrnet-tiny") else 1
    out = model(torch.randn(2, crops, 3, 64, 64))
    assert all(v.shape[0] == 2 for v in out.values())
    assert ("age" in out) != (name == "ssrnet-gender")


def test_mobileagenet_bounded_age() -> None:
    out = build_model("mobileagenet").eval()(torch.randn(1, 3, 224, 224))
    assert 0 <= float(out["age"]) <= 116


def test_mobileagenet_splits_into_trunk_and_heads() -> None:
    model = build_model("mobileagenet").eval()
    x = torch.randn(2, 3, 112, 112)
    pooled = model.features(x)
    assert pooled.shape == (2, 960)
    whole, split = model(x), model.from_features(pooled)
    for key in ("age", "gender_logit"):
        assert torch.equal(whole[key], split[key])


def test_mobileagenet_can_move_its_last_blocks_out_of_the_trunk() -> None:
    model = build_model("mobileagenet").eval()
    x = torch.randn(2, 3, 112, 112)
    whole = model(x)
    model.train_last_blocks(2)
    maps = model.features(x)
    assert maps.shape == (2, 160, 4, 4)  # the output of block 13 of 15
    assert model.trunk[-1] == "backbone.15" and "backbone.16" not in model.trunk
    split = model.from_features(maps)
    for key in ("age", "gender_logit"):
        assert torch.equal(whole[key], split[key])
    model.train_last_blocks(0)
    assert model.features(x).shape == (2, 960)
    with pytest.raises(ValueError, match="train_blocks"):
        model.train_last_blocks(16)


def test_ssrnet_gender_cross_entropy_punishes_confident_mistakes_most() -> None:
    model = build_model("ssrnet-gender", {"gender_loss": "bce"})
    female = torch.ones(1)

    def loss(value: float) -> float:
        return float(model.loss({"gender": torch.tensor([value])}, torch.zeros(1), female))

    assert loss(0.9) < loss(0.5) < loss(0.1) < loss(0.01)
    assert loss(0.01) - loss(0.1) > loss(0.5) - loss(0.9)  # steeper where it is wrong
    assert loss(1.3) > loss(1.0)  # pulled back into [0, 1]
    squared = build_model("ssrnet-gender")
    assert float(squared.loss({"gender": torch.tensor([0.1])}, torch.zeros(1), female)) == (
        pytest.approx(0.81)
    )
    with pytest.raises(ValueError, match="gender_loss"):
        build_model("ssrnet-gender", {"gender_loss": "hinge"})
    with pytest.raises(ValueError, match="c3ae does not take model_options"):
        build_model("c3ae", {"gender_loss": "bce"})


def test_ssrnet_gender_auxiliary_age_head_trains_but_is_not_exported() -> None:
    torch.manual_seed(0)
    plain = build_model("ssrnet-gender")
    torch.manual_seed(0)
    aux = build_model("ssrnet-gender", {"aux_age_weight": 1.0})
    assert count_params(aux) == count_params(plain)  # the aux_* heads are not counted
    assert sum(p.numel() for p in aux.parameters()) > count_params(aux)
    # the shared parts start alike, and in eval mode the aux net is the plain net
    aux.load_state_dict({**aux.state_dict(), **plain.state_dict()})
    x = torch.randn(3, 1, 3, 64, 64)
    plain.eval(), aux.eval()
    assert set(aux(x)) == {"gender"} and torch.equal(aux(x)["gender"], plain(x)["gender"])
    aux.train()
    out = aux(x)
    assert set(out) == {"gender", "aux_age"} and out["aux_age"].shape == (3,)
    genders = torch.tensor([0.0, 1.0, 1.0])
    # the age labels reach the loss only through the auxiliary head
    young, old = torch.full((3,), 5.0), torch.full((3,), 80.0)
    assert float(aux.loss(out, young, genders)) != float(aux.loss(out, old, genders))
    without = {"gender": out["gender"]}
    assert float(aux.loss(without, young, genders)) == float(aux.loss(without, old, genders))
    with pytest.raises(ValueError, match="aux_age_weight"):
        build_model("ssrnet-gender", {"aux_age_weight": -1.0})
    with pytest.raises(ValueError, match="aux_age_weight"):
        SSRNet(target="age", aux_age_weight=1.0)


def test_ssrnet_gender_auxiliary_age_head_stays_out_of_the_onnx_file() -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    from training.export import to_onnx

    def exported_values(options: dict | None) -> int:
        torch.manual_seed(0)
        graph = ExportGraph(build_model("ssrnet").eval(), build_model("ssrnet-gender", options))
        buffer = io.BytesIO()
        to_onnx(graph.eval(), torch.zeros(1, 3, 64, 64), buffer, ["age", "gender"])
        model = onnx.load_from_string(buffer.getvalue())
        return sum(numpy_helper.to_array(t).size for t in model.graph.initializer)

    assert exported_values({"aux_age_weight": 1.0}) == exported_values(None)


def test_two_point_representation_reconstructs_age() -> None:
    ages = torch.tensor([0.0, 4.0, 68.0, 74.0, 116.0])
    target = two_point_representation(ages)
    assert torch.allclose(target.sum(1), torch.ones(5))
    centres = torch.arange(target.shape[1], dtype=torch.float32) * BIN_WIDTH
    assert torch.allclose(target @ centres, ages, atol=1e-2)
    assert int((target > 0).sum(1).max()) <= 2


def test_export_graph_clips_and_gives_probability() -> None:
    graph = ExportGraph(build_model("agegendernet").eval(), with_gender=True)
    age, gender = graph(torch.randn(3, 3, 64, 64) * 50)
    assert age.shape == (3,) and gender.shape == (3,)
    assert float(age.min()) >= 0 and float(age.max()) <= 116
    assert float(gender.min()) >= 0 and float(gender.max()) <= 1


def test_augmentation_is_reproducible_and_keeps_range() -> None:
    x = torch.rand(4, 3, 3, 64, 64)
    settings = {
        "flip": True,
        "max_shift": 0.04,
        "max_scale": 0.08,
        "max_rotation_deg": 10,
        "brightness": 0.2,
        "contrast": 0.2,
        "saturation": 0.2,
    }
    a = augment(x, settings, torch.Generator().manual_seed(1))
    b = augment(x, settings, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == x.shape
    assert float(a.min()) >= 0 and float(a.max()) <= 1


def test_random_erasing_greys_one_rectangle_on_every_crop_of_chosen_faces() -> None:
    x = torch.zeros(64, 2, 3, 32, 32)  # black faces: an erased pixel is the only grey one
    out = augment(x, {"erase": {"p": 0.5, "max_side": 0.4}}, torch.Generator().manual_seed(3))
    grey = out == 0.5
    erased = grey.flatten(1).any(1)
    assert 10 < int(erased.sum()) < 54  # about half the faces
    assert torch.equal(grey[:, 0], grey[:, 1])  # the same place on both crops
    for face in torch.nonzero(erased).flatten().tolist():
        mask = grey[face, 0, 0]
        rows, cols = mask.any(1), mask.any(0)
        assert int(mask.sum()) == int(rows.sum()) * int(cols.sum())  # one rectangle
        assert 3 <= int(rows.sum()) <= 13 and 3 <= int(cols.sum()) <= 13  # 10-40% of 32 px
    assert torch.equal(out[~erased], x[~erased])
    untouched = augment(x, {"flip": True}, torch.Generator().manual_seed(3))
    assert not bool((untouched == 0.5).any())


def test_agegendernet_loss_weighs_age_and_gender_alike() -> None:
    model = build_model("agegendernet")
    ages, genders = torch.tensor([30.0, 60.0]), torch.tensor([0, 1])
    exact = {"age": ages.clone(), "gender": genders.float()}
    assert float(model.loss(exact, ages, genders)) == 0.0
    # one spread (20 years) off in age costs as much as a coin-flip gender (0.5 off)
    age_off = {"age": ages + 20.0, "gender": genders.float()}
    gender_off = {"age": ages.clone(), "gender": torch.full((2,), 0.5)}
    assert float(model.loss(age_off, ages, genders)) == pytest.approx(1.0)
    assert float(model.loss(gender_off, ages, genders)) == pytest.approx(1.0)
