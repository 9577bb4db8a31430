import numpy as np
import pytest

from training import distill


def _fake_teachers(monkeypatch: pytest.MonkeyPatch, predictions: dict) -> None:
    monkeypatch.setattr(distill, "_teacher_on_train", lambda name: predictions[name])


def test_soft_targets_average_the_teachers_that_have_each_output(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    labels = np.array([20.0, 40.0], np.float32)
    _fake_teachers(
        monkeypatch,
        {
            "a": {"labels": labels, "age": np.array([22.0, 38.0]), "gender": np.array([0.2, 0.9])},
            "b": {"labels": labels, "age": np.array([18.0, 44.0])},  # age only
        },
    )
    ages, genders = distill.soft_targets({"distill": {"teachers": ["a", "b"]}}, labels)
    np.testing.assert_allclose(ages, [20.0, 41.0])
    np.testing.assert_allclose(genders, [0.2, 0.9])

    ages, genders = distill.soft_targets({"distill": {"teachers": ["b"]}}, labels)
    assert genders is None


def test_soft_targets_refuse_a_teacher_predicted_on_other_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    labels = np.array([20.0, 40.0], np.float32)
    _fake_teachers(monkeypatch, {"a": {"labels": labels[::-1], "age": np.array([1.0, 2.0])}})
    with pytest.raises(ValueError, match="'a'"):
        distill.soft_targets({"distill": {"teachers": ["a"]}}, labels)


def test_blend_mixes_labels_and_teacher_by_weight() -> None:
    labels = np.array([0.0, 1.0], np.float32)
    teacher = np.array([0.4, 0.6], np.float32)
    np.testing.assert_allclose(distill.blend(labels, teacher, 0.5), [0.2, 0.8])
    np.testing.assert_allclose(distill.blend(labels, teacher, 0.0), labels)
    assert distill.blend(labels, None, 0.5) is labels
