"""Running the app under uvicorn, as `charnn serve` does.

The listening socket is bound here, before uvicorn starts, so `--port 0` works (the system picks
a free port and `on_listen` learns which) and a port in use is one clear error. Nothing is
written to stdout: uvicorn's own log is off (its access log would go to stdout) and, with
access_log=True, the access lines go to stderr.

SIGTERM (and Ctrl-C) end the streams in flight at their next step, each with its last text, its
finish_reason and `data: [DONE]`; uvicorn then closes the connections and the process exits 0.
uvicorn re-raises the signal once it has shut down (for a default handler to end the process);
a handler installed here for SIGTERM makes that re-raise a no-op, so the exit status is 0.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

from charnn.errors import CharnnError

GRACE = 5.0      # seconds uvicorn waits for connections to close once asked to stop


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free port)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise CharnnError(f"cannot listen on host {host!r}: {e.strerror}", 2) from None
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        raise CharnnError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def run(app: Any, host: str = "127.0.0.1", port: int = 8000, access_log: bool = False,
        on_listen: Callable[[str], None] | None = None, on_stop: Callable[[], None] | None = None) -> None:
    """Serve `app` until SIGTERM or Ctrl-C. on_listen(url) once the socket is bound; on_stop()
    as soon as a stop is asked for (the app's Served.shutdown, so streams end at once)."""
    import uvicorn

    sock = bind(host, port)
    if access_log:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log = logging.getLogger("uvicorn.access")
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    config = uvicorn.Config(app, log_config=None, log_level="warning", access_log=access_log, http="h11",
                            ws="none", lifespan="on", timeout_graceful_shutdown=GRACE, server_header=False)
    server = _Server(config, on_stop)
    if on_listen:
        on_listen(url_of(sock))
    previous = signal.signal(signal.SIGTERM, _ignore)
    try:
        server.run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)
        with contextlib.suppress(OSError):
            sock.close()


def _ignore(signum: int, frame: Any) -> None:
    """SIGTERM after uvicorn has shut down: already handled."""


def _server_base():
    import uvicorn

    return uvicorn.Server


class _Server(_server_base()):
    """uvicorn's Server, telling the app the moment a stop is asked for (before uvicorn waits for
    the open connections, which the streams in flight hold open)."""

    def __init__(self, config: Any, on_stop: Callable[[], None] | None):
        super().__init__(config)
        self._on_stop = on_stop

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self._on_stop:
            self._on_stop()
        super().handle_exit(sig, frame)
