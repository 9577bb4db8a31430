"""The only module that creates onnxruntime sessions.

A session is created once per model and reused; ``InferenceSession.run`` is safe to
call from many threads at once, so estimators share theirs without a lock.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import onnxruntime as ort

from faceage import _env
from faceage.errors import ModelSpecError

logger = logging.getLogger(__name__)

ProviderList = Sequence[str | tuple[str, dict[str, object]]]


def default_providers() -> list[str]:
    """CUDA when onnxruntime-gpu can use it, always ending in the CPU provider."""
    available = ort.get_available_providers()
    preferred = [p for p in ("CUDAExecutionProvider",) if p in available]
    return [*preferred, "CPUExecutionProvider"]


def create_session(
    model: str | os.PathLike[str] | bytes,
    *,
    providers: ProviderList | None = None,
    intra_op_num_threads: int | None = None,
    inter_op_num_threads: int | None = None,
    allow_spinning: bool | None = None,
) -> ort.InferenceSession:
    """Create an onnxruntime session for an ONNX file path or serialized bytes.

    Args:
        model: path to an ``.onnx`` file, or its bytes.
        providers: execution providers in order of preference; defaults to
            :func:`default_providers`.
        intra_op_num_threads: threads inside one operator (0 or None lets
            onnxruntime choose, which is one per physical core).
        inter_op_num_threads: threads across independent operators.
        allow_spinning: let idle intra-op threads busy-wait for the next call
            (onnxruntime's own default); None reads ``$FACEAGE_ORT_SPINNING`` ("1" or
            "0"), which defaults to off: a prediction takes turns between the detector's
            session, one or more age models' sessions and Python, and threads spinning
            in one session take the cores the next one needs (measured by
            ``python -m benchmarks.spin``; figures in the README).
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: onnxruntime warnings are not the user's business
    if intra_op_num_threads is not None:
        options.intra_op_num_threads = int(intra_op_num_threads)
    if inter_op_num_threads is not None:
        options.inter_op_num_threads = int(inter_op_num_threads)
    spin = _env.ort_spinning() if allow_spinning is None else allow_spinning
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    chosen = list(providers) if providers is not None else default_providers()
    source: str | bytes = model if isinstance(model, bytes) else os.fspath(Path(model))
    try:
        session = ort.InferenceSession(source, sess_options=options, providers=chosen)
    except (ValueError, OSError):
        raise  # bad arguments (an unknown provider, a missing file) keep their own type
    except Exception as exc:  # onnxruntime's own, untyped load errors (InvalidProtobuf, ...)
        name = "<bytes>" if isinstance(source, bytes) else source
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelSpecError(
            f"{name} is not an ONNX model onnxruntime can load ({detail}); "
            "check the file, or re-export the model"
        ) from exc
    logger.debug(
        "onnxruntime session for %s on %s",
        "<bytes>" if isinstance(model, bytes) else source,
        session.get_providers(),
    )
    return session
