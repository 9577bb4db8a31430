"""YuNet: weights through faceage.hub, our own decoding, real faces, letterboxing."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from faceage.detection import Detection, get_detector
from faceage.detection.retinaface import RetinaFaceDetector, retinaface_onnx_bytes
from faceage.detection.yunet import YuNetDetector
from faceage.errors import ModelSpecError, UnknownModelError, WeightsNotFoundError
from faceage.images import load_image
from faceage.spec import load_manifest
from tests._shared import YUNET_DIR, utkface_image, utkface_rows
from tests.conftest import SeedCache
from tests.hub_server import HubServer

YUNET_FILE = load_manifest().detector("yunet").file
YUNET_PATH = YUNET_DIR / YUNET_FILE.filename
FACES = utkface_rows("test", limit=20)


@pytest.fixture(scope="module")
def yunet() -> YuNetDetector:
    return YuNetDetector(YUNET_PATH, intra_op_num_threads=1)


@pytest.fixture(scope="module")
def retinaface() -> RetinaFaceDetector:
    return RetinaFaceDetector(intra_op_num_threads=1)


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _assert_face_layout(face: Detection) -> None:
    """RetinaFace's landmark order: picture-left eye, picture-right eye, nose, mouth
    corner on the picture's left, mouth corner on the picture's right."""
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = face.landmarks
    assert lx < nx < rx
    assert mlx < nx < mrx
    assert max(ly, ry) < ny < min(mly, mry)
    x1, y1, x2, y2 = face.box
    assert all(x1 <= x <= x2 and y1 <= y <= y2 for x, y in face.landmarks)


def test_get_detector_names(yunet: YuNetDetector) -> None:
    assert get_detector(None) is None
    assert get_detector("none") is None
    assert isinstance(get_detector("retinaface", local_files_only=True), RetinaFaceDetector)
    with pytest.raises(UnknownModelError, match="'retinaface', 'yunet'"):
        get_detector("haar")


def test_get_detector_yunet_from_the_cache_offline(seed_hub_cache: SeedCache) -> None:
    cached = seed_hub_cache(YUNET_FILE.repo_id, YUNET_FILE.filename, YUNET_PATH)
    detector = get_detector("yunet", score_threshold=0.8)
    assert isinstance(detector, YuNetDetector)
    assert detector.model_path == cached
    assert detector.score_threshold == 0.8


def test_get_detector_yunet_downloads(hub_server: HubServer, offline_hf_cache: Path) -> None:
    hub_server.add_file(YUNET_FILE.repo_id or "", YUNET_FILE.filename, YUNET_PATH.read_bytes())
    detector = get_detector("yunet")
    assert isinstance(detector, YuNetDetector)
    assert offline_hf_cache in detector.model_path.parents


def test_get_detector_yunet_offline_cold_cache() -> None:
    with pytest.raises(WeightsNotFoundError, match="faceage download yunet"):
        get_detector("yunet")


def test_get_detector_yunet_from_local_dir(tmp_path: Path) -> None:
    detector = get_detector("yunet", local_dir=YUNET_DIR, cache_dir=tmp_path)
    assert isinstance(detector, YuNetDetector)
    assert detector.model_path == YUNET_PATH


@pytest.mark.parametrize("row", FACES, ids=[r["file"][:24] for r in FACES])
def test_real_faces_match_retinaface(
    row: dict[str, str], yunet: YuNetDetector, retinaface: RetinaFaceDetector
) -> None:
    image = load_image(utkface_image(row))
    found = yunet.detect(image)
    assert found, "YuNet found no face"
    best = found[0]
    assert best.score > 0.8
    assert [f.score for f in found] == sorted((f.score for f in found), reverse=True)
    _assert_face_layout(best)
    reference = retinaface.detect(image)[0]
    distance = np.linalg.norm(np.subtract(best.landmarks, reference.landmarks), axis=1)
    assert distance.mean() < 10.0
    assert _iou(best.box, reference.box) > 0.7


def test_decoding_matches_opencv(yunet: YuNetDetector) -> None:
    if not hasattr(cv2, "FaceDetectorYN"):
        pytest.skip("this OpenCV build has no FaceDetectorYN")
    reference = cv2.FaceDetectorYN.create(str(YUNET_PATH), "", (640, 640), 0.6, 0.3)
    for row in FACES[:3]:
        image = load_image(utkface_image(row))
        canvas = np.zeros((640, 640, 3), np.uint8)
        canvas[: image.shape[0], : image.shape[1]] = image
        _, faces = reference.detect(canvas)
        ours = yunet.detect(canvas)[0]
        x, y, w, h = faces[0, :4]
        expected_box = np.clip((x, y, x + w, y + h), 0, 640)  # we clip boxes to the image
        np.testing.assert_allclose(ours.box, expected_box, atol=0.01)
        np.testing.assert_allclose(np.ravel(ours.landmarks), faces[0, 4:14], atol=0.01)
        assert ours.score == pytest.approx(float(faces[0, 14]), abs=1e-4)


@pytest.mark.parametrize("shape", [(1080, 1920), (1920, 1080)], ids=["landscape", "portrait"])
def test_face_in_a_large_photo_is_found_in_place(
    shape: tuple[int, int], yunet: YuNetDetector, retinaface: RetinaFaceDetector
) -> None:
    face = cv2.resize(load_image(utkface_image(FACES[0])), (400, 400))
    photo = np.full((*shape, 3), 110, np.uint8)
    top, left = shape[0] - 520, shape[1] - 480  # near the bottom-right, far from the origin
    photo[top : top + 400, left : left + 400] = face
    found = yunet.detect(photo)
    assert len(found) == 1
    best = found[0]
    _assert_face_layout(best)
    assert all(left < x < left + 400 and top < y < top + 400 for x, y in best.landmarks)
    # Where the face alone puts its landmarks, shifted to where it was pasted. The photo is
    # shrunk 3x for the detector, so allow 6% of the face's side (2 px at the detector).
    tolerance = 0.06 * 400
    alone = np.add(yunet.detect(face)[0].landmarks, (left, top))
    assert np.linalg.norm(alone - best.landmarks, axis=1).mean() < tolerance
    # Not squashed: the box keeps a face's shape, as RetinaFace's does on the same photo.
    reference = retinaface.detect(photo)[0]
    assert _iou(best.box, reference.box) > 0.7
    distance = np.linalg.norm(np.subtract(best.landmarks, reference.landmarks), axis=1)
    assert distance.mean() < tolerance


def test_no_face_no_detection(yunet: YuNetDetector) -> None:
    rng = np.random.default_rng(0)
    assert yunet.detect(np.full((480, 640, 3), 110, np.uint8)) == []
    assert yunet.detect(rng.integers(0, 256, (300, 500, 3), dtype=np.uint8)) == []


def test_thresholds(yunet: YuNetDetector) -> None:
    image = load_image(utkface_image(FACES[0]))
    strict = YuNetDetector(YUNET_PATH, score_threshold=0.999)
    assert strict.detect(image) == []
    big_only = YuNetDetector(YUNET_PATH, min_face_size=500)
    assert big_only.detect(image) == []


def test_dynamic_size_export(yunet: YuNetDetector) -> None:
    dynamic = YuNetDetector(YUNET_DIR / "yunet_n_dynamic.onnx")
    image = load_image(utkface_image(FACES[1]))
    found = dynamic.detect(image)
    assert found
    _assert_face_layout(found[0])
    assert _iou(found[0].box, yunet.detect(image)[0].box) > 0.7


def test_other_onnx_file_is_refused(tmp_path: Path) -> None:
    wrong = tmp_path / "retinaface.onnx"
    wrong.write_bytes(retinaface_onnx_bytes())
    with pytest.raises(ModelSpecError, match="not a YuNet export"):
        YuNetDetector(wrong)
