"""Alignment and context crops: geometry, padding, and real faces from UTKFace."""

from __future__ import annotations

import numpy as np
import pytest

from faceage.alignment import (
    BORDER_VALUE,
    CANONICAL_LANDMARKS,
    align_face,
    alignment_matrix,
    context_crops,
    crop_landmarks,
    similarity_transform,
    template_landmarks,
)
from faceage.detection.retinaface import RetinaFaceDetector
from faceage.images import load_image
from tests._shared import utkface_image, utkface_rows


def _similarity(angle: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    return np.array([[c, -s, shift[0]], [s, c, shift[1]]])


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def test_similarity_transform_recovers_a_known_transform() -> None:
    src = CANONICAL_LANDMARKS * 100
    truth = _similarity(0.3, 1.7, (12.0, -5.0))
    estimated = similarity_transform(src, _apply(truth, src))
    np.testing.assert_allclose(estimated, truth, atol=1e-9)


def test_similarity_transform_never_mirrors() -> None:
    src = CANONICAL_LANDMARKS * 100
    mirrored = src * np.array([-1.0, 1.0])
    matrix = similarity_transform(src, mirrored)
    assert np.linalg.det(matrix[:, :2]) > 0


def _umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The SVD form of the proper-rotation least-squares similarity (the 0.1 code)."""
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    u, singular, vt = np.linalg.svd(dst_c.T @ src_c / len(src))
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1.0
    scale = np.trace(np.diag(singular) @ sign) / ((src_c**2).sum() / len(src))
    linear = scale * (u @ sign @ vt)
    return np.hstack([linear, (dst_mean - linear @ src_mean)[:, None]])


def test_closed_form_matches_the_svd_form_on_noisy_and_mirrored_points() -> None:
    rng = np.random.default_rng(0)
    for trial in range(500):
        src = rng.uniform(0, 500, (5, 2))
        dst = rng.uniform(0, 64, (5, 2)) if trial % 2 else src[:, ::-1] * rng.uniform(0.1, 3)
        np.testing.assert_allclose(similarity_transform(src, dst), _umeyama(src, dst), atol=1e-9)


def test_degenerate_landmarks_are_refused() -> None:
    with pytest.raises(ValueError, match="zero size"):
        similarity_transform(np.ones((5, 2)), CANONICAL_LANDMARKS)


def test_context_crops_geometry() -> None:
    face = _apply(_similarity(-0.2, 300.0, (80.0, 40.0)), CANONICAL_LANDMARKS)
    scales = (0.8, 1.0, 1.25)
    image = np.full((500, 500, 3), 90, np.uint8)
    crops = context_crops(image, face, size=64, scales=scales)
    assert crops.shape == (3, 64, 64, 3) and crops.dtype == np.uint8
    for scale in scales:
        mapped = _apply(alignment_matrix(face, size=64, scale=scale), face)
        np.testing.assert_allclose(mapped, template_landmarks(64, scale), atol=1e-6)
        eye_distance = np.linalg.norm(mapped[1] - mapped[0])
        assert eye_distance == pytest.approx(0.4 * 64 / scale)


def test_outside_the_image_is_black() -> None:
    # A face in the top-left corner: the crop reaches beyond the image edge.
    image = np.full((200, 200, 3), 255, np.uint8)
    face = CANONICAL_LANDMARKS * 100 - 40
    crop = align_face(image, face, size=64, scale=1.25)
    assert tuple(crop[0, 0]) == BORDER_VALUE
    assert tuple(crop[-1, -1]) == (255, 255, 255)


def test_crop_landmarks_are_the_template_of_an_aligned_crop() -> None:
    rng = np.random.default_rng(1)
    crop = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    again = align_face(crop, crop_landmarks(64, 64), size=64, scale=1.0)
    np.testing.assert_array_equal(again, crop)


@pytest.fixture(scope="module")
def detector() -> RetinaFaceDetector:
    return RetinaFaceDetector()


@pytest.mark.parametrize("row", utkface_rows("test", limit=8), ids=lambda r: r["file"][:12])
def test_aligned_real_faces_land_on_the_template(
    row: dict[str, str], detector: RetinaFaceDetector
) -> None:
    image = load_image(utkface_image(row))
    faces = detector.detect(image)
    assert faces, "RetinaFace found no face in a UTKFace chip"
    # Align with room around the face, then detect again inside the aligned crop: the
    # eyes the detector finds there must sit on the template within a few pixels (3% of
    # the side: 2 px of a 64 px model crop; the fit spreads error over all five points).
    size, scale = 256, 1.6
    crop = align_face(image, faces[0].landmarks, size=size, scale=scale)
    again = detector.detect(crop)
    assert again, "no face found in the aligned crop"
    eyes = np.asarray(again[0].landmarks[:2])
    np.testing.assert_allclose(eyes, template_landmarks(size, scale)[:2], atol=0.03 * size)
