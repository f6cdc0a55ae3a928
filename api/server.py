"""How uvicorn runs the API: connection limits, forwarded headers, workers tied to their parent.

* Request heads (request line and headers) are bounded: `MAX_HEAD_BYTES`, beyond which the
  connection gets 431 and is closed. uvicorn's httptools parser has no such limit (an 8 MB
  header was accepted); h11, its fallback, is given the same bound.
* `X-Forwarded-For`/`-Proto` are believed only from `CRIMEFLOW_API_TRUSTED_PROXIES`; by default
  (none) the peer address is the client, so a client cannot choose its own rate-limit key.
  (uvicorn's own default believes any local peer.)
* Idle keep-alive connections close after `KEEP_ALIVE_S`; a request body that has not fully
  arrived `BODY_READ_TIMEOUT_S` after the handler started reading it is answered 408 (in
  `api.observability.RequestObserver`).
* A worker process of `crimeflow api --workers N` ends when its supervisor dies, even by
  SIGKILL (`exit_with_parent`): otherwise orphaned workers keep the port.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from typing import Any

from crimeflow.contract.settings import Settings

logger = logging.getLogger("crimeflow.api")

MAX_HEAD_BYTES = 64 * 1024
KEEP_ALIVE_S = 5
BODY_READ_TIMEOUT_S = 30.0
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_PARENT_POLL_S = 1.0

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is optional for uvicorn; h11 is then used, with its own bound
    HttpToolsProtocol = None  # type: ignore[assignment,misc]


if HttpToolsProtocol is not None:

    class BoundedHttpToolsProtocol(HttpToolsProtocol):  # type: ignore[misc,valid-type]
        """uvicorn's httptools protocol, answering 431 once a request head exceeds the bound."""

        _head_bytes = 0
        _head_too_large = False

        def on_message_begin(self) -> None:
            """A new request: its head is counted from zero."""
            self._head_bytes = 0
            super().on_message_begin()

        def on_url(self, url: bytes) -> None:
            """Count the URL into the head."""
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            """Count each header into the head."""
            self._count(len(name) + len(value) + 4)
            super().on_header(name, value)

        def _count(self, size: int) -> None:
            self._head_bytes += size
            if self._head_bytes > MAX_HEAD_BYTES:
                self._head_too_large = True
                # The parser turns a callback's exception into HttpParserError: uvicorn then
                # answers through send_400_response (below) and closes the connection.
                raise ValueError("request head too large")

        def send_400_response(self, msg: str) -> None:
            """431 for a head over the bound, uvicorn's 400 for anything else it cannot parse."""
            if not self._head_too_large:
                super().send_400_response(msg)
                return
            body = b"request line and headers exceed %d bytes" % MAX_HEAD_BYTES
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                b"content-type: text/plain; charset=utf-8\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
            )
            self.transport.close()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The uvicorn options that bound connections and decide whom forwarded headers come from."""
    trusted = settings.api.trusted_proxies
    options: dict[str, Any] = {
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": list(trusted) if trusted else [],
        "timeout_keep_alive": KEEP_ALIVE_S,
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
    }
    if HttpToolsProtocol is not None:
        options["http"] = BoundedHttpToolsProtocol
    else:
        options["http"] = "h11"
    return options


def exit_with_parent() -> None:
    """In a worker started by a uvicorn supervisor: get SIGTERM when the supervisor dies.

    Linux: the kernel's parent-death signal (prctl). Elsewhere: a thread that watches the
    parent pid. SIGTERM lets the worker drain as usual (in-flight requests, the log's commit).
    Does nothing in a process that no multiprocessing parent started (tests, one worker).
    """
    parent = multiprocessing.parent_process()
    if parent is None or parent.pid is None:
        return
    parent_pid = parent.pid
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0:
            # The parent may have died before prctl: then we already have a new parent.
            if os.getppid() != parent_pid:
                os.kill(os.getpid(), signal.SIGTERM)
            return
    threading.Thread(
        target=_watch_parent, args=(parent_pid,), name="parent-watch", daemon=True
    ).start()


def _watch_parent(parent_pid: int) -> None:
    """SIGTERM this process once its parent is gone (re-parented)."""
    while os.getppid() == parent_pid:
        time.sleep(_PARENT_POLL_S)
    logger.warning("the supervisor is gone: stopping this worker")
    os.kill(os.getpid(), signal.SIGTERM)
