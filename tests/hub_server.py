"""A real HTTP server on 127.0.0.1 that answers like the Hugging Face Hub.

It serves ``HEAD`` and ``GET /{repo_id}/resolve/{revision}/{filename}`` with the headers
huggingface_hub's ``file_download`` reads: ``X-Repo-Commit`` (commit of the revision),
``X-Linked-Etag`` / ``ETag`` (sha256 of the bytes, as the Hub does for LFS files),
``X-Linked-Size`` / ``Content-Length``, and ``Range`` requests (answered ``206``) so an
interrupted download can resume. Switches make it misbehave the ways a network does.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<filename>.+)$")
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass
class Request:
    method: str
    path: str
    range: str | None


@dataclass
class HubState:
    """What the server holds and how it should misbehave (tests flip these)."""

    files: dict[tuple[str, str], bytes] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    #: Serve these bytes instead of the real ones (a compromised mirror); the ETag follows
    #: the bytes served, as a consistent but wrong server would send.
    tampered: dict[tuple[str, str], bytes] = field(default_factory=dict)
    #: Answer every request with this status (404 carries the Hub's EntryNotFound code).
    status: int | None = None
    #: Close the connection after sending this many body bytes of a GET ...
    drop_after: int | None = None
    #: ... for this many GETs (then behave).
    drop_times: int = 0
    #: Seconds to wait before each response.
    delay: float = 0.0
    #: Close every GET's connection when the file offset reaches this byte: a mirror
    #: that always dies at the same place, so resuming with Range never gets further.
    drop_at: int | None = None
    #: Seconds to pause in the middle of every GET body (a stalled transfer).
    stall: float = 0.0

    def count(self, method: str | None = None, filename: str | None = None) -> int:
        return sum(
            1
            for r in self.requests
            if (method is None or r.method == method)
            and (filename is None or r.path.endswith("/" + filename))
        )


def commit_of(repo_id: str, revision: str) -> str:
    """A stable 40-hex commit for a repo at a revision (any revision name is accepted)."""
    if re.fullmatch(r"[0-9a-f]{40}", revision):
        return revision
    return hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HubHTTPServer

    def log_message(self, format: str, *args: object) -> None:  # quiet: pytest shows failures
        pass

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def _answer(self, *, send_body: bool) -> None:
        state = self.server.state
        path = unquote(urlsplit(self.path).path)
        state.requests.append(Request(self.command, path, self.headers.get("Range")))
        if state.delay:
            time.sleep(state.delay)
        match = _RESOLVE.match(path)
        if state.status is not None or match is None:
            self._error(state.status or 404, match)
            return
        key = (match["repo"], match["filename"])
        if key not in state.files:
            self._error(404, match)
            return
        data = state.tampered.get(key, state.files[key])
        start, end, status = 0, len(data) - 1, 200
        requested = _RANGE.match(self.headers.get("Range", ""))
        if requested:
            start = int(requested[1])
            end = min(int(requested[2]), end) if requested[2] else end
            status = 206
        body = data[start : end + 1]
        etag = hashlib.sha256(data).hexdigest()
        self.send_response(status)
        self.send_header("X-Repo-Commit", commit_of(match["repo"], match["revision"]))
        self.send_header("X-Linked-Etag", f'"{etag}"')
        self.send_header("ETag", f'"{etag}"')
        self.send_header("X-Linked-Size", str(len(data)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.end_headers()
        if not send_body:
            return
        if state.drop_at is not None:
            self.wfile.write(body[: max(state.drop_at - start, 0)])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if state.stall:
            half = len(body) // 2
            self.wfile.write(body[:half])
            self.wfile.flush()
            time.sleep(state.stall)
            with contextlib.suppress(OSError):  # the client may have given up meanwhile
                self.wfile.write(body[half:])
            return
        if state.drop_after is not None and state.drop_times > 0:
            state.drop_times -= 1
            self.wfile.write(body[: state.drop_after])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)

    def _error(self, status: int, match: re.Match[str] | None) -> None:
        body = f"error {status}".encode()
        self.send_response(status)
        if status == 404:
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("X-Error-Message", "Entry not found")
        if match is not None:
            self.send_header("X-Repo-Commit", commit_of(match["repo"], match["revision"]))
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class _HubHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: HubState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


class HubServer:
    """Run :class:`HubState` behind a real socket until :meth:`close`."""

    def __init__(self) -> None:
        self.state = HubState()
        self._server = _HubHTTPServer(self.state)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def add_file(self, repo_id: str, filename: str, data: bytes) -> None:
        self.state.files[(repo_id, filename)] = data

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
