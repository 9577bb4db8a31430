"""Models shared outside the registry: ``hf-hub:owner/repo[@revision]`` or a folder.

Either holds ``faceage.json`` (the spec, validated like a manifest entry, unknown keys
refused) and the ONNX file it names. Files come through :mod:`faceage.hub`, so the Hub
path, the cache, offline mode and sha256 pins (when the spec has one) work as for
registered models. Nothing but the ONNX graph is ever run.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

from faceage.errors import UnknownModelError, WeightsNotFoundError
from faceage.hub import hub_offline, resolve_from_hub, verify_local_file
from faceage.inference import check_graph_matches_spec
from faceage.runtime import create_session
from faceage.spec import SPEC_FILENAME, ModelSpec, WeightFile, load_spec_file

#: Prefix of a user model on the Hub: ``hf-hub:owner/repo[@revision]``.
HF_HUB_PREFIX = "hf-hub:"
#: The ONNX file a user model's spec points at unless it names another.
DEFAULT_USER_MODEL_FILENAME = "model.onnx"

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def parse_hub_ref(ref: str) -> tuple[str, str | None]:
    """``hf-hub:owner/repo[@revision]`` -> ``(repo_id, revision or None)``."""
    body = ref[len(HF_HUB_PREFIX) :] if ref.startswith(HF_HUB_PREFIX) else ref
    repo_id, at, revision = body.partition("@")
    if not _REPO_ID.match(repo_id) or (at and not revision):
        raise UnknownModelError(
            f"{ref!r} is not a Hub model reference; write 'hf-hub:owner/repo' or "
            "'hf-hub:owner/repo@revision'"
        )
    return repo_id, revision or None


def resolve_user_model(
    ref: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool | None = None,
    force_download: bool = False,
) -> tuple[ModelSpec, Path]:
    """A model shared outside the registry: ``hf-hub:owner/repo[@revision]`` or a folder.

    Either holds ``faceage.json`` (the spec) and the ONNX file it names (``model.onnx``
    by default). Only the JSON is parsed (unknown keys are refused) and only the ONNX
    graph is ever run.

    Returns:
        The spec (its ``file`` pointing at the repo) and the local path of the ONNX file.

    Raises:
        ModelSpecError: the spec is invalid or the graph's input/output names differ.
        WeightsNotFoundError, WeightsIntegrityError: as :func:`resolve_weight_file`.
    """
    if not ref.startswith(HF_HUB_PREFIX):
        folder = Path(ref).expanduser()
        if not folder.is_dir():
            raise UnknownModelError(
                f"{ref!r} is neither a registry model, 'hf-hub:owner/repo' nor a folder "
                f"holding {SPEC_FILENAME} and {DEFAULT_USER_MODEL_FILENAME}"
            )
        spec_path = folder / SPEC_FILENAME
        if not spec_path.is_file():
            raise WeightsNotFoundError(f"{folder} has no {SPEC_FILENAME} describing its model")
        spec = load_spec_file(spec_path)
        onnx_path = folder / spec.file.filename
        if not onnx_path.is_file():
            raise WeightsNotFoundError(
                f"{folder} has no {spec.file.filename}, the ONNX file {SPEC_FILENAME} names"
            )
        verify_local_file(onnx_path, spec.file, spec.name, str(folder))
    else:
        repo_id, revision = parse_hub_ref(ref)
        offline = hub_offline() if local_files_only is None else bool(local_files_only)
        cache = Path(cache_dir).expanduser() if cache_dir is not None else None
        options: dict[str, Any] = {
            "name": ref,
            "cache_dir": cache,
            "offline": offline,
            "force_download": force_download,
        }
        spec_file = WeightFile(filename=SPEC_FILENAME, repo_id=repo_id, revision=revision)
        spec_path = resolve_from_hub(spec_file, **options)
        spec = load_spec_file(spec_path, name=ref)
        onnx_file = dataclasses.replace(
            spec.file, repo_id=repo_id, revision=revision, bundled=False
        )
        spec = dataclasses.replace(spec, file=onnx_file)
        onnx_path = resolve_from_hub(onnx_file, **options)
    # Load the graph once now, so a mismatch is reported before anything else is set up.
    session = create_session(onnx_path, providers=["CPUExecutionProvider"])
    check_graph_matches_spec(session, spec, source=str(onnx_path))
    return spec, onnx_path
