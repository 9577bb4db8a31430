"""Architecture checks: parameter counts against the papers, shapes, label encodings.

python -m pytest training/tests
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from training.augment import augment  # noqa: E402
from training.models import ARCHITECTURES, ExportGraph, build_model, count_params  # noqa: E402
from training.models.c3ae import BIN_WIDTH, two_point_representation  # noqa: E402


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
