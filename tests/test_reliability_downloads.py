"""Reliability, weights side: what tests/test_hub.py does not already prove.

Bad bytes anywhere (cache, ``$FACEAGE_WEIGHTS_DIR``, bundled, a half-finished download)
are refused by sha256 or replaced by a fresh download, never used; a network that dies,
stalls or answers slowly ends in one clear error after bounded retries; user models are
data plus an ONNX graph, and nothing else is ever run (no pickle, no unknown spec keys).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import time
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import constants as hf_constants

from faceage import hub, user_models
from faceage.cli import main
from faceage.errors import ModelSpecError, WeightsIntegrityError, WeightsNotFoundError
from faceage.estimator import AgeEstimator
from faceage.spec import load_spec_file
from tests.conftest import SeedCache
from tests.hub_server import HubServer
from tests.test_hub import FILENAME, REPO, YUNET, YUNET_BYTES, _cached_files, _tampered, resolve
from tests.test_hub import yunet_hub as yunet_hub  # the fixture, re-exported
from tests.tiny_models import build_tiny_age_onnx, tiny_spec_dict, write_tiny_model

BAD_COPIES = {
    "tampered": _tampered(YUNET_BYTES),
    "truncated": YUNET_BYTES[: len(YUNET_BYTES) // 2],
    "empty": b"",
    "html-error-page": b"<html><body>502 Bad Gateway</body></html>",
}


def _blobs(cache: Path) -> list[Path]:
    return sorted(p for p in cache.rglob("blobs/*") if p.is_file())


def _snapshots(cache: Path) -> list[Path]:
    return sorted(p for p in cache.rglob("snapshots/*/*") if p.exists() or p.is_symlink())


# --- bad bytes on disk ------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(BAD_COPIES))
def test_bad_cached_copy_is_replaced_and_the_cache_left_consistent(
    yunet_hub: HubServer, seed_hub_cache: SeedCache, offline_hf_cache: Path, kind: str
) -> None:
    seed_hub_cache(REPO, FILENAME, BAD_COPIES[kind])
    path = resolve()
    assert path.read_bytes() == YUNET_BYTES
    # One blob (the good one, named by its sha256 like the Hub's ETag), one snapshot link.
    assert [p.name for p in _blobs(offline_hf_cache)] == [YUNET.file.sha256]
    (snapshot,) = _snapshots(offline_hf_cache)
    assert snapshot.resolve() == _blobs(offline_hf_cache)[0]
    assert yunet_hub.state.count("GET") == 1
    hub.clear_verification_cache()
    assert resolve() == path and yunet_hub.state.count("GET") == 1  # now a cache hit


@pytest.mark.parametrize("kind", sorted(BAD_COPIES))
@pytest.mark.parametrize("where", ["FACEAGE_WEIGHTS_DIR", "bundled", "local_dir"])
def test_bad_local_copy_is_refused_with_both_hashes_and_the_fix(
    yunet_hub: HubServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    where: str,
) -> None:
    (tmp_path / FILENAME).write_bytes(BAD_COPIES[kind])
    file = YUNET.file
    kwargs: dict[str, Any] = {}
    if where == "FACEAGE_WEIGHTS_DIR":
        monkeypatch.setenv("FACEAGE_WEIGHTS_DIR", str(tmp_path))
        fix = "faceage download yunet"
    elif where == "bundled":
        monkeypatch.setattr(hub, "_bundled_root", lambda: tmp_path)
        file = dataclasses.replace(file, bundled=True)
        fix = "reinstall faceage"
    else:
        kwargs["local_dir"] = tmp_path
        fix = "faceage download yunet"
    with pytest.raises(WeightsIntegrityError) as caught:
        hub.resolve_weight_file(file, name="yunet", **kwargs)
    message = str(caught.value)
    assert FILENAME in message and str(tmp_path) in message and fix in message
    assert hashlib.sha256(BAD_COPIES[kind]).hexdigest() in message
    assert str(YUNET.file.sha256) in message
    # A bad explicit copy is an error, not a reason to quietly fetch another one.
    assert yunet_hub.state.requests == []
    assert (tmp_path / FILENAME).read_bytes() == BAD_COPIES[kind]  # the user's file stays


# --- a network that fails ---------------------------------------------------------------


def test_mirror_that_always_dies_mid_file_fails_cleanly_then_recovers(
    yunet_hub: HubServer, offline_hf_cache: Path
) -> None:
    yunet_hub.state.drop_at = 100_000
    with pytest.raises(WeightsNotFoundError, match="could not download") as caught:
        resolve()
    assert FILENAME in str(caught.value) and "faceage download yunet" in str(caught.value)
    assert 2 <= yunet_hub.state.count("GET") <= 10  # retried, and bounded
    # Nothing a later call could take for the weights: no blob, no partial, no link.
    assert _cached_files(offline_hf_cache) == []
    yunet_hub.state.drop_at = None
    assert resolve().read_bytes() == YUNET_BYTES


@pytest.mark.parametrize("drops", [1, 3, 5])
def test_a_few_drops_are_retried_until_the_file_is_whole(yunet_hub: HubServer, drops: int) -> None:
    # huggingface_hub reads 10 MB chunks, so a small file restarts from byte 0 each time.
    yunet_hub.state.drop_after = 100_000
    yunet_hub.state.drop_times = drops
    assert resolve().read_bytes() == YUNET_BYTES
    assert yunet_hub.state.count("GET") == drops + 1


def test_a_half_written_blob_under_the_final_name_is_never_used(
    yunet_hub: HubServer, offline_hf_cache: Path
) -> None:
    # What a crash of another tool copying into the cache leaves: the blob exists under
    # its sha256 name, with no snapshot link, and half its bytes (plus a stale partial).
    blobs = offline_hf_cache / f"models--{REPO.replace('/', '--')}" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / str(YUNET.file.sha256)).write_bytes(YUNET_BYTES[:1000])
    (blobs / f"{YUNET.file.sha256}.incomplete").write_bytes(b"\x00" * 5000)
    path = resolve()
    assert path.read_bytes() == YUNET_BYTES
    assert (blobs / str(YUNET.file.sha256)).read_bytes() == YUNET_BYTES
    hub.clear_verification_cache()
    assert resolve() == path


@pytest.fixture
def short_timeouts(monkeypatch: pytest.MonkeyPatch) -> float:
    """huggingface_hub's timeouts (10 s, then 60 s per retry) cut to 0.5 s."""
    import huggingface_hub.file_download as file_download

    timeout = 0.5
    monkeypatch.setattr(hf_constants, "HF_HUB_ETAG_TIMEOUT", timeout)
    monkeypatch.setattr(hf_constants, "HF_HUB_DOWNLOAD_TIMEOUT", timeout)
    monkeypatch.setattr(file_download, "_ETAG_RETRY_TIMEOUT", timeout)
    return timeout


def test_server_too_slow_to_answer_fails_within_bounded_time(
    yunet_hub: HubServer, offline_hf_cache: Path, short_timeouts: float
) -> None:
    yunet_hub.state.delay = 3.0
    started = time.monotonic()
    with pytest.raises(WeightsNotFoundError) as caught:
        resolve()
    assert time.monotonic() - started < 30
    assert FILENAME in str(caught.value) and REPO in str(caught.value)
    assert len(yunet_hub.state.requests) <= 10
    assert _snapshots(offline_hf_cache) == []


def test_transfer_that_stalls_fails_within_bounded_time(
    yunet_hub: HubServer, offline_hf_cache: Path, short_timeouts: float
) -> None:
    yunet_hub.state.stall = 3.0
    started = time.monotonic()
    try:
        path = resolve()
    except WeightsNotFoundError as exc:
        assert "could not download" in str(exc)
        assert _snapshots(offline_hf_cache) == []
    else:  # resumed past the stall with Range requests: then the bytes must be right
        assert path.read_bytes() == YUNET_BYTES
    assert time.monotonic() - started < 60
    assert yunet_hub.state.count("GET") <= 10


# --- offline, from the command line -----------------------------------------------------


@pytest.fixture
def tiny_model(tmp_path: Path) -> str:
    return str(write_tiny_model(tmp_path / "tiny-model"))


def _face() -> str:
    from tests._shared import utkface_image, utkface_rows

    return str(utkface_image(utkface_rows("test", limit=1)[0]))


def test_cli_offline_cold_cache_names_the_download_command(
    tiny_model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["predict", _face(), "--model", tiny_model, "--detector", "yunet", "--offline"]
    assert main(args) == 1
    out, err = capsys.readouterr()
    (line,) = [x for x in err.splitlines() if x.strip()]
    assert line.startswith("faceage: error: ") and "`faceage download yunet`" in line
    assert out == ""


def test_cli_offline_warm_cache_works_without_a_network(
    tiny_model: str, seed_hub_cache: SeedCache, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_hub_cache(REPO, FILENAME, YUNET_BYTES)
    args = ["predict", _face(), "--model", tiny_model, "--detector", "yunet", "--offline"]
    assert main(args) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert len(json.loads(line)["faces"]) == 1


# --- user models: data and an ONNX graph, nothing else ----------------------------------


class _Payload:
    """Unpickling this would create the file named in ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def _user_model(folder: Path, **changes: Any) -> Path:
    write_tiny_model(folder)
    spec = tiny_spec_dict()
    for dotted, value in changes.items():
        node = spec
        *parents, key = dotted.split(".")
        for parent in parents:
            node = node[parent]
        node[key] = value
    (folder / "faceage.json").write_text(json.dumps(spec))
    return folder


def _publish(server: HubServer, repo: str, folder: Path) -> None:
    for name in ("faceage.json", "model.onnx"):
        server.add_file(repo, name, (folder / name).read_bytes())


def test_a_pickle_named_model_onnx_is_refused_never_unpickled(
    tmp_path: Path, hub_server: HubServer
) -> None:
    marker = tmp_path / "unpickled"
    folder = _user_model(tmp_path / "m")
    (folder / "model.onnx").write_bytes(pickle.dumps(_Payload(marker)))
    assert not marker.exists()
    with pytest.raises(ModelSpecError, match="not an ONNX model"):
        AgeEstimator.from_pretrained(str(folder), detector=None)
    # The constructor, given the file directly, refuses it the same typed way.
    with pytest.raises(ModelSpecError, match="not an ONNX model"):
        AgeEstimator(load_spec_file(folder / "faceage.json"), folder / "model.onnx", detector=None)
    _publish(hub_server, "someone/pickled", folder)
    with pytest.raises(ModelSpecError, match="not an ONNX model"):
        AgeEstimator.from_pretrained("hf-hub:someone/pickled", detector=None)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"loader": "pickle"}, "loader"),
        ({"preprocess": "lambda x: x"}, "preprocess"),
        ({"input.transform": "torchvision.transforms.ToTensor"}, "input.transform"),
        ({"output.postprocess": "eval"}, "output.postprocess"),
        ({"file.url": "https://example.com/evil.pkl"}, "file.url"),
    ],
)
def test_unknown_spec_keys_are_refused(
    tmp_path: Path, hub_server: HubServer, change: dict[str, str], needle: str
) -> None:
    folder = _user_model(tmp_path / "m", **change)
    with pytest.raises(ModelSpecError, match=f"unknown key.*{needle}") as caught:
        AgeEstimator.from_pretrained(str(folder), detector=None)
    assert "faceage.json" in str(caught.value)
    _publish(hub_server, "someone/extra", folder)
    with pytest.raises(ModelSpecError, match=needle):
        user_models.resolve_user_model("hf-hub:someone/extra")


@pytest.mark.parametrize(
    ("spec_bytes", "needle"),
    [
        (pickle.dumps({"name": "x"}), "not a readable JSON"),
        (b"[1, 2, 3]", "JSON object"),
        (b'{"name": "x", "input": {"size": 64}', "not a readable JSON"),
        (b"\xff\xfe\x00garbage", "not a readable JSON"),
    ],
)
def test_spec_that_is_not_a_json_object_is_refused(
    tmp_path: Path, hub_server: HubServer, spec_bytes: bytes, needle: str
) -> None:
    folder = _user_model(tmp_path / "m")
    (folder / "faceage.json").write_bytes(spec_bytes)
    with pytest.raises(ModelSpecError, match=needle):
        user_models.resolve_user_model(str(folder))
    _publish(hub_server, "someone/badspec", folder)
    with pytest.raises(ModelSpecError, match=needle):
        user_models.resolve_user_model("hf-hub:someone/badspec")


@pytest.mark.parametrize("filename", ["../model.onnx", "/etc/passwd", "sub/model.onnx", ".."])
def test_spec_file_names_cannot_leave_the_model(tmp_path: Path, filename: str) -> None:
    folder = _user_model(tmp_path / "m", **{"file.filename": filename})
    with pytest.raises(ModelSpecError, match="plain file name"):
        user_models.resolve_user_model(str(folder))


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"input.name": "pixels"}, "'pixels'.*inputs are \\['input'\\]"),
        ({"output.age": "years"}, "'years'.*outputs are \\['age'\\]"),
        ({"task": "age+gender", "output.gender": "female"}, "'female'"),
    ],
)
def test_graph_that_does_not_match_the_spec_says_which_name(
    tmp_path: Path, hub_server: HubServer, change: dict[str, str], needle: str
) -> None:
    folder = _user_model(tmp_path / "m", **change)
    with pytest.raises(ModelSpecError, match=needle):
        AgeEstimator.from_pretrained(str(folder), detector=None)
    _publish(hub_server, "someone/mismatch", folder)
    with pytest.raises(ModelSpecError, match=needle):
        AgeEstimator.from_pretrained("hf-hub:someone/mismatch", detector=None)


def test_graph_with_the_wrong_crop_count_is_refused(tmp_path: Path) -> None:
    folder = _user_model(tmp_path / "m", **{"input.crop_scales": [1.0, 1.25, 1.5]})
    (folder / "model.onnx").write_bytes(build_tiny_age_onnx(num_crops=1))
    with pytest.raises(ModelSpecError, match=r"rank 4.*3 crop"):
        AgeEstimator.from_pretrained(str(folder), detector=None)


def test_user_model_file_pinned_and_tampered_on_disk(tmp_path: Path) -> None:
    folder = _user_model(tmp_path / "m")
    pinned = hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest()
    spec = json.loads((folder / "faceage.json").read_text())
    spec["file"]["sha256"] = pinned
    (folder / "faceage.json").write_text(json.dumps(spec))
    assert AgeEstimator.from_pretrained(str(folder), detector=None).spec.name == "tiny"
    data = (folder / "model.onnx").read_bytes()
    (folder / "model.onnx").write_bytes(data[:-10])
    hub.clear_verification_cache()
    with pytest.raises(WeightsIntegrityError, match=pinned):
        AgeEstimator.from_pretrained(str(folder), detector=None)
    assert os.path.getsize(folder / "model.onnx") == len(data) - 10
