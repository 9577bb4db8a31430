"""RetinaFace: pinned bytes, our own decoding, real faces, large photos, thresholds."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest

from faceage.detection import retinaface
from faceage.detection.base import RELIABLE_FACE_SIZE, detection_scale, fit_scale, nms
from faceage.detection.retinaface import RETINAFACE_SHA256, RetinaFaceDetector
from faceage.errors import DetectorPackageError
from faceage.images import load_image
from tests._shared import utkface_image, utkface_rows


@pytest.fixture(scope="module")
def detector() -> RetinaFaceDetector:
    return RetinaFaceDetector()


def _face(index: int = 0) -> np.ndarray:
    return load_image(utkface_image(utkface_rows("test", limit=index + 1)[index]))


def test_weights_are_the_pinned_bytes() -> None:
    assert hashlib.sha256(retinaface.retinaface_onnx_bytes()).hexdigest() == RETINAFACE_SHA256


def test_wrong_package_bytes_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    retinaface.retinaface_onnx_bytes.cache_clear()
    monkeypatch.setattr(retinaface, "_literal_bytes", lambda source: b"not the onnx file")
    try:
        with pytest.raises(DetectorPackageError, match="retina-face"):
            retinaface.retinaface_onnx_bytes()
    finally:
        monkeypatch.undo()
        retinaface.retinaface_onnx_bytes.cache_clear()


def test_finds_faces_in_utkface(detector: RetinaFaceDetector) -> None:
    rows = utkface_rows("test", limit=60)
    found = 0
    for row in rows:
        faces = detector.detect(load_image(utkface_image(row)))
        if faces:
            found += 1
            face = faces[0]
            assert 0.6 <= face.score <= 1.0
            (lx, ly), (rx, _) = face.landmarks[0], face.landmarks[1]
            assert lx < rx, "the eye on the left of the picture comes first"
            x1, y1, x2, y2 = face.box
            assert x1 < lx < x2 and y1 < ly < y2
    assert found >= 58


def test_large_photo_is_not_squashed(detector: RetinaFaceDetector) -> None:
    face = _face()
    small = detector.detect(face)[0]
    canvas = np.full((1080, 1920, 3), 120, np.uint8)
    x0, y0 = 1500, 700
    canvas[y0 : y0 + face.shape[0], x0 : x0 + face.shape[1]] = face
    found = detector.detect(canvas)
    assert found
    expected = np.asarray(small.landmarks) + np.array([x0, y0])
    # The photo is shrunk 3x for detection, so allow 4 px of the detector's frame.
    np.testing.assert_allclose(np.asarray(found[0].landmarks), expected, atol=12.0)
    width, height = found[0].width, found[0].height
    assert 0.7 < width / height < 1.4


def test_several_faces_best_first(detector: RetinaFaceDetector) -> None:
    faces = [_face(i) for i in range(3)]
    canvas = np.full((300, 900, 3), 60, np.uint8)
    for i, face in enumerate(faces):
        canvas[50:250, 50 + 300 * i : 250 + 300 * i] = face
    found = detector.detect(canvas)
    assert len(found) == 3
    scores = [f.score for f in found]
    assert scores == sorted(scores, reverse=True)


def test_thresholds(detector: RetinaFaceDetector) -> None:
    assert detector.detect(np.full((300, 300, 3), 128, np.uint8)) == []
    face = _face()
    strict = RetinaFaceDetector(score_threshold=0.9999999)
    assert len(strict.detect(face)) <= len(detector.detect(face))
    big_only = RetinaFaceDetector(min_face_size=500)
    assert big_only.detect(face) == []
    tiny = cv2.resize(face, (24, 24))
    assert RetinaFaceDetector(min_face_size=40).detect(tiny) == []


@pytest.mark.parametrize("shape", [(1, 1, 3), (3, 2, 3), (33, 47, 3), (20000, 20, 3)])
def test_odd_sizes_do_not_crash(detector: RetinaFaceDetector, shape: tuple[int, ...]) -> None:
    assert isinstance(detector.detect(np.zeros(shape, np.uint8)), list)


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    keep = nms(boxes, np.array([0.5, 0.9, 0.7], np.float32), 0.4)
    assert keep.tolist() == [1, 2]


SIZES = ((200, 200), (480, 640), (1080, 1920), (4032, 3024))


def test_default_min_face_size_shrinks_no_further_than_max_side() -> None:
    for height, width in SIZES:
        for reduction in (1, 2, 4, 8):
            h, w = -(-height // reduction), -(-width // reduction)
            got = detection_scale(h, w, max_side=640, min_face_size=16, reduction=reduction)
            assert got == fit_scale(h, w, 640)


@pytest.mark.parametrize("min_face_size", [24, 48, 64, 100, 300])
def test_the_smallest_kept_face_stays_reliably_detectable(min_face_size: float) -> None:
    """The input is the smallest at which a face of ``min_face_size`` full-resolution
    pixels still spans RELIABLE_FACE_SIZE input pixels, and never above ``max_side``."""
    for height, width in SIZES:
        for reduction in (1, 2, 4):
            h, w = -(-height // reduction), -(-width // reduction)
            scale = detection_scale(
                h, w, max_side=640, min_face_size=min_face_size, reduction=reduction
            )
            assert scale <= fit_scale(h, w, 640)
            seen = scale * min_face_size / reduction
            assert seen >= RELIABLE_FACE_SIZE - 1e-9 or scale == fit_scale(h, w, 640)
            assert max(h, w) * scale >= 32 - 1e-9
    assert detection_scale(200, 200, max_side=640, min_face_size=64) == pytest.approx(0.625)


def test_faces_of_the_reliable_size_are_found() -> None:
    """Guards RELIABLE_FACE_SIZE: UTKFace faces pasted so that their box is that many
    pixels are found (96% of 300 when it was measured)."""
    detector = RetinaFaceDetector(min_face_size=0)
    rng = np.random.default_rng(0)
    canvas = cv2.GaussianBlur(rng.integers(60, 200, (240, 320, 3), dtype=np.uint8), (0, 0), 3)
    side = round(RELIABLE_FACE_SIZE / 0.826)  # RetinaFace's box is ~83% of a UTKFace chip
    rows = utkface_rows("test", limit=40)
    found = 0
    for index, row in enumerate(rows):
        photo = canvas.copy()
        x, y = 40 + index * 5, 60 + index * 3
        chip = load_image(utkface_image(row))
        photo[y : y + side, x : x + side] = cv2.resize(
            chip, (side, side), interpolation=cv2.INTER_AREA
        )
        centres = [
            ((d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2) for d in detector.detect(photo)
        ]
        found += any(x <= cx <= x + side and y <= cy <= y + side for cx, cy in centres)
    assert found >= 0.85 * len(rows)


def test_a_larger_min_face_size_detects_on_fewer_pixels_and_finds_the_same_faces(
    detector: RetinaFaceDetector,
) -> None:
    coarse = RetinaFaceDetector(min_face_size=64)
    for row in utkface_rows("test", limit=20):
        image = load_image(utkface_image(row))
        fine, quick = detector.detect(image), coarse.detect(image)
        assert len(quick) == len(fine)
        for a, b in zip(fine, quick):
            offsets = np.abs(np.subtract(a.landmarks, b.landmarks))
            assert offsets.mean() < 6.0  # pixels of a ~165 px face
