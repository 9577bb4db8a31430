"""faceage.integrations.ray: Ray Data rows equal AgeEstimator's results, schema stays fixed.

One local Ray cluster (2 CPUs, no dashboard) serves the whole module; the pipelines run
the tiny ONNX model from tests/tiny_models.py behind the real RetinaFace detector over
200 UTKFace test images plus one file that is not an image.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("pyarrow")

from faceage import AgeEstimator, UnknownModelError, WeightsNotFoundError  # noqa: E402
from faceage.images import load_image  # noqa: E402
from faceage.integrations.ray import OUTPUT_COLUMNS, FaceagePredictor, score_dataset  # noqa: E402
from tests._shared import utkface_image, utkface_rows  # noqa: E402
from tests.tiny_models import tiny_age_interval, write_tiny_model  # noqa: E402

pytestmark = [
    pytest.mark.ray,
    # Ray Data's own DataContext warns about its own deprecated settings; not ours to fix.
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*"),
]

NUM_IMAGES = 200
BAD_FILE = "zz_not_an_image.jpg"
REAL_MODEL = "c3ae"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ray")


@pytest.fixture(scope="module")
def model_dir(workdir: Path) -> Path:
    return write_tiny_model(workdir / "tiny", gender=True, age_interval=tiny_age_interval())


@pytest.fixture(scope="module")
def image_dir(workdir: Path) -> Path:
    rows = utkface_rows("test", limit=NUM_IMAGES)
    if len(rows) < NUM_IMAGES or not utkface_image(rows[0]).exists():
        pytest.skip("UTKFace test images not found in ../shared")
    folder = workdir / "images"
    folder.mkdir()
    for row in rows:
        shutil.copyfile(utkface_image(row), folder / row["file"])
    (folder / BAD_FILE).write_text("this is text, not a JPEG\n")
    return folder


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    if ray.is_initialized():
        pytest.skip("a Ray cluster is already running in this process")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        # Workers inherit nothing from the per-test offline fixture: set it for them here.
        runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}},
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def expected(model_dir: Path, image_dir: Path) -> dict[str, Any]:
    """What AgeEstimator.predict_folder says about the same files, by path."""
    estimator = AgeEstimator.from_pretrained(str(model_dir))
    return {result.source: result for result in estimator.predict_folder(image_dir)}


@pytest.fixture(scope="module")
def scored(cluster: None, model_dir: Path, image_dir: Path) -> Any:
    """read_binary_files -> map_batches on a pool of 2 actors, materialized once."""
    files = ray.data.read_binary_files(str(image_dir), include_paths=True)
    faces = files.map_batches(
        FaceagePredictor,
        fn_constructor_kwargs={"model": str(model_dir)},
        batch_size=32,
        compute=ray.data.ActorPoolStrategy(size=2),
        num_cpus=0.5,  # two actors leave one CPU for the read tasks
    )
    return faces.materialize()


def rows_by_path(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        grouped[str(row["path"])].append(row)
    return {
        path: sorted(group, key=lambda r: int(r["face_index"])) for path, group in grouped.items()
    }


def assert_rows_match(rows: list[dict[str, Any]], expected: dict[str, Any]) -> None:
    grouped = rows_by_path(rows)
    assert set(grouped) == set(expected)
    assert len(rows) == sum(max(1, len(r.faces)) for r in expected.values())
    for path, result in expected.items():
        got = grouped[path]
        if not result.ok:
            (row,) = got
            assert row["face_index"] == -1
            assert row["error"] == result.error
            assert row["error_type"] == result.error_type
            assert math.isnan(row["age"]) and row["gender"] == ""
            continue
        assert row_errors(got) == [""] * len(got)
        if not result.faces:
            (row,) = got
            assert row["face_index"] == -1 and math.isnan(row["age"])
            continue
        assert [r["face_index"] for r in got] == list(range(len(result.faces)))
        for row, face in zip(got, result.faces):
            assert row["age"] == pytest.approx(face.age, abs=1e-4)
            assert row["gender"] == (face.gender or "")
            assert same_number(row["gender_probability"], face.gender_probability)
            assert same_number(row["age_std"], face.age_std)
            for key in ("age_low", "age_high", "age_coverage"):
                assert same_number(row[key], getattr(face, key)), key
            box = [row[k] for k in ("x1", "y1", "x2", "y2")]
            assert box == pytest.approx(list(face.box), abs=1e-3)
            assert row["detection_score"] == pytest.approx(face.detection_score, abs=1e-4)
            assert (row["width"], row["height"]) == (result.width, result.height)


def same_number(value: float, expected: float | None) -> bool:
    """NaN in a row stands for None in a Face."""
    if expected is None:
        return math.isnan(value)
    return bool(value == pytest.approx(expected, abs=1e-4))


def row_errors(rows: list[dict[str, Any]]) -> list[str]:
    return [str(r["error"]) for r in rows]


def test_import_faceage_never_imports_ray() -> None:
    code = (
        "import sys, faceage, faceage.integrations; faceage.AgeEstimator; "
        "import faceage.estimator, faceage.batch; "
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_map_batches_rows_equal_predict_folder(scored: Any, expected: dict[str, Any]) -> None:
    assert len(expected) == NUM_IMAGES + 1
    assert [p for p, r in expected.items() if not r.ok] == [
        p for p in expected if p.endswith(BAD_FILE)
    ]
    assert_rows_match(scored.take_all(), expected)


def test_schema_is_stable_and_writers_take_it(scored: Any, workdir: Path) -> None:
    import pyarrow as pa
    import pyarrow.csv
    import pyarrow.parquet as pq

    schema = scored.schema()
    assert tuple(schema.names) == OUTPUT_COLUMNS
    types = dict(zip(schema.names, schema.types))
    assert types["age"] == pa.float64() and types["age_std"] == pa.float64()
    assert types["face_index"] == pa.int64()
    assert pa.types.is_string(types["gender"]) and pa.types.is_string(types["error"])

    scored.write_parquet(str(workdir / "parquet"))
    table = pq.read_table(str(workdir / "parquet"))
    assert table.num_rows == scored.count()
    assert tuple(table.column_names) == OUTPUT_COLUMNS

    scored.write_csv(str(workdir / "csv"))
    parts = sorted((workdir / "csv").glob("*.csv"))
    assert sum(pyarrow.csv.read_csv(part).num_rows for part in parts) == scored.count()


def test_pandas_batches_of_paths_match_numpy(
    cluster: None, model_dir: Path, image_dir: Path, expected: dict[str, Any]
) -> None:
    pytest.importorskip("pandas")
    paths = sorted(expected)[:24] + [p for p in expected if p.endswith(BAD_FILE)]
    dataset = ray.data.from_items(paths)  # a single "item" column of path strings
    faces = score_dataset(
        dataset,
        model=str(model_dir),
        batch_size=8,
        num_cpus=0.5,
        batch_format="pandas",
        keep_columns=["item"],
    )
    rows = faces.take_all()
    assert all(row["item"] == row["path"] for row in rows)
    assert_rows_match(rows, {p: expected[p] for p in paths})


def test_real_registered_model_matches_predict_batch(cluster: None, image_dir: Path) -> None:
    try:
        estimator = AgeEstimator.from_pretrained(REAL_MODEL, local_files_only=True)
    except (UnknownModelError, WeightsNotFoundError) as exc:
        pytest.skip(f"{REAL_MODEL} weights not available offline: {exc}")
    paths = sorted(str(p) for p in image_dir.iterdir())[-24:]  # includes the bad file
    expected = {r.source: r for r in estimator.predict_batch(paths)}
    faces = score_dataset(
        ray.data.from_items([{"path": p} for p in paths]),
        model=REAL_MODEL,
        local_files_only=True,
        batch_size=8,
        num_cpus=0.5,
    )
    assert_rows_match(faces.take_all(), expected)


def test_actor_takes_threads_and_providers_from_its_ray_resources(
    cluster: None, model_dir: Path
) -> None:
    @ray.remote(num_cpus=0.5)
    def resolved(model: str, **options: Any) -> tuple[Any, Any]:
        predictor = FaceagePredictor(model, **options)
        return predictor.intra_op_num_threads, predictor.providers

    # No GPU from Ray: CPU only, even where onnxruntime-gpu could see one.
    assert ray.get(resolved.remote(str(model_dir))) == (1, ["CPUExecutionProvider"])
    explicit = resolved.remote(
        str(model_dir), intra_op_num_threads=2, providers=["CPUExecutionProvider"]
    )
    assert ray.get(explicit) == (2, ["CPUExecutionProvider"])
    # Outside Ray nothing is decided for the user.
    local = FaceagePredictor(str(model_dir))
    assert (local.intra_op_num_threads, local.providers) == (None, None)


def test_score_dataset_rejects_a_typo_before_running(cluster: None) -> None:
    with pytest.raises(TypeError):
        score_dataset(ray.data.from_items(["a.jpg"]), modle="c3ae")


# -- direct calls: the class is an ordinary callable, no cluster needed -------------------


@pytest.fixture(scope="module")
def predictor(model_dir: Path) -> FaceagePredictor:
    return FaceagePredictor(str(model_dir), intra_op_num_threads=1)


def test_decoded_rgb_arrays_and_keep_columns(
    predictor: FaceagePredictor, model_dir: Path, expected: dict[str, Any]
) -> None:
    paths = sorted(expected)[:5]
    images = np.stack([load_image(p)[:, :, ::-1] for p in paths])  # BGR -> RGB, as read_images
    out = predictor({"image": images, "path": np.asarray(paths), "id": np.arange(5) + 100})
    assert list(out) == [*OUTPUT_COLUMNS]  # "id" is not kept unless asked for
    rows = [dict(zip(out, values)) for values in zip(*out.values())]
    assert_rows_match(rows, {p: expected[p] for p in paths})

    keeper = FaceagePredictor(str(model_dir), intra_op_num_threads=1, keep_columns=["id"])
    out = keeper({"image": images, "path": np.asarray(paths), "id": np.arange(5) + 100})
    assert out["id"].tolist() == [100 + paths.index(p) for p in out["path"]]


def test_bytes_without_paths_and_an_empty_batch(
    predictor: FaceagePredictor, image_dir: Path
) -> None:
    data = [(image_dir / BAD_FILE).read_bytes(), b""]
    out = predictor({"bytes": np.asarray(data, dtype=object)})
    assert out["path"].tolist() == [f"<{len(data[0])} bytes>", "<0 bytes>"]
    assert out["error_type"].tolist() == ["ImageDecodeError", "ImageDecodeError"]

    empty = predictor({"path": np.asarray([], dtype=str)})
    assert list(empty) == [*OUTPUT_COLUMNS]
    assert all(len(column) == 0 for column in empty.values())
    assert empty["age"].dtype == np.float64 and empty["face_index"].dtype == np.int64
    assert empty["path"].dtype.kind == "U"


def test_pandas_batch_gives_arrow_backed_frame(
    predictor: FaceagePredictor, image_dir: Path
) -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"path": [str(image_dir / BAD_FILE)]})
    out = predictor(frame)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == [*OUTPUT_COLUMNS]
    # All-NaN columns stay double (numpy-backed ones would turn into Arrow's null type).
    assert str(out["age_std"].dtype) == "double[pyarrow]"
    assert out["error_type"].tolist() == ["ImageDecodeError"]


def test_helpful_errors(predictor: FaceagePredictor, model_dir: Path) -> None:
    with pytest.raises(ValueError, match="no image column"):
        predictor({"a": np.zeros(1), "b": np.zeros(1)})
    with pytest.raises(ValueError, match="clash"):
        FaceagePredictor(str(model_dir), keep_columns=["age"])
    keeper = FaceagePredictor(str(model_dir), intra_op_num_threads=1, keep_columns=["id"])
    with pytest.raises(ValueError, match="lacks"):
        keeper({"path": np.asarray(["a.jpg"])})
