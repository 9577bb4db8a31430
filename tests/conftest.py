"""Shared fixtures. Tests never touch the internet: every test runs with a private,
empty Hugging Face cache and offline mode on; ``hub_server`` turns the network back on,
pointed at a loopback server that answers like the Hub."""

from __future__ import annotations

import hashlib
import importlib
import os
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub import constants as hf_constants

from faceage import hub
from tests.hub_server import HubServer, commit_of

SeedCache = Callable[..., Path]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-slow",
        action="store_true",
        help="also run tests marked slow (also: -m slow, or FACEAGE_RUN_SLOW=1)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` run only when asked for, so the default run stays short."""
    wanted = (
        config.getoption("--run-slow")
        or "slow" in (config.getoption("-m") or "")
        or os.environ.get("FACEAGE_RUN_SLOW", "") == "1"
    )
    if wanted:
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow, -m slow or FACEAGE_RUN_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def offline_hf_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A fresh ``HF_HOME`` per test, offline, with no token and no FACEAGE_WEIGHTS_DIR.

    huggingface_hub copies these variables into ``huggingface_hub.constants`` when it is
    imported, so the constants are patched as well as the environment.
    """
    home = tmp_path_factory.mktemp("hf_home")
    cache = home / "hub"
    for var, value in {
        "HF_HOME": home,
        "HF_HUB_CACHE": cache,
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    }.items():
        monkeypatch.setenv(var, str(value))
    for var in ("HF_ENDPOINT", "HF_TOKEN", "HUGGINGFACE_HUB_CACHE", "FACEAGE_WEIGHTS_DIR"):
        monkeypatch.delenv(var, raising=False)
    for name, value in {
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(cache),
        "HUGGINGFACE_HUB_CACHE": str(cache),
        "HF_ASSETS_CACHE": str(home / "assets"),
        "HF_XET_CACHE": str(home / "xet"),
        "HF_TOKEN_PATH": str(home / "token"),
        "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
        "HF_HUB_OFFLINE": True,
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": True,
    }.items():
        monkeypatch.setattr(hf_constants, name, value, raising=False)
    hub.clear_verification_cache()
    return cache


@pytest.fixture
def hub_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """A loopback Hub, online mode on and ``HF_ENDPOINT`` pointing at it.

    ``server.state`` holds the files (``server.add_file``), the requests seen and the
    switches that make it misbehave. huggingface_hub's retry back-off sleeps are made
    instant so failure tests stay fast; the number of attempts is unchanged.
    """
    server = HubServer()
    endpoint = server.endpoint
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(
        hf_constants,
        "HUGGINGFACE_CO_URL_TEMPLATE",
        endpoint + "/{repo_id}/resolve/{revision}/{filename}",
    )
    instant = types.SimpleNamespace(
        **{k: getattr(time, k) for k in dir(time) if not k.startswith("_")}
    )
    instant.sleep = lambda seconds: None
    for module in ("huggingface_hub.utils._http", "huggingface_hub.file_download"):
        monkeypatch.setattr(importlib.import_module(module), "time", instant)
    try:
        yield server
    finally:
        server.close()
        huggingface_hub.close_session()  # drop pooled connections to this server


@pytest.fixture
def seed_hub_cache(offline_hf_cache: Path) -> SeedCache:
    """Put bytes into the private Hugging Face cache the way a download would have.

    ``seed_hub_cache(repo_id, filename, data_or_path, revision="main") -> path``
    """

    def seed(repo_id: str, filename: str, data: bytes | Path, revision: str = "main") -> Path:
        content = data.read_bytes() if isinstance(data, Path) else data
        repo_dir = offline_hf_cache / ("models--" + repo_id.replace("/", "--"))
        commit = commit_of(repo_id, revision)
        blob = repo_dir / "blobs" / hashlib.sha256(content).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(content)
        (repo_dir / "refs").mkdir(exist_ok=True)
        if revision != commit:
            (repo_dir / "refs" / revision).write_text(commit)
        pointer = repo_dir / "snapshots" / commit / filename
        pointer.parent.mkdir(parents=True, exist_ok=True)
        pointer.unlink(missing_ok=True)
        pointer.symlink_to(Path("../..") / "blobs" / blob.name)
        return pointer

    return seed
