"""faceage.hub against a real loopback Hub: download, cache, offline, integrity, failures,
resolution order and user models."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import urllib.request
from pathlib import Path

import pytest

from faceage import downloads, hub, user_models
from faceage.errors import (
    ModelSpecError,
    UnknownModelError,
    WeightsIntegrityError,
    WeightsNotFoundError,
)
from faceage.spec import WeightFile, load_manifest
from tests._shared import YUNET_DIR
from tests.conftest import SeedCache
from tests.hub_server import HubServer

YUNET = load_manifest().detector("yunet")
YUNET_BYTES = (YUNET_DIR / YUNET.file.filename).read_bytes()
REPO = YUNET.file.repo_id or ""
FILENAME = YUNET.file.filename


def _tampered(data: bytes) -> bytes:
    return data[:1000] + bytes([data[1000] ^ 0xFF]) + data[1001:]


def _cached_files(cache: Path) -> list[Path]:
    """Blobs and snapshot files in the cache, finished or not: what a later call might use."""
    return [
        p
        for p in cache.rglob("*")
        if p.is_file() and ("blobs" in p.parts or "snapshots" in p.parts)
    ]


@pytest.fixture
def yunet_hub(hub_server: HubServer) -> HubServer:
    hub_server.add_file(REPO, FILENAME, YUNET_BYTES)
    return hub_server


def resolve() -> Path:
    return hub.resolve_weight_file(YUNET.file, name="yunet")


def test_manifest_pins_the_shared_copy() -> None:
    assert hashlib.sha256(YUNET_BYTES).hexdigest() == YUNET.file.sha256
    assert len(YUNET_BYTES) == YUNET.file.size


def test_download_then_cache_hit_makes_no_request(
    yunet_hub: HubServer, offline_hf_cache: Path
) -> None:
    path = resolve()
    assert path.read_bytes() == YUNET_BYTES
    assert offline_hf_cache in path.parents
    assert yunet_hub.state.count("GET") == 1
    seen = len(yunet_hub.state.requests)

    hub.clear_verification_cache()
    assert resolve() == path
    assert len(yunet_hub.state.requests) == seen


def test_download_sends_library_user_agent(yunet_hub: HubServer) -> None:
    resolve()
    assert yunet_hub.state.count("HEAD") >= 1
    assert all("/resolve/main/" in r.path for r in yunet_hub.state.requests)


def test_offline_with_warm_cache_works(
    yunet_hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = resolve()
    yunet_hub.close()  # the network is gone too
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.clear_verification_cache()
    assert resolve() == path
    assert hub.resolve_weight_file(YUNET.file, name="yunet", local_files_only=True) == path


def test_offline_cold_cache_names_the_download_command() -> None:
    with pytest.raises(WeightsNotFoundError) as caught:
        resolve()
    message = str(caught.value)
    assert "faceage download yunet" in message
    assert "HF_HUB_OFFLINE" in message
    assert isinstance(caught.value, FileNotFoundError)


def test_local_files_only_cold_cache_refuses_even_online(yunet_hub: HubServer) -> None:
    with pytest.raises(WeightsNotFoundError, match="faceage download yunet"):
        hub.resolve_weight_file(YUNET.file, name="yunet", local_files_only=True)
    assert yunet_hub.state.requests == []


def test_offline_set_after_import_is_honoured(
    seed_hub_cache: SeedCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_hub_cache(REPO, FILENAME, YUNET_BYTES)
    # huggingface_hub saw "online" at import; the environment now says offline.
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.hub_offline()
    assert resolve().read_bytes() == YUNET_BYTES


def test_force_download_refetches_and_needs_the_network(yunet_hub: HubServer) -> None:
    path = resolve()
    again = hub.resolve_weight_file(YUNET.file, name="yunet", force_download=True)
    assert again == path and again.read_bytes() == YUNET_BYTES
    assert yunet_hub.state.count("GET") == 2
    with pytest.raises(WeightsNotFoundError, match="force_download"):
        hub.resolve_weight_file(
            YUNET.file, name="yunet", force_download=True, local_files_only=True
        )


def test_offline_since_import_says_so(
    yunet_hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # huggingface_hub saw "offline" at import and keeps refusing requests; the environment
    # no longer says so. faceage does not try, and explains.
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsNotFoundError, match="when huggingface_hub was imported"):
        resolve()
    assert yunet_hub.state.requests == []


def test_hf_home_set_after_import_is_honoured(
    tmp_path: Path, seed_hub_cache: SeedCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "elsewhere"))
    assert hub.hub_cache_dir() == tmp_path / "elsewhere" / "hub"
    with pytest.raises(WeightsNotFoundError, match=str(tmp_path / "elsewhere")):
        resolve()


def test_tampered_download_is_rejected_and_deleted(
    yunet_hub: HubServer, offline_hf_cache: Path
) -> None:
    bad = _tampered(YUNET_BYTES)
    yunet_hub.state.tampered[(REPO, FILENAME)] = bad
    with pytest.raises(WeightsIntegrityError) as caught:
        resolve()
    message = str(caught.value)
    assert str(YUNET.file.sha256) in message
    assert hashlib.sha256(bad).hexdigest() in message
    assert FILENAME in message
    assert _cached_files(offline_hf_cache) == []
    # Once the mirror is fixed, the next call downloads good bytes.
    yunet_hub.state.tampered.clear()
    assert resolve().read_bytes() == YUNET_BYTES


def test_tampered_cached_file_is_replaced_by_a_fresh_download(
    yunet_hub: HubServer, seed_hub_cache: SeedCache
) -> None:
    seed_hub_cache(REPO, FILENAME, _tampered(YUNET_BYTES))
    path = resolve()
    assert path.read_bytes() == YUNET_BYTES
    assert yunet_hub.state.count("GET") == 1


def test_tampered_cached_file_offline_is_deleted_and_reported(
    seed_hub_cache: SeedCache, offline_hf_cache: Path
) -> None:
    bad = _tampered(YUNET_BYTES)
    seed_hub_cache(REPO, FILENAME, bad)
    with pytest.raises(WeightsIntegrityError, match="faceage download yunet") as caught:
        resolve()
    assert hashlib.sha256(bad).hexdigest() in str(caught.value)
    assert _cached_files(offline_hf_cache) == []
    with pytest.raises(WeightsNotFoundError):
        resolve()


def test_file_changed_on_disk_is_hashed_again(seed_hub_cache: SeedCache) -> None:
    pointer = seed_hub_cache(REPO, FILENAME, YUNET_BYTES)
    resolve()
    blob = pointer.resolve()
    blob.write_bytes(_tampered(YUNET_BYTES))  # same size, new mtime
    with pytest.raises(WeightsIntegrityError):
        resolve()


@pytest.mark.parametrize("status", [404, 500])
def test_http_errors_are_clear_and_bounded(
    yunet_hub: HubServer, offline_hf_cache: Path, status: int
) -> None:
    yunet_hub.state.status = status
    with pytest.raises(WeightsNotFoundError) as caught:
        resolve()
    message = str(caught.value)
    assert FILENAME in message and REPO in message
    assert len(yunet_hub.state.requests) <= 10
    assert _cached_files(offline_hf_cache) == []


def test_missing_file_on_the_hub(hub_server: HubServer) -> None:
    with pytest.raises(WeightsNotFoundError, match="the Hub has no"):
        resolve()


def test_dropped_connection_is_retried(yunet_hub: HubServer) -> None:
    yunet_hub.state.drop_after = 50_000
    yunet_hub.state.drop_times = 1
    assert resolve().read_bytes() == YUNET_BYTES
    assert yunet_hub.state.count("GET") == 2


def test_server_answers_ranges_like_the_hub(yunet_hub: HubServer) -> None:
    url = f"{yunet_hub.endpoint}/{REPO}/resolve/main/{FILENAME}"
    request = urllib.request.Request(url, headers={"Range": "bytes=100-"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 206
        assert (
            response.headers["Content-Range"]
            == f"bytes 100-{len(YUNET_BYTES) - 1}/{len(YUNET_BYTES)}"
        )
        assert response.headers["X-Linked-Etag"].strip('"') == YUNET.file.sha256
        assert response.read() == YUNET_BYTES[100:]


def test_connection_that_keeps_dropping_fails_cleanly(
    yunet_hub: HubServer, offline_hf_cache: Path
) -> None:
    yunet_hub.state.drop_after = 0
    yunet_hub.state.drop_times = 1000
    with pytest.raises(WeightsNotFoundError, match="could not download") as caught:
        resolve()
    assert isinstance(caught.value, OSError)
    assert yunet_hub.state.count("GET") <= 10
    assert _cached_files(offline_hf_cache) == []


def test_slow_server_still_delivers(yunet_hub: HubServer) -> None:
    yunet_hub.state.delay = 0.2
    assert resolve().read_bytes() == YUNET_BYTES


def test_bundled_file_wins_over_the_hub(
    yunet_hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / FILENAME).write_bytes(YUNET_BYTES)
    monkeypatch.setattr(hub, "_bundled_root", lambda: tmp_path)
    bundled = dataclasses.replace(YUNET.file, bundled=True)
    assert hub.resolve_weight_file(bundled, name="yunet") == tmp_path / FILENAME
    assert yunet_hub.state.requests == []
    # Not marked bundled: the package folder is not searched.
    assert hub.resolve_weight_file(YUNET.file, name="yunet") != tmp_path / FILENAME


def test_corrupt_bundled_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / FILENAME).write_bytes(_tampered(YUNET_BYTES))
    monkeypatch.setattr(hub, "_bundled_root", lambda: tmp_path)
    with pytest.raises(WeightsIntegrityError, match="reinstall faceage"):
        hub.resolve_weight_file(dataclasses.replace(YUNET.file, bundled=True), name="yunet")


def test_local_dir_wins_over_everything(
    yunet_hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local, env_dir, bundled = (tmp_path / d for d in ("local", "env", "bundled"))
    for folder in (local, env_dir, bundled):
        folder.mkdir()
        (folder / FILENAME).write_bytes(YUNET_BYTES)
    monkeypatch.setenv("FACEAGE_WEIGHTS_DIR", str(env_dir))
    monkeypatch.setattr(hub, "_bundled_root", lambda: bundled)
    file = dataclasses.replace(YUNET.file, bundled=True)
    assert hub.resolve_weight_file(file, name="yunet", local_dir=local) == local / FILENAME
    assert hub.resolve_weight_file(file, name="yunet") == env_dir / FILENAME
    (env_dir / FILENAME).unlink()
    assert hub.resolve_weight_file(file, name="yunet") == bundled / FILENAME
    # A local_dir without the file falls through to the next place.
    assert hub.resolve_weight_file(file, name="yunet", local_dir=tmp_path) == bundled / FILENAME
    assert yunet_hub.state.requests == []


def test_corrupt_local_file_is_refused_not_skipped(tmp_path: Path) -> None:
    (tmp_path / FILENAME).write_bytes(_tampered(YUNET_BYTES))
    with pytest.raises(WeightsIntegrityError, match="local_dir"):
        hub.resolve_weight_file(YUNET.file, name="yunet", local_dir=tmp_path)


def test_shared_folder_works_as_weights_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACEAGE_WEIGHTS_DIR", str(YUNET_DIR))
    assert resolve() == YUNET_DIR / FILENAME


def test_unpinned_file_skips_the_check(tmp_path: Path) -> None:
    (tmp_path / "x.onnx").write_bytes(b"anything")
    file = WeightFile(filename="x.onnx")
    assert hub.resolve_weight_file(file, name="x", local_dir=tmp_path) == tmp_path / "x.onnx"


def test_file_without_a_repo_cannot_be_downloaded(hub_server: HubServer) -> None:
    with pytest.raises(WeightsNotFoundError, match="FACEAGE_WEIGHTS_DIR"):
        hub.resolve_weight_file(WeightFile(filename="x.onnx", sha256="0" * 64), name="x")


def test_download_helpers(yunet_hub: HubServer) -> None:
    assert hub.download_detector("yunet").read_bytes() == YUNET_BYTES  # type: ignore[union-attr]
    assert downloads.download("yunet") == [resolve()]
    assert downloads.download("retinaface") == []
    with pytest.raises(UnknownModelError, match="yunet"):
        downloads.download("nope")


# --- user models ------------------------------------------------------------------------


def tiny_age_onnx(output_name: str = "age") -> bytes:
    """``input`` (N,3,8,8) -> ``age`` (N,): the mean pixel, a stand-in for a real model."""
    onnx = pytest.importorskip("onnx")
    helper, tensor = onnx.helper, onnx.TensorProto
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["input"], [output_name], axes=[1, 2, 3], keepdims=0)],
        "tiny_age",
        [helper.make_tensor_value_info("input", tensor.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info(output_name, tensor.FLOAT, ["N"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    data: bytes = model.SerializeToString()
    return data


def tiny_spec(data: bytes, *, pin: bool = True, age_output: str = "age") -> bytes:
    spec = {
        "name": "tiny",
        "task": "age",
        "input": {"size": 8, "name": "input"},
        "output": {"age": age_output},
        "file": {
            "filename": "model.onnx",
            **({"sha256": hashlib.sha256(data).hexdigest()} if pin else {}),
        },
    }
    return json.dumps(spec).encode()


def test_hf_hub_user_model_resolves(hub_server: HubServer) -> None:
    data = tiny_age_onnx()
    hub_server.add_file("someone/tiny-age", "faceage.json", tiny_spec(data))
    hub_server.add_file("someone/tiny-age", "model.onnx", data)
    spec, path = user_models.resolve_user_model("hf-hub:someone/tiny-age@v1")
    assert path.read_bytes() == data
    assert spec.name == "hf-hub:someone/tiny-age@v1"
    assert spec.input_size == 8 and spec.age_output == "age"
    assert spec.file.repo_id == "someone/tiny-age" and spec.file.revision == "v1"
    assert all("/resolve/v1/" in r.path for r in hub_server.state.requests)


def test_hf_hub_user_model_with_wrong_output_is_refused(hub_server: HubServer) -> None:
    data = tiny_age_onnx(output_name="years")
    hub_server.add_file("someone/tiny-age", "faceage.json", tiny_spec(data, age_output="age"))
    hub_server.add_file("someone/tiny-age", "model.onnx", data)
    with pytest.raises(ModelSpecError, match="no output named 'age'") as caught:
        user_models.resolve_user_model("hf-hub:someone/tiny-age")
    assert "years" in str(caught.value)


def test_hf_hub_user_model_pinned_hash_is_checked(hub_server: HubServer) -> None:
    data = tiny_age_onnx()
    hub_server.add_file("someone/tiny-age", "faceage.json", tiny_spec(data))
    hub_server.add_file("someone/tiny-age", "model.onnx", tiny_age_onnx("other"))
    with pytest.raises(WeightsIntegrityError):
        user_models.resolve_user_model("hf-hub:someone/tiny-age")


def test_hf_hub_user_model_offline_cold(tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match="faceage download hf-hub:someone/x"):
        user_models.resolve_user_model("hf-hub:someone/x")


def test_local_user_model_folder(tmp_path: Path) -> None:
    data = tiny_age_onnx()
    (tmp_path / "model.onnx").write_bytes(data)
    (tmp_path / "faceage.json").write_bytes(tiny_spec(data, pin=False))
    spec, path = user_models.resolve_user_model(str(tmp_path))
    assert path == tmp_path / "model.onnx"
    assert spec.name == "tiny"
    (tmp_path / "faceage.json").write_bytes(tiny_spec(data, age_output="years"))
    with pytest.raises(ModelSpecError, match="'years'"):
        user_models.resolve_user_model(str(tmp_path))


@pytest.mark.parametrize("ref", ["hf-hub:", "hf-hub:owner", "hf-hub:a/b@", "hf-hub:a/b/c"])
def test_bad_hub_references(ref: str) -> None:
    with pytest.raises(UnknownModelError, match="hf-hub:owner/repo"):
        user_models.resolve_user_model(ref)


def test_not_a_folder_nor_reference(tmp_path: Path) -> None:
    with pytest.raises(UnknownModelError):
        user_models.resolve_user_model(str(tmp_path / "missing"))
