"""The real registered models, bundled in the package, on real UTKFace test faces."""

from __future__ import annotations

import numpy as np
import pytest

import faceage
from faceage.estimator import AgeEstimator
from tests._shared import utkface_image, utkface_rows

MODELS = [spec.name for spec in faceage.list_models()]
# Every 40th test image: 53 faces across all ages, the same for every model.
ROWS = utkface_rows("test")[::40]


@pytest.fixture(scope="module", params=MODELS)
def estimator(request: pytest.FixtureRequest) -> AgeEstimator:
    # The autouse fixture has the Hub offline with an empty cache: bundled weights must do.
    return AgeEstimator.from_pretrained(request.param, local_files_only=True)


def test_loads_offline_and_names_itself(estimator: AgeEstimator) -> None:
    assert estimator.spec.name in repr(estimator)
    assert estimator.spec.file.bundled


def test_sensible_ages_on_real_faces(estimator: AgeEstimator) -> None:
    results = estimator.predict_batch([utkface_image(row) for row in ROWS])
    truth, predicted = [], []
    for row, result in zip(ROWS, results):
        assert result.ok, result.error
        if result.faces:
            truth.append(float(row["age"]))
            predicted.append(result.faces[0].age)
    assert len(predicted) >= len(ROWS) - 1
    errors = np.abs(np.array(predicted) - np.array(truth))
    # A loose bound (the measured test MAEs are in the README): it catches a broken
    # export, a wrong colour order or normalisation, or crops unlike the training ones.
    assert errors.mean() < 9.0, f"MAE {errors.mean():.2f} on {len(errors)} faces"
    # Children and the old are told apart.
    young = [p for p, t in zip(predicted, truth) if t <= 10]
    old = [p for p, t in zip(predicted, truth) if t >= 60]
    assert young and old and max(young) < min(old) + 15


def test_gender_where_the_model_has_it(estimator: AgeEstimator) -> None:
    faces = [estimator.predict(utkface_image(row)) for row in ROWS]
    if not estimator.spec.has_gender:
        assert all(f.gender is None for found in faces for f in found)
        return
    right = [
        found[0].gender == ("female" if row["gender"] == "1" else "male")
        for row, found in zip(ROWS, faces)
        if found
    ]
    assert np.mean(right) >= 0.8
    assert all(0.5 <= f.gender_probability <= 1.0 for found in faces for f in found)  # type: ignore[operator]
