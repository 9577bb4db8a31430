"""Data sets as data: the registry, the mixture's epoch order, per-set validation, and the
augmentations of real photos."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from training.augment import augment  # noqa: E402
from training.data import labelled_detection  # noqa: E402
from training.datasets import DATASETS, get_dataset, mixture  # noqa: E402
from training.splits import epoch_order, metrics, selection_score  # noqa: E402


class _Mixed:
    """Six UTKFace rows then four AAF rows."""

    def __init__(self) -> None:
        self.names = ["utkface", "aaf"]
        self.source = np.array([0] * 6 + [1] * 4, dtype=np.int8)
        self.ages = np.array([10, 20, 30, 40, 50, 60, 20, 30, 40, 50], np.float32)
        self.genders = np.array([0, 1] * 5)

    def __len__(self) -> int:
        return len(self.source)

    def rows_of(self, name: str) -> np.ndarray:
        return self.source == self.names.index(name)


def test_every_registered_data_set_reads_its_labels() -> None:
    for dataset in DATASETS.values():
        rows = dataset.read_labels()
        assert rows and {"file", "age", "gender", "split", "race"} <= set(rows[0])
        assert (dataset.images / rows[0]["file"]).exists()


def test_a_mixture_names_known_sets_with_positive_weights() -> None:
    assert mixture({}) == {"utkface": 1.0}
    assert mixture({"datasets": {"utkface": 1.0, "aaf": 0.5}}) == {"utkface": 1.0, "aaf": 0.5}
    with pytest.raises(ValueError, match=r"unknown data set 'imdb'.*aaf, utkface"):
        mixture({"datasets": {"imdb": 1.0}})
    with pytest.raises(ValueError, match="sampling weight 0"):
        mixture({"datasets": {"aaf": 0}})
    with pytest.raises(ValueError, match="unknown"):
        get_dataset("morph")


def test_an_epoch_draws_each_set_as_often_as_its_weight_says() -> None:
    data = _Mixed()
    generator = torch.Generator().manual_seed(0)
    order = epoch_order(data, {"utkface": 0.5, "aaf": 2.0}, generator)  # type: ignore[arg-type]
    counts = np.bincount(order, minlength=len(data))
    assert counts[:6].sum() == 3 and counts[:6].max() == 1  # a random half of UTKFace
    assert (counts[6:] == 2).all()  # every AAF row twice
    again = epoch_order(data, {"utkface": 0.5, "aaf": 2.0}, torch.Generator().manual_seed(0))  # type: ignore[arg-type]
    assert (order == again).all()


def test_one_set_at_weight_one_keeps_the_old_permutation() -> None:
    data = _Mixed()
    data.names = ["utkface"]
    data.source[:] = 0
    order = epoch_order(data, {"utkface": 1.0}, torch.Generator().manual_seed(3))  # type: ignore[arg-type]
    expected = torch.randperm(len(data), generator=torch.Generator().manual_seed(3)).numpy()
    assert (order == expected).all()


def test_validation_scores_each_set_and_selects_on_their_mean() -> None:
    data = _Mixed()
    ages = data.ages + np.array([1] * 6 + [4] * 4, np.float32)  # 1 year off, 4 years off
    genders = np.where(data.genders == 1, 0.9, 0.1)
    genders[0] = 0.8  # one UTKFace man called a woman
    result = metrics(data, ages, genders)  # type: ignore[arg-type]
    assert result["mae"] == pytest.approx(2.2)  # pooled over ten faces
    assert result["by_dataset"]["utkface"]["mae"] == 1 and result["by_dataset"]["aaf"]["mae"] == 4
    assert selection_score(result) == pytest.approx(2.5)  # each set counts alike
    utk = result["by_dataset"]["utkface"]
    assert utk["gender_accuracy_male"] == pytest.approx(2 / 3, abs=1e-4)
    assert utk["gender_accuracy_female"] == 1.0


def test_the_centre_rule_picks_the_face_nearest_the_middle() -> None:
    edge = SimpleNamespace(box=(0.0, 0.0, 40.0, 40.0), score=0.99)
    middle = SimpleNamespace(box=(80.0, 90.0, 220.0, 250.0), score=0.9)
    assert labelled_detection([edge, middle], 300, 340, "centre") is middle
    assert labelled_detection([edge, middle], 300, 340, "best") is edge


REAL_PHOTO = {
    "white_balance": 0.1,
    "gamma": 0.3,
    "downscale": {"p": 1.0, "min_scale": 0.35},
    "blur": {"p": 1.0, "max_sigma": 1.5},
    "jpeg": {"p": 1.0, "min_quality": 30},
}


def test_real_photo_augmentations_change_faces_alike_on_every_crop_and_replay() -> None:
    smooth = torch.linspace(0, 1, 32).view(1, 1, 1, 1, 32).expand(4, 3, 3, 32, 32)
    x = smooth + 0.2 * (torch.rand(4, 3, 3, 32, 32, generator=torch.Generator().manual_seed(1)))
    x = x.clamp(0, 1).contiguous()
    x[:, 1] = x[:, 0]  # two identical crops of each face
    out = augment(x, REAL_PHOTO, torch.Generator().manual_seed(5))
    again = augment(x, REAL_PHOTO, torch.Generator().manual_seed(5))
    assert out.shape == x.shape and torch.equal(out, again)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert torch.allclose(out[:, 0], out[:, 1], atol=1e-6)  # the same treatment per face
    # blur and down-scaling take away fine detail: neighbouring pixels differ less
    detail = (x[..., 1:] - x[..., :-1]).abs().mean()
    assert (out[..., 1:] - out[..., :-1]).abs().mean() < 0.7 * detail


def test_each_real_photo_augmentation_can_be_off() -> None:
    x = torch.rand(3, 1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    off = {key: {**value, "p": 0.0} for key, value in REAL_PHOTO.items() if isinstance(value, dict)}
    # the identity warp of grid_sample leaves float rounding only
    assert torch.allclose(augment(x, off, torch.Generator().manual_seed(0)), x, atol=1e-5)
