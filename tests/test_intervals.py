"""Age intervals: the mechanics, not the coverage (that is ``benchmarks.intervals``'s figure).

Intervals hold the age, nest as the coverage grows, stay in the model's range, reach
every output unchanged; a spec without a calibration gives none and says so; a
malformed calibration is refused naming the model and the field.
"""

from __future__ import annotations

import copy
import csv
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from faceage.batch import score_folder
from faceage.cli import main
from faceage.errors import ModelSpecError
from faceage.estimator import AgeEstimator
from faceage.interval_spec import parse_calibration
from faceage.intervals import FEATURES, IntervalMaker
from faceage.results import Face, ImageResult
from faceage.spec import EnsembleSpec, load_manifest, parse_model_spec
from tests._shared import utkface_image, utkface_rows
from tests.tiny_models import tiny_age_interval, tiny_spec_dict, write_tiny_model

COVERAGES = (0.5, 0.6, 0.8, 0.9, 0.95, 0.99)


def _table(variant: str = "flip") -> Any:
    calibration = parse_calibration(tiny_age_interval(), "model 'tiny'")
    table = calibration.table(variant)  # type: ignore[arg-type]
    assert table is not None
    return table


@pytest.fixture(scope="module")
def faces_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = utkface_rows("test", limit=6)
    if not rows or not utkface_image(rows[0]).exists():
        pytest.skip("UTKFace test images not found in ../shared")
    folder = tmp_path_factory.mktemp("faces")
    for row in rows:
        (folder / row["file"]).write_bytes(utkface_image(row).read_bytes())
    return folder


def _tiny(tmp_path: Path, **kwargs: Any) -> AgeEstimator:
    directory = write_tiny_model(tmp_path / "tiny", age_interval=tiny_age_interval())
    return AgeEstimator.from_pretrained(str(directory), detector=None, **kwargs)


# --- the interval maths ---------------------------------------------------------------


def test_intervals_hold_the_age_nest_and_stay_in_range() -> None:
    rng = np.random.default_rng(0)
    age = np.concatenate([rng.uniform(0, 116, 500), [0.0, 116.0, 17.99, 18.0, 45.0]])
    gap = rng.exponential(3.0, len(age))
    previous = None
    for coverage in COVERAGES:
        made = IntervalMaker(_table(), coverage, (0.0, 116.0))(age, flip_gap=gap)
        assert np.all(made.low <= age) and np.all(age <= made.high)
        assert np.all(made.low >= 0.0) and np.all(made.high <= 116.0)
        assert np.all(made.std > 0)
        if previous is not None:
            assert np.all(made.low <= previous.low) and np.all(made.high >= previous.high)
        previous = made


def test_a_harder_face_gets_a_wider_interval() -> None:
    maker = IntervalMaker(_table(), 0.8, (0.0, 116.0))
    age = np.full(3, 30.0)
    made = maker(age, flip_gap=np.array([0.0, 2.0, 8.0]))
    assert np.all(np.diff(made.high - made.low) > 0)


def test_the_age_range_clips_the_interval() -> None:
    made = IntervalMaker(_table(), 0.99, (10.0, 40.0))(np.array([10.0, 40.0]), flip_gap=np.ones(2))
    assert made.low.tolist()[0] == 10.0 and made.high.tolist()[1] == 40.0


@pytest.mark.parametrize("coverage", [0.49, 0.995, 1.0, -1, True, "0.8", float("nan")])
def test_a_coverage_outside_the_tabulated_range_is_refused(coverage: Any) -> None:
    with pytest.raises(ValueError, match=r"age_coverage must be a number from 0\.5 to 0\.99"):
        IntervalMaker(_table(), coverage, (0.0, 116.0))


def test_a_flip_table_needs_the_flip_gap() -> None:
    with pytest.raises(ValueError, match="log_flip_gap"):
        IntervalMaker(_table(), 0.8, (0.0, 116.0))(np.array([30.0]))


# --- parsing: a malformed block names the model and the field -------------------------


def _broken(path: str, value: Any) -> dict[str, Any]:
    block = copy.deepcopy(tiny_age_interval())
    node = block
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    last = keys[-1]
    if value is _DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return block


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("flip.levels", [0.6, 0.8, 0.99], "levels"),
        ("flip.levels", [0.5, 0.9, 0.8, 0.99], "levels"),
        ("flip.low", [[-1.0, -2.0, -3.0, -4.0]], "low"),
        ("flip.low.1", [-0.5, 0.3, -1.0, -2.0], "low[1]"),
        ("flip.low.0", [-2.0, -1.0, -1.6, -2.5], "low[0]"),
        ("plain.high.2", [0.8, 1.8, "wide", 4.5], "high[2]"),
        ("plain.high.2", [0.8, 1.8, 2.5], "high[2]"),
        ("plain.rms", [1.0, -1.0, 1.0], "rms"),
        ("plain.age_edges", [45.0, 18.0], "age_edges"),
        ("plain.scale", {"const": 0.5, "log_flip_gap": 0.4}, "log_flip_gap"),
        ("plain.scale", {"const": 0.5, "sharpness": 0.4}, "sharpness"),
        ("plain.scale", {"const": float("inf")}, "scale.const"),
        ("flip.rms", _DELETE, "rms"),
        ("weights_sha256", 12, "weights_sha256"),
        ("colour", "blue", "colour"),
    ],
)
def test_a_malformed_block_is_refused_naming_model_and_field(
    path: str, value: Any, field: str
) -> None:
    entry = tiny_spec_dict("tiny")
    entry["age_interval"] = _broken(path, value)
    with pytest.raises(ModelSpecError) as caught:
        parse_model_spec("tiny", entry)
    message = str(caught.value)
    assert "model 'tiny'" in message and "age_interval" in message
    assert field in message


def test_a_block_with_no_table_is_refused() -> None:
    with pytest.raises(ModelSpecError, match="model 'm': age_interval: needs a 'flip' or"):
        parse_calibration({"fitted_on": "nothing"}, "model 'm'")


def test_member_spread_is_an_ensemble_feature_only() -> None:
    block = tiny_age_interval()
    block["plain"]["scale"]["log_member_spread"] = 0.3
    with pytest.raises(ModelSpecError, match="log_member_spread"):
        parse_calibration(block, "model 'm'")
    assert parse_calibration(block, "ensemble 'e'", ensemble=True).table("plain") is not None
    assert set(FEATURES) == {"const", "log_age", "log_flip_gap", "log_member_spread"}


# --- registered models ----------------------------------------------------------------


def test_every_registered_model_has_a_fresh_calibration_for_its_default_run() -> None:
    """Fails after new weights until ``python -m benchmarks.intervals --update-manifest``."""
    manifest = load_manifest()
    for spec in [*manifest.models.values(), *manifest.ensembles.values()]:
        calibration = spec.age_interval
        assert calibration is not None, spec.name
        assert calibration.table("flip") is not None and calibration.table("plain") is not None
        if isinstance(spec, EnsembleSpec):
            expected: Any = tuple(sorted((m.name, m.file.sha256) for m in spec.members))
        else:
            expected = spec.file.sha256
        assert calibration.weights_sha256 == expected, f"{spec.name}: calibration is stale"


@pytest.mark.parametrize("name", ["c3ae", "ensemble"])
@pytest.mark.parametrize("flip", [None, False, True])
def test_registered_models_give_intervals_that_nest(
    name: str, flip: bool | None, faces_dir: Path
) -> None:
    images = sorted(str(p) for p in faces_dir.iterdir())[:3]
    previous: list[Face] | None = None
    for coverage in (0.5, 0.8, 0.95):
        estimator = AgeEstimator.from_pretrained(name, flip=flip, age_coverage=coverage)
        faces = [f for r in estimator.predict_batch(images) for f in r.faces]
        assert faces
        for face in faces:
            assert face.age_low is not None and face.age_high is not None
            assert 0 <= face.age_low <= face.age <= face.age_high <= 116
            assert face.age_coverage == coverage and face.age_std is not None
        if previous is not None:
            for wide, narrow in zip(faces, previous):
                assert wide.age == narrow.age
                assert wide.age_low <= narrow.age_low and wide.age_high >= narrow.age_high  # type: ignore[operator]
        previous = faces


# --- specs without a calibration ------------------------------------------------------


def test_a_spec_without_calibration_gives_no_interval_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = write_tiny_model(tmp_path / "bare")
    with caplog.at_level(logging.WARNING, logger="faceage"):
        estimator = AgeEstimator.from_pretrained(str(directory), detector=None)
    lines = [r.getMessage() for r in caplog.records if "age-interval calibration" in r.message]
    assert len(lines) == 1 and "no age_interval" in lines[0] and "faceage.json" in lines[0]
    face = estimator.predict(np.full((80, 80, 3), 128, np.uint8))[0]
    assert (face.age_low, face.age_high, face.age_coverage, face.age_std) == (None,) * 4


def test_a_registered_entry_without_calibration_gives_none(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import dataclasses

    from faceage import hub

    spec = dataclasses.replace(load_manifest().model("ssrnet"), age_interval=None)
    path = hub.resolve_weight_file(spec.file, name=spec.name)
    with caplog.at_level(logging.WARNING, logger="faceage"):
        estimator = AgeEstimator(spec, path, detector=None)
    assert estimator.intervals is None
    assert any("'ssrnet' has no age-interval calibration" in r.message for r in caplog.records)


def test_a_calibration_fitted_on_other_weights_is_not_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    block = tiny_age_interval()
    block["weights_sha256"] = "0" * 64
    directory = write_tiny_model(tmp_path / "tiny", age_interval=block)
    spec_path = directory / "faceage.json"
    spec = json.loads(spec_path.read_text())
    import hashlib

    spec["file"]["sha256"] = hashlib.sha256((directory / "model.onnx").read_bytes()).hexdigest()
    spec_path.write_text(json.dumps(spec))
    with caplog.at_level(logging.WARNING, logger="faceage"):
        estimator = AgeEstimator.from_pretrained(str(directory), detector=None)
    assert estimator.intervals is None
    assert any("fitted on other weights" in r.message for r in caplog.records)


# --- user models and every output -----------------------------------------------------


def test_a_user_model_carries_its_own_calibration(tmp_path: Path) -> None:
    plain = _tiny(tmp_path, flip=False)
    flipped = _tiny(tmp_path, flip=True)
    image = np.random.default_rng(1).integers(0, 255, (90, 90, 3), dtype=np.uint8)
    for estimator in (plain, flipped):
        (face,) = estimator.predict(image)
        assert face.age_low is not None and face.age_high is not None
        assert face.age_low <= face.age <= face.age_high and face.age_coverage == 0.8
    assert plain.intervals is not None and plain.intervals.table.features == ("const", "log_age")


def _row_number(value: Any) -> float | None:
    return None if value in ("", None) else float(value)


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
def test_intervals_survive_to_dict_csv_and_jsonl(
    tmp_path: Path, faces_dir: Path, suffix: str
) -> None:
    estimator = AgeEstimator.from_pretrained("c3ae", age_coverage=0.9)
    expected = {r.source: r for r in estimator.predict_folder(faces_dir)}
    for result in expected.values():
        for face in result.faces:
            data = json.loads(json.dumps(face.to_dict()))
            assert [data[k] for k in ("age_low", "age_high", "age_coverage")] == [
                face.age_low,
                face.age_high,
                face.age_coverage,
            ]
    out = tmp_path / f"ages.{suffix}"
    score_folder(estimator, faces_dir, out)
    text = out.read_text(encoding="utf-8")
    rows = (
        list(csv.DictReader(text.splitlines()))
        if suffix == "csv"
        else [json.loads(line) for line in text.splitlines()]
    )
    assert len(rows) == sum(len(r.faces) or 1 for r in expected.values())
    for row in rows:
        face = expected[row["path"]].faces[int(row["face_index"])]
        for key in ("age_low", "age_high", "age_std"):
            assert _row_number(row[key]) == pytest.approx(getattr(face, key), abs=1e-3)
        assert _row_number(row["age_coverage"]) == 0.9


def test_face_rows_carry_the_interval() -> None:
    face = Face(
        age=30.0,
        box=(0.0, 0.0, 10.0, 10.0),
        landmarks=(),
        detection_score=0.9,
        age_low=25.0,
        age_high=37.5,
        age_coverage=0.8,
    )
    (row,) = ImageResult(source="a.jpg", faces=(face,), width=10, height=10).face_rows()
    assert (row["age_low"], row["age_high"], row["age_coverage"]) == (25.0, 37.5, 0.8)
    (empty,) = ImageResult(source="b.jpg").face_rows()
    assert empty["age_low"] is None and empty["age_coverage"] is None


def test_predict_cli_prints_the_interval(
    faces_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = str(sorted(faces_dir.iterdir())[0])
    assert main(["predict", image, "--model", "c3ae", "--age-coverage", "0.95"]) == 0
    (face,) = json.loads(capsys.readouterr().out)["faces"]
    assert face["age_low"] <= face["age"] <= face["age_high"] and face["age_coverage"] == 0.95


@pytest.mark.parametrize("value", ["0.3", "1", "abc"])
def test_cli_refuses_a_coverage_out_of_range(
    value: str, faces_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = str(sorted(faces_dir.iterdir())[0])
    assert main(["predict", image, "--age-coverage", value]) == 2
    assert "--age-coverage" in capsys.readouterr().err


def test_draw_label_shows_the_interval() -> None:
    from faceage.draw import face_label

    face = Face(
        age=34.4,
        box=(0.0, 0.0, 1.0, 1.0),
        landmarks=(),
        detection_score=1.0,
        age_low=29.2,
        age_high=39.6,
        age_coverage=0.8,
        gender="female",
        gender_probability=0.934,
    )
    assert face_label(face) == "34 (29-40) F 0.93"
