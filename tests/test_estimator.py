"""AgeEstimator end to end with tiny ONNX models built here, on arrays and real faces."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

import numpy as np
import pytest

from faceage.alignment import align_face, crop_landmarks
from faceage.errors import ImageDecodeError, ImageNotFoundError, ModelSpecError
from faceage.estimator import AgeEstimator
from faceage.results import Face
from faceage.runtime import create_session
from faceage.spec import load_spec_file, parse_model_spec
from tests._shared import spinning_entry, utkface_image, utkface_rows
from tests.tiny_models import tiny_spec_dict, write_tiny_model


def _estimator(
    tmp_path: Path,
    *,
    detector: str | None = None,
    gender: bool = False,
    num_crops: int = 1,
    **kwargs: object,
) -> AgeEstimator:
    directory = write_tiny_model(
        tmp_path / f"tiny-{gender}-{num_crops}", gender=gender, num_crops=num_crops
    )
    spec = load_spec_file(directory / "faceage.json")
    return AgeEstimator(spec, directory / "model.onnx", detector=detector, **kwargs)  # type: ignore[arg-type]


def _expected_age(image: np.ndarray) -> float:
    # The tiny model answers 20 + 30 * mean of the normalised pixels of the crop that
    # alignment makes (detection off: the whole image at scale 1), clipped to [0, 116].
    crop = align_face(image, crop_landmarks(image.shape[1], image.shape[0], 64), size=64)
    return float(np.clip(20 + 30 * np.mean((crop / 255 - 0.5) / 0.5), 0, 116))


@pytest.mark.parametrize("value", [0, 128, 255])
def test_uniform_crops_give_the_models_answer(tmp_path: Path, value: int) -> None:
    estimator = _estimator(tmp_path)
    image = np.full((48, 48, 3), value, np.uint8)
    faces = estimator.predict(image)
    assert len(faces) == 1
    face = faces[0]
    assert face.age == pytest.approx(_expected_age(image), abs=1e-3)
    # The resize to 64 px blends at most the outermost ring of pixels with the black border.
    assert face.age == pytest.approx(float(np.clip(20 + 60 * (value / 255 - 0.5), 0, 116)), abs=2)
    assert face.box == (0.0, 0.0, 48.0, 48.0) and face.detection_score == 1.0
    assert face.gender is None and face.gender_probability is None


def test_colour_order_reaches_the_model(tmp_path: Path) -> None:
    # A model fed RGB must see the same pixels from a BGR array and its RGB twin.
    estimator = _estimator(tmp_path)
    bgr = np.zeros((32, 32, 3), np.uint8)
    bgr[..., 0] = 255
    from_bgr = estimator.predict(bgr)[0].age
    from_rgb = estimator.predict(bgr[..., ::-1].copy(), color_order="rgb")[0].age
    assert from_bgr == pytest.approx(from_rgb, abs=1e-4)


def test_gender_output(tmp_path: Path) -> None:
    estimator = _estimator(tmp_path, gender=True)
    bright = estimator.predict(np.full((64, 64, 3), 255, np.uint8))[0]
    dark = estimator.predict(np.full((64, 64, 3), 0, np.uint8))[0]
    p = float(1 / (1 + np.exp(-4.0)))  # sigmoid(4 * mean) of an all-white or all-black crop
    assert bright.gender == "female" and bright.gender_probability == pytest.approx(p, abs=1e-4)
    assert dark.gender == "male" and dark.gender_probability == pytest.approx(p, abs=1e-4)


def test_results_are_frozen_and_serialisable(tmp_path: Path) -> None:
    face = _estimator(tmp_path, gender=True).predict(np.full((20, 20, 3), 9, np.uint8))[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        face.age = 3.0  # type: ignore[misc]
    data = json.loads(json.dumps(face.to_dict()))
    assert set(data) == {f.name for f in dataclasses.fields(Face)}
    assert len(data["landmarks"]) == 5


def test_batch_records_each_failure_and_goes_on(tmp_path: Path) -> None:
    estimator = _estimator(tmp_path)
    good = tmp_path / "good.png"
    import cv2

    cv2.imwrite(str(good), np.full((30, 30, 3), 200, np.uint8))
    inputs = [
        str(good),
        b"not an image",
        str(tmp_path / "missing.jpg"),
        np.full((10, 10, 3), 10, np.uint8),
    ]
    results = estimator.predict_batch(inputs)
    assert [r.ok for r in results] == [True, False, False, True]
    assert results[1].error_type == "ImageDecodeError"
    assert results[2].error_type == "ImageNotFoundError" and "missing.jpg" in results[2].error
    assert results[0].source == str(good) and results[0].width == 30
    with pytest.raises(ImageDecodeError):
        estimator.predict(b"not an image")
    with pytest.raises(ImageNotFoundError):
        estimator.predict(tmp_path / "missing.jpg")


@pytest.fixture(scope="module")
def real_faces() -> list[Path]:
    return [utkface_image(row) for row in utkface_rows("test", limit=12)]


def test_real_faces_with_three_context_crops(tmp_path: Path, real_faces: list[Path]) -> None:
    estimator = _estimator(tmp_path, detector="retinaface", num_crops=3)
    results = estimator.predict_batch(real_faces)
    assert sum(len(r.faces) for r in results) >= 11
    for result in results:
        for face in result.faces:
            assert 0.0 <= face.age <= 116.0
            x1, y1, x2, y2 = face.box
            assert 0 <= x1 < x2 <= result.width and 0 <= y1 < y2 <= result.height


def test_batching_does_not_change_answers(tmp_path: Path, real_faces: list[Path]) -> None:
    estimator = _estimator(tmp_path, detector="retinaface", max_batch_size=5)
    batched = estimator.predict_batch(real_faces)
    single = [estimator.predict(path) for path in real_faces]
    for result, faces in zip(batched, single):
        assert [f.age for f in result.faces] == pytest.approx([f.age for f in faces], abs=1e-4)


def test_threads_agree_with_sequential_calls(tmp_path: Path, real_faces: list[Path]) -> None:
    estimator = _estimator(tmp_path, detector="retinaface", num_crops=3)
    expected = [[f.age for f in estimator.predict(p)] for p in real_faces]
    answers: dict[int, list[list[float]]] = {}
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            answers[worker] = [[f.age for f in estimator.predict(p)] for p in real_faces]
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for worker in range(8):
        for got, want in zip(answers[worker], expected):
            assert got == pytest.approx(want, abs=1e-4)


def test_flip_and_max_faces(tmp_path: Path, real_faces: list[Path]) -> None:
    plain = _estimator(tmp_path, detector="retinaface")
    flipped = _estimator(tmp_path, detector="retinaface", flip=True, max_faces=1)
    # The tiny model averages pixels, which mirroring does not change.
    for path in real_faces[:4]:
        a, b = plain.predict(path), flipped.predict(path)
        assert len(b) <= 1
        if b:
            assert b[0].age == pytest.approx(a[0].age, abs=1e-3)


def test_flip_default_comes_from_the_spec_and_an_argument_overrides_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = write_tiny_model(tmp_path / "tiny")
    spec = load_spec_file(directory / "faceage.json")
    flipping = dataclasses.replace(spec, flip=True)
    image = np.full((48, 48, 3), 90, np.uint8)
    for chosen, flip, runs in ((spec, None, 1), (flipping, None, 2), (flipping, False, 1)):
        estimator = AgeEstimator(chosen, directory / "model.onnx", detector=None, flip=flip)
        calls: list[int] = []
        original = estimator.model.run_crops

        def counting(crops: np.ndarray, original=original, calls=calls) -> object:
            calls.append(len(crops))
            return original(crops)

        monkeypatch.setattr(estimator.model, "run_crops", counting)
        (face,) = estimator.predict(image)
        assert estimator.flip is (runs == 2)
        assert calls == [1] * runs  # the mirrored crops are a second call
        assert face.age == pytest.approx(_expected_age(image), abs=1e-3)


def test_a_spec_flip_must_be_a_boolean(tmp_path: Path) -> None:
    entry = tiny_spec_dict()
    assert parse_model_spec("tiny", {**entry, "flip": True}).flip is True
    assert parse_model_spec("tiny", entry).flip is False
    with pytest.raises(ModelSpecError, match="flip must be true or false"):
        parse_model_spec("tiny", {**entry, "flip": "yes"})


def test_predict_folder_streams_in_sorted_order(tmp_path: Path, real_faces: list[Path]) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, path in enumerate(real_faces[:5]):
        (folder / f"{i:02d}.jpg").write_bytes(path.read_bytes())
    (folder / "notes.txt").write_text("not an image")
    estimator = _estimator(tmp_path, detector="retinaface")
    results = list(estimator.predict_folder(folder, chunk_size=2))
    assert [Path(r.source).name for r in results] == [
        "00.jpg",
        "01.jpg",
        "02.jpg",
        "03.jpg",
        "04.jpg",
        "notes.txt",
    ]
    assert not results[-1].ok and all(r.ok for r in results[:-1])


def test_graph_that_does_not_match_its_spec_is_refused(tmp_path: Path) -> None:
    directory = write_tiny_model(tmp_path / "m")
    entry = tiny_spec_dict()
    entry["output"] = {"age": "predicted_age"}
    spec = parse_model_spec("broken", entry, file=load_spec_file(directory / "faceage.json").file)
    with pytest.raises(ModelSpecError, match="predicted_age"):
        AgeEstimator(spec, directory / "model.onnx", detector=None)
    entry = tiny_spec_dict(num_crops=3)
    spec = parse_model_spec("broken", entry, file=load_spec_file(directory / "faceage.json").file)
    with pytest.raises(ModelSpecError, match="rank"):
        AgeEstimator(spec, directory / "model.onnx", detector=None)


def test_batch_sources_name_results_and_errors(tmp_path: Path, real_faces: list[Path]) -> None:
    estimator = _estimator(tmp_path)
    results = estimator.predict_batch(
        [real_faces[0].read_bytes(), b"garbage"], sources=["first.jpg", "second.jpg"]
    )
    assert [r.source for r in results] == ["first.jpg", "second.jpg"]
    assert results[0].ok and results[1].error is not None and "second.jpg" in results[1].error
    with pytest.raises(ValueError, match="sources"):
        estimator.predict_batch([b"x"], sources=["a", "b"])


def test_sessions_do_not_spin_between_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the detector and every member model take turns on the same cores: threads left
    # busy-waiting in one session slow the next (see faceage.runtime.create_session)
    estimator = AgeEstimator.from_pretrained("ensemble", intra_op_num_threads=2)
    sessions = [m.session for m in estimator.model.models.values()]  # type: ignore[union-attr]
    sessions.append(estimator.detector._session)  # type: ignore[union-attr]
    assert len(sessions) == 5
    assert {spinning_entry(s) for s in sessions} == {"0"}
    model = write_tiny_model(tmp_path / "tiny") / "model.onnx"
    assert spinning_entry(create_session(model, allow_spinning=True)) == "1"
    monkeypatch.setenv("FACEAGE_ORT_SPINNING", "1")
    assert spinning_entry(create_session(model)) == "1"
    assert spinning_entry(create_session(model, allow_spinning=False)) == "0"
    monkeypatch.setenv("FACEAGE_ORT_SPINNING", "yes")
    with pytest.raises(ValueError, match=r"FACEAGE_ORT_SPINNING='yes'.*1 \(spin\) or 0"):
        create_session(model)
