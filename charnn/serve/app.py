"""The ASGI app of `charnn serve` (Starlette): the OpenAI-compatible completions API, the model
list and the playground page.

    GET  /                  the playground (one self-contained page; it holds no data)
    GET  /v1/models         the runs served: config, validation loss, loss curve
    GET  /v1/models/{id}    one of them
    POST /v1/completions    text after a prompt; "stream": true sends server-sent events
    GET  /v1/stats          charnn's own: completions in flight, steps and tokens per model

Model names are the run names given at start-up; a request can only pick one of them (no part of
a request ever becomes a file path). With a token, every request but the page must carry
`Authorization: Bearer TOKEN` (compared in constant time). Each completion choice holds one
slot of --max-streams from admission until it ends or its client goes away.
"""

from __future__ import annotations

import hmac
import math
from contextlib import asynccontextmanager
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from charnn.errors import CharnnError
from charnn.serve import protocol as p
from charnn.serve.completions import completions
from charnn.serve.engine import Engine
from charnn.serve.playground import PAGE

HISTORY_POINTS = 200     # a loss curve is thinned to this many points for /v1/models


class Served:
    """The engines by model name, the slots in use, and whether the server is shutting down."""

    def __init__(self, runs: list[Any], limits: p.Limits, quantize: str = "none"):
        self.limits = limits
        self.engines: dict[str, Engine] = {}
        for run in runs:
            if run.name in self.engines:
                raise CharnnError(f"two runs are named {run.name!r}: serve one of them, or rename a folder", 2)
            self.engines[run.name] = Engine(run, quantize)
        self.in_flight = 0
        self.closing = False

    def engine(self, name: str | None) -> Engine:
        if name is None:
            return next(iter(self.engines.values()))
        try:
            return self.engines[name]
        except KeyError:
            raise p.ApiError(404, f"the model {name[:80]!r} does not exist; this server has: "
                             f"{', '.join(self.engines)}", "model", "model_not_found") from None

    def take(self, k: int) -> None:
        """Hold k slots (one per completion choice), or answer 429 / 503."""
        if self.closing:
            raise p.ApiError(503, "the server is shutting down", kind="server_error", code="shutting_down")
        if k > self.limits.max_streams:      # could never be admitted: not a matter of waiting
            raise p.ApiError(400, f"the request asks for {k} completions at once; this server runs at most "
                             f"{self.limits.max_streams}", "n")
        if self.in_flight + k > self.limits.max_streams:
            raise p.ApiError(429, f"too many completions in flight ({self.in_flight} of "
                             f"{self.limits.max_streams}); try again shortly", kind="rate_limit_error",
                             code="too_many_streams", headers={"Retry-After": "1"})
        self.in_flight += k

    def give(self, k: int) -> None:
        self.in_flight -= k

    def start(self) -> None:
        for e in self.engines.values():
            e.start()

    def shutdown(self) -> None:
        """SIGTERM: refuse new work and end the streams in flight at their next step."""
        self.closing = True
        for e in self.engines.values():
            e.shutdown()

    def join(self, timeout: float = 5.0) -> None:
        for e in self.engines.values():
            e.join(timeout)


def create_app(runs: list[Any], limits: p.Limits | None = None, token: str | None = None,
               quantize: str = "none", allowed_hosts: list[str] | None = None) -> Starlette:
    """The app serving `runs` (charnn.run.Run). The engines start with the app's lifespan.
    allowed_hosts: the names a request's Host header may give (None: any), see HostCheck."""
    served = Served(runs, limits or p.Limits(), quantize)

    @asynccontextmanager
    async def lifespan(app: Starlette):
        served.start()
        yield
        served.shutdown()
        await anyio.to_thread.run_sync(served.join)

    app = Starlette(
        routes=[
            Route("/", playground),
            Route("/v1/models", list_models),
            Route("/v1/models/{model:path}", get_model),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/stats", stats),
        ],
        lifespan=lifespan,
        exception_handlers={p.ApiError: api_error, HTTPException: http_error, Exception: internal_error},
    )
    app.state.served = served
    if token:
        app.add_middleware(BearerAuth, token=token)
    if allowed_hosts:
        app.add_middleware(HostCheck, hosts=allowed_hosts)          # outermost: checked first
    return app


# -- errors ----------------------------------------------------------------------------------------


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, p.ApiError)
    return JSONResponse(exc.body(), exc.status, headers=exc.headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    message = f"no such endpoint: {request.method} {request.url.path[:100]}" if exc.status_code in (404, 405) \
        else str(exc.detail)
    return JSONResponse(p.ApiError(exc.status_code, message, code=code).body(), exc.status_code,
                        headers=dict(exc.headers or {}))


async def internal_error(request: Request, exc: Exception) -> Response:
    body = p.ApiError(500, f"internal error: {type(exc).__name__}", kind="server_error").body()
    return JSONResponse(body, 500)


class BearerAuth:
    """Every request but the page needs `Authorization: Bearer TOKEN` (401 otherwise)."""

    def __init__(self, app: Any, token: str):
        self.app, self.token = app, token.encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and not (scope["method"] in ("GET", "HEAD") and scope["path"] == "/"):
            got = b""
            for k, v in scope["headers"]:
                if k == b"authorization":
                    got = v
            scheme, _, given = got.partition(b" ")
            # compare_digest: the time taken does not tell how much of the token was right
            if not (scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.token)):
                err = p.ApiError(401, "a valid token is needed: send the header 'Authorization: Bearer TOKEN'",
                                 kind="authentication_error", code="invalid_api_key")
                resp = JSONResponse(err.body(), 401, headers={"WWW-Authenticate": "Bearer"})
                await resp(scope, receive, send)
                return
        await self.app(scope, receive, send)


class HostCheck:
    """A request must name an allowed host (any port) in its Host header, else 403. A server on
    127.0.0.1 allows only this machine's names, so a web page whose domain is re-pointed at
    127.0.0.1 (DNS rebinding) cannot use it from a visitor's browser."""

    def __init__(self, app: Any, hosts: list[str]):
        self.app, self.hosts = app, {h.lower() for h in hosts}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            host = next((v for k, v in scope["headers"] if k == b"host"), b"").decode("latin-1").lower()
            name = host if host.endswith("]") else host.rsplit(":", 1)[0]       # [::1]:8000 -> [::1]
            if name not in self.hosts:
                err = p.ApiError(403, f"this server answers only requests addressed to "
                                 f"{' or '.join(sorted(self.hosts))}", code="invalid_host")
                await JSONResponse(err.body(), 403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


# -- models ----------------------------------------------------------------------------------------


async def playground(request: Request) -> Response:
    return HTMLResponse(PAGE, headers={"Content-Security-Policy": "default-src 'self'; style-src 'unsafe-inline'; "
                                       "script-src 'unsafe-inline'; img-src 'self' data:"})


async def list_models(request: Request) -> Response:
    served: Served = request.app.state.served
    return JSONResponse({"object": "list", "data": [model_card(e) for e in served.engines.values()]})


async def get_model(request: Request) -> Response:
    served: Served = request.app.state.served
    return JSONResponse(model_card(served.engine(request.path_params["model"])))


async def stats(request: Request) -> Response:
    served: Served = request.app.state.served
    models = {name: {"rows": len(e.rows), "open_streams": e.open_streams, "steps": e.steps, "tokens": e.tokens}
              for name, e in served.engines.items()}
    return JSONResponse({"in_flight": served.in_flight, "max_streams": served.limits.max_streams, "models": models})


def model_card(engine: Engine) -> dict[str, Any]:
    """A model as /v1/models lists it, with charnn's details under "charnn"."""
    run = engine.run
    from charnn.model import num_parameters

    history = [h for h in run.ckpt.get("history", []) if isinstance(h, dict)]
    stride = max(1, math.ceil(len(history) / HISTORY_POINTS))
    curve = [{k: _num(h.get(k)) for k in ("step", "train_loss", "val_loss")} for h in history[::stride]]
    try:
        created = int(run.path.stat().st_mtime)
    except OSError:
        created = 0
    return {"id": run.name, "object": "model", "created": created, "owned_by": "charnn",
            "charnn": {"config": run.config.to_dict(), "tokenizer": run.tokenizer.name,
                       "vocab_size": run.tokenizer.vocab_size, "parameters": num_parameters(run.model),
                       "best_val_loss": _num(run.best_val_loss), "chars_per_token": run.chars_per_token,
                       "step": _num(run.ckpt.get("progress", {}).get("step")), "history": curve}}


def _num(v: Any) -> float | int | None:
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None
