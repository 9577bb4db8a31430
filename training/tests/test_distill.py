import subprocess
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from training import distill, peer_teacher
from training.datasets import REPO_ROOT
from training.recipes import WEIGHTS_DIR, onnx_file


def _split(ages: np.ndarray, **more: Any) -> Any:
    """The parts of a CachedSplit that soft_targets reads."""
    return SimpleNamespace(ages=ages, **more)


def _fake_teachers(monkeypatch: pytest.MonkeyPatch, predictions: dict) -> None:
    monkeypatch.setattr(distill, "_teacher_on_train", lambda name, datasets: predictions[name])


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
    ages, genders = distill.soft_targets({"distill": {"teachers": ["a", "b"]}}, _split(labels))
    np.testing.assert_allclose(ages, [20.0, 41.0])
    np.testing.assert_allclose(genders, [0.2, 0.9])

    ages, genders = distill.soft_targets({"distill": {"teachers": ["b"]}}, _split(labels))
    assert genders is None


def test_soft_targets_refuse_a_teacher_predicted_on_other_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    labels = np.array([20.0, 40.0], np.float32)
    _fake_teachers(monkeypatch, {"a": {"labels": labels[::-1], "age": np.array([1.0, 2.0])}})
    with pytest.raises(ValueError, match="'a'"):
        distill.soft_targets({"distill": {"teachers": ["a"]}}, _split(labels))


def test_blend_mixes_labels_and_teacher_by_weight() -> None:
    labels = np.array([0.0, 1.0], np.float32)
    teacher = np.array([0.4, 0.6], np.float32)
    np.testing.assert_allclose(distill.blend(labels, teacher, 0.5), [0.2, 0.8])
    np.testing.assert_allclose(distill.blend(labels, teacher, 0.0), labels)
    assert distill.blend(labels, None, 0.5) is labels


def test_distilling_starts_at_from_epoch() -> None:
    assert not distill.distilling({}, 5)
    config = {"distill": {"teachers": ["a"], "weight": 0.5}}
    assert distill.distilling(config, 0)
    config["distill"]["from_epoch"] = 30
    assert not distill.distilling(config, 29)
    assert distill.distilling(config, 30)


def test_a_teacher_at_a_commit_is_read_from_git() -> None:
    head_name, head = onnx_file("c3ae@HEAD")
    assert head_name == "c3ae" and head.startswith(b"\x08")  # an ONNX protobuf
    commits = subprocess.run(
        ["git", "log", "--format=%H", "--", "faceage/weights/c3ae.onnx"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if len(commits) < 2:
        pytest.skip("needs a checkout with c3ae.onnx committed more than once")
    _, original = onnx_file(f"c3ae@{commits[-1]}")
    assert original != (WEIGHTS_DIR / "c3ae.onnx").read_bytes()  # c3ae was retrained since
    with pytest.raises(ValueError, match="no-such-commit"):
        onnx_file("c3ae@no-such-commit")


def test_gender_teachers_give_p_female_its_own_mean(monkeypatch: pytest.MonkeyPatch) -> None:
    labels = np.array([20.0, 40.0], np.float32)
    _fake_teachers(
        monkeypatch,
        {
            "a": {"labels": labels, "age": np.array([22.0, 38.0]), "gender": np.array([0.2, 0.9])},
            "b": {"labels": labels, "age": np.array([18.0, 44.0])},
            "g": {"labels": labels, "age": np.array([90.0, 90.0]), "gender": np.array([0.6, 0.5])},
        },
    )
    config = {"distill": {"teachers": ["a", "b"], "gender_teachers": ["a", "g"]}}
    ages, genders = distill.soft_targets(config, _split(labels))
    np.testing.assert_allclose(ages, [20.0, 41.0])  # g's age is not used
    np.testing.assert_allclose(genders, [0.4, 0.7])

    config = {"distill": {"teachers": ["a"], "gender_teachers": ["a", "b"]}}
    with pytest.raises(ValueError, match="'b'"):
        distill.soft_targets(config, _split(labels))


def test_the_peer_teacher_is_read_by_labels_row_and_the_label_fills_its_gaps(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setattr(peer_teacher, "TEACHER_DIR", tmp_path)
    np.save(tmp_path / f"{peer_teacher.NAME}-utkface.npy", np.array([0.1, 0.2, np.nan, 0.9]))
    np.save(tmp_path / f"{peer_teacher.NAME}-aaf.npy", np.array([np.nan, 0.7]))
    train = _split(
        np.array([20.0, 30.0, 40.0, 50.0], np.float32),
        names=["utkface", "aaf"],
        source=np.array([0, 0, 1, 1]),
        index=np.array([3, 2, 1, 0]),  # labels-file rows, some left out
        genders=np.array([0, 1, 0, 1]),
    )
    config = {"distill": {"teachers": [peer_teacher.NAME], "weight": 0.5}}
    ages, genders = distill.soft_targets(config, train)
    assert ages is None  # the peer teaches gender only
    np.testing.assert_allclose(genders, [0.9, 1.0, 0.7, 1.0])
