"""Score millions of photos with Ray Data: one estimator per worker, one row per face.

    import ray
    from faceage.integrations.ray import FaceagePredictor

    photos = ray.data.read_binary_files("s3://bucket/photos/", include_paths=True)
    ages = photos.map_batches(
        FaceagePredictor, fn_constructor_kwargs={"model": "c3ae"}, batch_size=64,
        compute=ray.data.ActorPoolStrategy(size=4), num_cpus=1,
    )
    ages.write_parquet("s3://bucket/ages/")

:class:`FaceagePredictor` is a class because Ray Data builds a callable class once per
actor: the weights are resolved, sha256-checked and turned into onnxruntime sessions
once per worker, then reused for every batch. Its output is flat columns of plain types
with fixed fill values (NaN, -1, ``""``) so that every batch, whatever its mix of faces,
images without faces and unreadable files, maps to the same Arrow schema, and
``write_parquet`` / ``write_csv`` take it as is.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np

try:
    import ray
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "faceage.integrations.ray needs Ray Data; install it with pip install 'faceage[ray]'"
    ) from exc

from faceage.detection import FaceDetector
from faceage.estimator import DEFAULT_MODEL, AgeEstimator
from faceage.images import ColorOrder, describe_input
from faceage.intervals import DEFAULT_COVERAGE
from faceage.results import ImageResult
from faceage.runtime import ProviderList

logger = logging.getLogger(__name__)

#: Output columns, in order (guarded by tests/test_ray.py::test_schema_is_stable).
OUTPUT_COLUMNS: Final = (
    "path",
    "face_index",
    "age",
    "age_low",
    "age_high",
    "age_coverage",
    "age_std",
    "gender",
    "gender_probability",
    "x1",
    "y1",
    "x2",
    "y2",
    "detection_score",
    "width",
    "height",
    "model",
    "error",
    "error_type",
)
_FLOAT_COLUMNS: Final = (
    "age",
    "age_low",
    "age_high",
    "age_coverage",
    "age_std",
    "gender_probability",
    "x1",
    "y1",
    "x2",
    "y2",
    "detection_score",
)
_INT_COLUMNS: Final = ("face_index", "width", "height")


class FaceagePredictor:
    """A callable class for ``ray.data.Dataset.map_batches`` that estimates ages.

    Each input row is one image, found in the first of these columns the batch has:
    ``bytes_column`` (encoded bytes, as from ``read_binary_files``), ``image_column``
    (decoded ``HxWx3`` arrays in ``color_order``, as from ``read_images``) or
    ``path_column`` (file paths the worker can read). A batch with a single column of
    another name (``from_items(paths)`` gives ``item``) is read as paths.
    ``path_column``, when present, also names the image in the output.

    Each output row is one face (``face_index`` 0, 1, ... best detection first). An
    image without a face, or that cannot be read, still gets exactly one row, with
    ``face_index`` -1 and, for a bad image, ``error`` and ``error_type`` filled.
    Missing floats are NaN, missing ints -1 and missing text ``""``. Columns are
    :data:`OUTPUT_COLUMNS` plus ``keep_columns``. A pandas batch gives a pandas
    DataFrame back; any other batch a dict of numpy arrays.

    Args:
        model: a registered model name, ``hf-hub:owner/repo[@rev]`` or a local
            directory with ``model.onnx`` + ``faceage.json``.
        detector, providers, max_faces, flip, max_batch_size, detector_options,
            local_files_only, cache_dir, weights_dir, age_coverage: as for
            :meth:`faceage.AgeEstimator.from_pretrained`. With ``providers=None`` a Ray
            actor runs on CUDA when Ray gave it a GPU (``num_gpus``) and onnxruntime-gpu
            is installed, and on the CPU otherwise (Ray leaves a CPU actor's GPUs
            visible; it must not crowd onto them unscheduled).
        intra_op_num_threads: onnxruntime threads per call; None uses the number of
            CPUs Ray gave this actor (``num_cpus``, at least 1), so workers do not
            oversubscribe the node.
        path_column, bytes_column, image_column: input column names.
        color_order: channel order of arrays in ``image_column`` (``read_images`` gives
            ``"rgb"``).
        keep_columns: input columns copied to every output row of their image (an id
            to join on, say).

    Raises:
        ValueError: a ``keep_columns`` name clashes with an output column.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        detector: str | FaceDetector | None = "retinaface",
        providers: ProviderList | None = None,
        intra_op_num_threads: int | None = None,
        max_faces: int | None = None,
        flip: bool | None = None,
        max_batch_size: int = 64,
        detector_options: dict[str, object] | None = None,
        local_files_only: bool | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        weights_dir: str | os.PathLike[str] | None = None,
        path_column: str = "path",
        bytes_column: str = "bytes",
        image_column: str = "image",
        color_order: ColorOrder = "rgb",
        keep_columns: Sequence[str] = (),
        age_coverage: float = DEFAULT_COVERAGE,
    ) -> None:
        clashes = sorted(set(keep_columns) & set(OUTPUT_COLUMNS))
        if clashes:
            raise ValueError(
                f"keep_columns {clashes} clash with faceage's output columns; rename them "
                "first, e.g. with Dataset.rename_columns"
            )
        if color_order not in ("bgr", "rgb"):
            raise ValueError(f"color_order must be 'bgr' or 'rgb', got {color_order!r}")
        resources = _actor_resources()
        threads = intra_op_num_threads
        if threads is None and resources.get("CPU"):
            threads = max(1, math.floor(resources["CPU"]))
        if providers is None and resources and not resources.get("GPU"):
            providers = ["CPUExecutionProvider"]
        self.estimator = AgeEstimator.from_pretrained(
            model,
            detector=detector,
            providers=providers,
            intra_op_num_threads=threads,
            local_files_only=local_files_only,
            cache_dir=cache_dir,
            weights_dir=weights_dir,
            max_faces=max_faces,
            flip=flip,
            max_batch_size=max_batch_size,
            detector_options=detector_options,
            age_coverage=age_coverage,
        )
        self.model_name = self.estimator.spec.name
        #: What the worker resolved: providers (None: onnxruntime's default) and threads.
        self.providers = None if providers is None else list(providers)
        self.intra_op_num_threads = threads
        # Ray runs one actor per slice of the cluster's CPUs: an actor given its CPUs keeps
        # to its thread, as before; outside Ray resources it uses a thread per core.
        self.workers: int | None = 1 if resources.get("CPU") else None
        self.path_column = path_column
        self.bytes_column = bytes_column
        self.image_column = image_column
        self.color_order: ColorOrder = color_order
        self.keep_columns = tuple(keep_columns)
        logger.info(
            "faceage worker ready: %r, providers %s, %s onnxruntime threads",
            self.estimator,
            self.providers or "default",
            threads or "default",
        )

    def __repr__(self) -> str:
        return f"FaceagePredictor({self.estimator!r})"

    def __call__(self, batch: Any) -> Any:
        """Score one batch (numpy dict, pandas DataFrame or pyarrow Table); see the class."""
        names = _column_names(batch)
        missing = [name for name in self.keep_columns if name not in names]
        if missing:
            raise ValueError(
                f"keep_columns names {missing}, which this batch lacks; its columns are "
                f"{sorted(names)}"
            )
        sources, images = self._inputs(batch, names)
        results = self._score(sources, images)
        columns, origin = _flatten(results, sources, self.model_name)
        for name in self.keep_columns:
            columns[name] = _column(batch, name)[origin]
        if type(batch).__module__.split(".")[0] == "pandas":
            return _to_pandas(columns)
        return columns

    def _inputs(self, batch: Any, names: list[str]) -> tuple[list[str], list[Any]]:
        paths = list(_column(batch, self.path_column)) if self.path_column in names else None
        for column in (self.bytes_column, self.image_column):
            if column in names:
                images = list(_column(batch, column))
                if paths is None:
                    return [describe_input(image) for image in images], images
                return [str(path) for path in paths], images
        if paths is None and len(names) == 1:
            paths = list(_column(batch, names[0]))
        if paths is None:
            raise ValueError(
                f"no image column in this batch (columns: {sorted(names)}); give encoded "
                f"bytes in {self.bytes_column!r}, arrays in {self.image_column!r} or file "
                f"paths in {self.path_column!r}, or name your columns with "
                "FaceagePredictor(bytes_column=..., image_column=..., path_column=...)"
            )
        return [str(path) for path in paths], paths

    def _score(self, sources: list[str], images: list[Any]) -> list[ImageResult]:
        # Named by their paths, so a bad file's error names it, not "<N bytes>".
        return self.estimator.predict_batch(
            images, color_order=self.color_order, sources=sources, workers=self.workers
        )


def score_dataset(
    dataset: ray.data.Dataset,
    *,
    batch_size: int = 64,
    concurrency: int | tuple[int, int] = 1,
    num_cpus: float = 1,
    num_gpus: float | None = None,
    batch_format: str = "numpy",
    **predictor_options: Any,
) -> ray.data.Dataset:
    """``dataset.map_batches(FaceagePredictor, ...)`` with sensible defaults.

    Args:
        dataset: rows of images (see :class:`FaceagePredictor` for the columns).
        batch_size: images per call.
        concurrency: number of actors, or ``(min, max)`` for an autoscaling pool.
        num_cpus, num_gpus: resources of each actor. On a node whose every CPU is held
            by actors the read tasks cannot run: keep ``concurrency * num_cpus`` below
            the CPUs of the cluster.
        batch_format: ``"numpy"`` or ``"pandas"``.
        predictor_options: keyword arguments of :class:`FaceagePredictor`, checked here
            so that a typo fails now rather than inside every worker.

    Returns:
        The lazy dataset of face rows; write it with ``write_parquet`` or ``write_csv``.
    """
    inspect.signature(FaceagePredictor).bind(**predictor_options)  # TypeError on a typo
    if isinstance(concurrency, int):
        pool = ray.data.ActorPoolStrategy(size=concurrency)
    else:
        pool = ray.data.ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1])
    return dataset.map_batches(
        FaceagePredictor,
        fn_constructor_kwargs=predictor_options,
        batch_size=batch_size,
        batch_format=batch_format,
        compute=pool,
        num_cpus=num_cpus,
        num_gpus=num_gpus,
    )


def _actor_resources() -> dict[str, float]:
    """The resources Ray assigned to the current actor (``{}`` outside a Ray worker)."""
    try:
        context: Any = ray.get_runtime_context()  # untyped in Ray
        if context.worker.mode != ray.WORKER_MODE:
            return {}
        return dict(context.get_assigned_resources())
    except Exception:  # an older Ray without these calls: keep the defaults
        return {}


def _column_names(batch: Any) -> list[str]:
    if hasattr(batch, "column_names"):  # pyarrow.Table
        return list(batch.column_names)
    if isinstance(batch, Mapping) or hasattr(batch, "columns"):  # numpy dict, DataFrame
        return [str(name) for name in batch]
    raise TypeError(
        f"cannot read a batch of type {type(batch).__name__}; use map_batches with "
        "batch_format='numpy' or 'pandas'"
    )


def _column(batch: Any, name: str) -> np.ndarray:
    if hasattr(batch, "column_names"):
        return np.asarray(batch.column(name).to_numpy(zero_copy_only=False))
    values = batch[name]
    return values.to_numpy() if hasattr(values, "to_numpy") else np.asarray(values)


def _flatten(
    results: Sequence[ImageResult], sources: Sequence[str], model: str
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Columns of the face rows, and the input row each output row came from."""
    rows: dict[str, list[Any]] = {name: [] for name in OUTPUT_COLUMNS}
    origin: list[int] = []
    for index, (result, source) in enumerate(zip(results, sources)):
        for flat in result.face_rows():
            origin.append(index)
            flat.update(path=source, model=model)
            for name in OUTPUT_COLUMNS:
                value = flat[name]
                if value is None:  # one stable Arrow schema: NaN, -1 or "" for missing
                    value = (
                        math.nan if name in _FLOAT_COLUMNS else (-1 if name in _INT_COLUMNS else "")
                    )
                rows[name].append(value)
    columns: dict[str, np.ndarray] = {}
    for name in OUTPUT_COLUMNS:
        if name in _FLOAT_COLUMNS:
            columns[name] = np.asarray(rows[name], dtype=np.float64)
        elif name in _INT_COLUMNS:
            columns[name] = np.asarray(rows[name], dtype=np.int64)
        else:  # fixed-width unicode: an empty batch is still a string column, never null
            columns[name] = np.asarray(rows[name], dtype=np.str_)
    return columns, np.asarray(origin, dtype=np.int64)


def _to_pandas(columns: dict[str, np.ndarray]) -> Any:
    """A DataFrame of Arrow-backed columns.

    Ray turns an all-NaN numpy-backed pandas column into Arrow's null type, so batches
    without any ``age_std`` would get another schema than batches with one; Arrow-backed
    columns keep their type.
    """
    import pandas as pd
    import pyarrow as pa

    table = pa.table({name: pa.array(values) for name, values in columns.items()})
    return table.to_pandas(types_mapper=pd.ArrowDtype)
