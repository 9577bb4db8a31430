import subprocess

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


def test_distilling_starts_at_from_epoch() -> None:
    assert not distill.distilling({}, 5)
    config = {"distill": {"teachers": ["a"], "weight": 0.5}}
    assert distill.distilling(config, 0)
    config["distill"]["from_epoch"] = 30
    assert not distill.distilling(config, 29)
    assert distill.distilling(config, 30)


def test_a_teacher_at_a_commit_is_read_from_git() -> None:
    from training.export import WEIGHTS_DIR

    head_name, head = distill.teacher_bytes("c3ae@HEAD")
    assert head_name == "c3ae" and head.startswith(b"\x08")  # an ONNX protobuf
    commits = subprocess.run(
        ["git", "log", "--format=%H", "--", "faceage/weights/c3ae.onnx"],
        cwd=distill.REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if len(commits) < 2:
        pytest.skip("needs a checkout with c3ae.onnx committed more than once")
    _, original = distill.teacher_bytes(f"c3ae@{commits[-1]}")
    assert original != (WEIGHTS_DIR / "c3ae.onnx").read_bytes()  # c3ae was retrained since
    with pytest.raises(ValueError, match="no-such-commit"):
        distill.teacher_bytes("c3ae@no-such-commit")


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
    ages, genders = distill.soft_targets(config, labels)
    np.testing.assert_allclose(ages, [20.0, 41.0])  # g's age is not used
    np.testing.assert_allclose(genders, [0.4, 0.7])

    config = {"distill": {"teachers": ["a"], "gender_teachers": ["a", "b"]}}
    with pytest.raises(ValueError, match="'b'"):
        distill.soft_targets(config, labels)


class _Split:
    """A stand-in for ``CachedSplit``: uint8 BGR crops ``(N, 1, S, S, 3)`` and labels."""

    def __init__(self, crops: np.ndarray, ages: np.ndarray, genders: np.ndarray) -> None:
        self.crops, self.ages, self.genders = crops, ages, genders

    def inputs(self, rows: np.ndarray):
        from training.augment import to_unit_rgb

        return to_unit_rgb(self.crops[rows])


def _mean_teacher(with_gender: bool = True) -> bytes:
    """An ONNX teacher whose age is the mean input value and P(female) half of it + 0.5."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("ReduceMean", ["input"], ["age"], axes=[1, 2, 3], keepdims=0)]
    outputs = [helper.make_tensor_value_info("age", TensorProto.FLOAT, ["batch"])]
    initializers = []
    if with_gender:
        initializers = [helper.make_tensor("half", TensorProto.FLOAT, [], [0.5])]
        nodes += [
            helper.make_node("Mul", ["age", "half"], ["scaled"]),
            helper.make_node("Add", ["scaled", "half"], ["gender"]),
        ]
        outputs.append(helper.make_tensor_value_info("gender", TensorProto.FLOAT, ["batch"]))
    graph = helper.make_graph(
        nodes,
        "mean_teacher",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, None, None])],
        outputs,
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def _online(
    monkeypatch: pytest.MonkeyPatch, settings: dict, teacher_sizes: dict[str, int]
) -> tuple[distill.OnlineTeachers, _Split, dict[str, _Split]]:
    """Online teachers over 16 random faces: the student reads 16-pixel crops, each
    teacher the same faces at its own size (nearest upsampling of the student's)."""
    from training import train

    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (16, 1, 16, 16, 3), dtype=np.uint8)
    ages = rng.uniform(1, 80, 16).astype(np.float32)
    genders = rng.integers(0, 2, 16)
    student = _Split(crops, ages, genders)
    splits = {
        name: _Split(crops.repeat(size // 16, 2).repeat(size // 16, 3), ages, genders)
        for name, size in teacher_sizes.items()
    }
    augment = {"flip": True, "max_shift": 0.1, "max_scale": 0.1, "max_rotation_deg": 10}
    config = {"input_size": 16, "crop_scales": [1.0], "augment": augment, "threads": 1}
    config["distill"] = {"teachers": list(teacher_sizes), "weight": 0.75, **settings}
    monkeypatch.setattr(
        distill, "teacher_bytes", lambda name: (name, _mean_teacher(name != "ageonly"))
    )
    monkeypatch.setattr(
        train,
        "load_config",
        lambda name: {"input_size": teacher_sizes[name], "crop_scales": [1.0]},
    )
    monkeypatch.setattr(
        train,
        "CachedSplit",
        lambda teacher_config, split: splits[
            next(n for n, s in teacher_sizes.items() if s == teacher_config["input_size"])
        ],
    )
    return distill.OnlineTeachers(config, student), student, splits


def _student_batch(student: _Split, rows: np.ndarray, config_augment: dict, seed: int):
    import torch

    from training.augment import augment

    generator = torch.Generator().manual_seed(seed)
    state = generator.get_state()
    return augment(student.inputs(rows), config_augment, generator), state, generator


def test_online_teachers_label_the_view_the_student_sees(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from training.augment import normalize

    online, student, _ = _online(monkeypatch, {}, {"same": 16, "big": 32})
    rows = np.arange(3, 11)
    x, state, generator = _student_batch(student, rows, online.augment_settings, 1)
    out, ages, genders = online.batch(rows, x, state, generator)
    assert out is x  # no mixup: the student's batch is untouched
    view_mean = normalize(x).mean(dim=(1, 2, 3, 4)).numpy()
    # the 32-pixel teacher saw the same face moved the same way, so its mean is close
    # to the student's view (not equal: bilinear sampling at two resolutions)
    np.testing.assert_allclose(
        ages.numpy(), 0.25 * student.ages[rows] + 0.75 * view_mean, atol=0.02
    )
    expected_gender = 0.25 * student.genders[rows] + 0.75 * (0.5 * view_mean + 0.5)
    np.testing.assert_allclose(genders.numpy(), expected_gender, atol=0.01)
    # the targets follow the view: another draw of the same faces gets other targets
    other, other_state, other_generator = _student_batch(student, rows, online.augment_settings, 2)
    _, other_ages, _ = online.batch(rows, other, other_state, other_generator)
    assert np.abs(other_ages.numpy() - ages.numpy()).max() > 0.05


def test_online_mixup_mixes_faces_labels_and_teacher_views_alike(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from training.augment import normalize

    online, student, _ = _online(monkeypatch, {"mixup": 0.5}, {"same": 16})
    rows = np.arange(16)
    x, state, generator = _student_batch(student, rows, online.augment_settings, 3)
    mixed, ages, genders = online.batch(rows, x.clone(), state, generator)
    assert not np.allclose(mixed.numpy(), x.numpy())
    # every mixed face is lam * a + (1 - lam) * b of two faces of the batch, lam in [0, 1],
    # and its label part is mixed by the same lam
    flat, mixed_flat = x.reshape(16, -1).numpy(), mixed.reshape(16, -1).numpy()
    teacher = normalize(mixed).mean(dim=(1, 2, 3, 4)).numpy()
    label_part = (ages.numpy() - 0.75 * teacher) / 0.25
    gender_part = (genders.numpy() - 0.75 * (0.5 * teacher + 0.5)) / 0.25
    blended = 0
    for i in range(16):
        fits = []
        for j in range(16):
            diff = flat[i] - flat[j]
            if not diff.any():
                lam = 1.0
            else:
                lam = float(np.dot(mixed_flat[i] - flat[j], diff) / np.dot(diff, diff))
            if np.allclose(lam * flat[i] + (1 - lam) * flat[j], mixed_flat[i], atol=1e-5):
                fits.append((j, lam))
        assert fits  # (any partner fits a face left whole, lam = 1)
        for j, lam in fits:
            assert -1e-6 <= lam <= 1 + 1e-6
            want = lam * student.ages[i] + (1 - lam) * student.ages[j]
            np.testing.assert_allclose(label_part[i], want, rtol=1e-4, atol=1e-3)
            want = lam * student.genders[i] + (1 - lam) * student.genders[j]
            np.testing.assert_allclose(gender_part[i], want, atol=1e-4)
        blended += any(0.05 < lam < 0.95 for _, lam in fits)
    assert blended >= 4


def test_online_gender_teachers_must_predict_gender(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="predict no gender"):
        _online(monkeypatch, {}, {"ageonly": 16})
