"""Ensembles: registered models run on one set of crops, their outputs averaged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from faceage.alignment import context_crops
from faceage.downloads import download
from faceage.errors import ModelSpecError, UnknownModelError
from faceage.estimator import AgeEstimator
from faceage.images import load_image
from faceage.spec import (
    EnsembleSpec,
    ModelSpec,
    WeightFile,
    load_manifest,
    parse_ensemble_spec,
    parse_model_spec,
)
from tests._shared import utkface_image, utkface_rows
from tests.tiny_models import build_tiny_age_onnx, tiny_spec_dict

ROOT = Path(__file__).resolve().parents[1]


def _tiny(
    tmp_path: Path, name: str, *, size: int, gender: bool = False, num_crops: int = 1
) -> tuple[ModelSpec, Path]:
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(build_tiny_age_onnx(gender=gender, num_crops=num_crops, size=size))
    entry = tiny_spec_dict(name, gender=gender, num_crops=num_crops, size=size)
    return parse_model_spec(name, entry, file=WeightFile(filename=path.name)), path


def _smooth_image(height: int = 160, width: int = 120) -> np.ndarray:
    """A BGR image whose crops differ in brightness (the tiny models read brightness)."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([40 + x * 1.5, 30 + y, 200 - y * 0.8], axis=-1)
    return np.clip(image, 0, 255).astype(np.uint8)


def test_an_ensemble_averages_its_members(tmp_path: Path) -> None:
    wide, wide_path = _tiny(tmp_path, "wide", size=64, num_crops=2)  # scales 1.0 and 1.25
    small, small_path = _tiny(tmp_path, "small", size=32, gender=True)
    other, other_path = _tiny(tmp_path, "other", size=48, gender=True)
    models = {m.name: m for m in (wide, small, other)}
    spec = parse_ensemble_spec(
        "trio", {"members": {"age": ["wide", "small"], "gender": ["small", "other"]}}, models
    )
    assert spec.input_size == 64 and spec.crop_scales == (1.0, 1.25) and spec.task == "age+gender"
    paths = {"wide": wide_path, "small": small_path, "other": other_path}
    image = _smooth_image()
    together = AgeEstimator(spec, paths, detector=None).predict(image)[0]
    alone = {
        name: AgeEstimator(models[name], path, detector=None).predict(image)[0]
        for name, path in paths.items()
    }
    # each member alone cuts its crops at its own size; in the ensemble they are resized
    # from the 64 px ones, which moves a mean-brightness model by a few hundredths
    assert together.age == pytest.approx((alone["wide"].age + alone["small"].age) / 2, abs=0.1)
    assert alone["wide"].age != pytest.approx(alone["small"].age, abs=0.5)  # a real average
    female = [
        f.gender_probability if f.gender == "female" else 1 - f.gender_probability  # type: ignore[operator]
        for f in (alone["small"], alone["other"])
    ]
    p_female = (
        together.gender_probability
        if together.gender == "female"
        else 1 - together.gender_probability  # type: ignore[operator]
    )
    assert p_female == pytest.approx(sum(female) / 2, abs=0.01)


def test_an_ensemble_needs_a_path_per_member(tmp_path: Path) -> None:
    one, path = _tiny(tmp_path, "one", size=32)
    two, _ = _tiny(tmp_path, "two", size=32)
    spec = parse_ensemble_spec(
        "pair", {"members": {"age": ["one", "two"]}}, {"one": one, "two": two}
    )
    with pytest.raises(ValueError, match="two"):
        AgeEstimator(spec, {"one": path}, detector=None)
    with pytest.raises(TypeError, match="member name"):
        AgeEstimator(spec, path, detector=None)
    with pytest.raises(TypeError, match="one ONNX path"):
        AgeEstimator(one, {"one": path}, detector=None)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({}, "missing required field 'members'"),
        ({"members": {"age": []}}, "at least one model"),
        ({"members": {"age": ["nope"]}}, "unknown model 'nope'"),
        ({"members": {"age": ["a", "a"]}}, "twice"),
        ({"members": {"age": ["a"], "gender": ["a"]}}, "gives no gender"),
    ],
)
def test_bad_ensemble_entries_are_refused(
    tmp_path: Path, entry: dict[str, Any], message: str
) -> None:
    spec, _ = _tiny(tmp_path, "a", size=32)
    with pytest.raises(ModelSpecError, match=message):
        parse_ensemble_spec("bad", entry, {"a": spec})
    with pytest.raises(ModelSpecError, match="already a model"):
        parse_ensemble_spec("a", {"members": {"age": ["a"]}}, {"a": spec})


def test_resized_crops_match_crops_cut_at_the_member_size() -> None:
    """What the ensemble feeds a 64 px member (its 112 px crops, resized) is what that
    member was trained on (crops cut at 64 px) up to interpolation."""
    from faceage.ensemble import member_crops

    manifest = load_manifest()
    ensemble = manifest.ensembles["ensemble"]
    c3ae = manifest.model("c3ae")
    estimator = AgeEstimator.from_pretrained("c3ae")
    for row in utkface_rows("test", limit=3):
        image = load_image(str(utkface_image(row)))
        landmarks = np.asarray(estimator.detector.detect(image)[0].landmarks)  # type: ignore[union-attr]
        big = context_crops(image, landmarks, size=ensemble.input_size, scales=ensemble.crop_scales)
        direct = context_crops(image, landmarks, size=c3ae.input_size, scales=c3ae.crop_scales)
        resized = member_crops(big[None], ensemble, c3ae)[0]
        assert resized.shape == direct.shape
        assert np.abs(resized.astype(int) - direct.astype(int)).mean() < 4.0


def test_the_registered_ensemble_runs_offline_and_sits_between_its_members() -> None:
    spec = load_manifest().estimator_spec("ensemble")
    assert isinstance(spec, EnsembleSpec)
    assert spec.has_gender and {m.name for m in spec.members} >= set(spec.age_from)
    path = utkface_image(utkface_rows("test", limit=1)[0])
    face = AgeEstimator.from_pretrained("ensemble").predict(str(path))[0]
    ages = [AgeEstimator.from_pretrained(n).predict(str(path))[0].age for n in spec.age_from]
    assert min(ages) - 0.5 <= face.age <= max(ages) + 0.5
    assert face.gender in ("female", "male")
    # no member has an age_std output: the ensemble's is its calibrated expected error
    assert face.age_std is not None and face.age_std > 0
    assert face.age_low is not None and face.age_high is not None
    assert face.age_low <= face.age <= face.age_high


def test_download_of_an_ensemble_fetches_its_members() -> None:
    spec = load_manifest().ensembles["ensemble"]
    paths = download("ensemble")
    assert [p.name for p in paths] == [m.file.filename for m in spec.members]


def test_unknown_names_list_the_ensembles_too() -> None:
    with pytest.raises(UnknownModelError, match="ensemble"):
        load_manifest().estimator_spec("no-such-model")


def test_cli_models_lists_the_ensemble() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "faceage", "models", "--json"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    rows = {row["name"]: row for row in json.loads(out)}
    assert rows["ensemble"]["kind"] == "ensemble"
    assert rows["ensemble"]["members"] == [
        m.name for m in load_manifest().ensembles["ensemble"].members
    ]


def test_the_ensemble_figures_are_for_the_member_files_shipped() -> None:
    """A retrained member makes the ensemble's measured figures stale: re-run
    ``python -m benchmarks.accuracy --models all --flip both --update-manifest``."""
    spec = load_manifest().ensembles["ensemble"]
    measured = spec.metrics.get("utkface_test_pipeline")
    if measured is None:
        pytest.skip("the ensemble has not been measured yet")
    assert measured["members_sha256"] == {m.name: m.file.sha256 for m in spec.members}
