"""Reduced JPEG decoding: the scale choices, and what a large photo's results keep.

A photo is decoded at 1/2, 1/4 or 1/8 only where the detector still gets the pixels it
would have got from the full image, and a face is cut only from a decode holding at
least CROP_OVERSAMPLING image pixels per crop pixel.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

import faceage.pipeline
from faceage.estimator import AgeEstimator
from faceage.scaled_images import (
    CROP_OVERSAMPLING,
    REDUCTIONS,
    crop_reduction,
    crop_zoom,
    detection_reduction,
    load_scaled,
)
from faceage.spec import load_spec_file
from tests._shared import utkface_image, utkface_rows
from tests.tiny_models import write_tiny_model


@pytest.mark.parametrize(
    ("size", "side", "expected"),
    [
        ((4032, 3024), 640, 4),
        ((3024, 4032), 640, 4),
        ((1920, 1080), 640, 2),
        ((1280, 720), 640, 2),
        ((1279, 720), 640, 2),
        ((1278, 720), 640, 1),
        ((640, 480), 640, 1),
        ((200, 200), 640, 1),
        ((12000, 9000), 640, 8),
        ((4032, 3024), None, 1),
        ((4032, 3024), 1280, 2),
    ],
)
def test_detection_reduction_examples(
    size: tuple[int, int], side: int | None, expected: int
) -> None:
    assert detection_reduction(*size, side) == expected


def test_detection_reduction_leaves_the_detector_its_pixels() -> None:
    rng = np.random.default_rng(0)
    for width, height, side in zip(
        rng.integers(1, 20000, 2000), rng.integers(1, 20000, 2000), rng.integers(16, 2000, 2000)
    ):
        reduction = detection_reduction(int(width), int(height), int(side))
        longest = max(width, height)
        assert reduction in REDUCTIONS
        if reduction > 1:  # the detector still shrinks: it sees what it saw before
            assert math.ceil(longest / reduction) >= side
        if reduction < REDUCTIONS[-1]:  # and no larger reduction would have done
            assert math.ceil(longest / (2 * reduction)) < side


def test_crop_reduction_never_gives_a_face_fewer_pixels_than_the_crop_needs() -> None:
    for zoom in np.geomspace(0.001, 10.0, 400):
        for at_most in REDUCTIONS:
            reduction = crop_reduction(float(zoom), at_most=at_most)
            assert reduction in REDUCTIONS and reduction <= at_most
            # pixels of the decode per crop pixel, along each side
            if reduction > 1:
                assert 1 / (zoom * reduction) >= CROP_OVERSAMPLING
            finer = [r for r in REDUCTIONS if reduction < r <= at_most]
            if finer:  # the coarsest decode that has enough
                assert 1 / (zoom * finer[0]) < CROP_OVERSAMPLING


def _photo(width: int, height: int, faces: list[tuple[int, int, int]], **save: Any) -> bytes:
    """A JPEG of a textured background with UTKFace test faces pasted at (x, y, side)."""
    rng = np.random.default_rng(1)
    noise = rng.normal(120, 40, (height // 16 + 1, width // 16 + 1, 3)).astype(np.float32)
    canvas = np.clip(cv2.resize(noise, (width, height)), 0, 255).astype(np.uint8)
    rows = utkface_rows("test", limit=len(faces))
    for row, (x, y, side) in zip(rows, faces):
        chip = cv2.imread(str(utkface_image(row)))
        assert chip is not None
        canvas[y : y + side, x : x + side] = cv2.resize(chip, (side, side))
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(canvas[:, :, ::-1]).save(buffer, "JPEG", quality=92, **save)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def tiny_spec_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("model") / "tiny", gender=True)


def _estimator(directory: Path, **options: Any) -> AgeEstimator:
    spec = load_spec_file(directory / "faceage.json")
    return AgeEstimator(spec, directory / "model.onnx", detector="retinaface", **options)


#: A 12 MP photo with one large face (cut from the 1/4 decode) and one small face (which
#: needs a finer one).
FACES = [(300, 400, 900), (2600, 2000, 280)]


def test_reduced_photo_gives_the_same_faces_as_a_full_decode(tiny_spec_dir: Path) -> None:
    data = _photo(4032, 3024, FACES)
    reduced = _estimator(tiny_spec_dir).predict_batch([data], workers=1)[0]
    full = _estimator(tiny_spec_dir, reduced_decoding=False).predict_batch([data], workers=1)[0]
    assert (reduced.width, reduced.height) == (full.width, full.height) == (4032, 3024)
    assert len(reduced.faces) == len(full.faces) == 2
    for a, b in zip(reduced.faces, full.faces):
        side = b.box[2] - b.box[0]
        assert np.allclose(a.box, b.box, atol=0.03 * side)
        assert np.allclose(a.landmarks, b.landmarks, atol=0.03 * side)
        assert abs(a.detection_score - b.detection_score) < 0.05


def test_crops_are_never_cut_from_too_few_pixels(
    tiny_spec_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    estimator = _estimator(tiny_spec_dir)
    spec = estimator.spec
    cuts: list[tuple[tuple[int, ...], list[np.ndarray]]] = []
    real_face_crops = faceage.pipeline.face_crops

    def spy(pixels: np.ndarray, landmarks: list[np.ndarray], crop_spec: Any) -> np.ndarray:
        cuts.append((pixels.shape, [np.asarray(p) for p in landmarks]))
        return real_face_crops(pixels, landmarks, crop_spec)

    monkeypatch.setattr(faceage.pipeline, "face_crops", spy)
    for faces in ([FACES[0]], FACES):
        cuts.clear()
        [result] = estimator.predict_batch([_photo(4032, 3024, faces)], workers=1)
        assert len(result.faces) == len(faces)
        [(shape, points)] = cuts
        reduction = 4032 // shape[1]
        for landmarks in points:
            zoom = crop_zoom(landmarks, size=spec.input_size, scales=spec.crop_scales)
            # in the decode the crop is cut from: enough pixels, or the full image
            assert reduction == 1 or 1 / zoom >= CROP_OVERSAMPLING
        # the large face alone is cut from the 1/4 decode; with the small one, a finer one
        assert reduction == 4 if len(faces) == 1 else reduction < 4


def test_exif_rotated_large_photo(tiny_spec_dir: Path) -> None:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = _photo(2400, 1800, [(200, 300, 700)], exif=exif)
    scaled = load_scaled(data, source="rotated", input_side=640)
    assert scaled.reduction == 2
    assert (scaled.width, scaled.height) == (1800, 2400)
    assert scaled.pixels.shape[:2] == (1200, 900)
    reduced = _estimator(tiny_spec_dir).predict_batch([data], workers=1)[0]
    full = _estimator(tiny_spec_dir, reduced_decoding=False).predict_batch([data], workers=1)[0]
    assert (reduced.width, reduced.height) == (full.width, full.height) == (1800, 2400)
    assert len(reduced.faces) == len(full.faces) == 1
    assert np.allclose(reduced.faces[0].box, full.faces[0].box, atol=15)


def test_small_images_and_other_formats_are_decoded_in_full() -> None:
    face = cv2.imread(str(utkface_image(utkface_rows("test", limit=1)[0])))
    assert face is not None
    big = cv2.resize(face, (2000, 2000))
    ok, png = cv2.imencode(".png", big)
    assert ok
    assert load_scaled(png.tobytes(), source="png", input_side=640).reduction == 1
    ok, jpeg = cv2.imencode(".jpg", face)
    assert ok
    assert load_scaled(jpeg.tobytes(), source="small", input_side=640).reduction == 1
    ok, jpeg = cv2.imencode(".jpg", big)
    assert load_scaled(jpeg.tobytes(), source="big", input_side=640).reduction == 2
    assert load_scaled(jpeg.tobytes(), source="no detector", input_side=None).reduction == 1


def test_a_detector_that_cannot_take_reduced_images_gets_full_ones(tiny_spec_dir: Path) -> None:
    from faceage.detection.retinaface import RetinaFaceDetector

    class OwnDetector(RetinaFaceDetector):  # overrides detect without the new arguments
        def detect(self, image: np.ndarray) -> list[Any]:  # type: ignore[override]
            self.sizes.append(image.shape[:2])
            return super().detect(image)

    detector = OwnDetector()
    detector.sizes = []  # type: ignore[attr-defined]
    estimator = _estimator(tiny_spec_dir)
    estimator = AgeEstimator(estimator.spec, tiny_spec_dir / "model.onnx", detector=detector)
    assert estimator.preparer.input_side is None
    [result] = estimator.predict_batch([_photo(2400, 1800, [(200, 300, 700)])], workers=1)
    assert result.ok and len(result.faces) == 1
    assert detector.sizes == [(1800, 2400)]  # type: ignore[attr-defined]
    assert _estimator(tiny_spec_dir).preparer.input_side == 640
