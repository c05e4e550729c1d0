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

import asyncio
import hmac
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from charnn.errors import CharnnError
from charnn.sampling.generate import SHORT_PRIME
from charnn.serve import protocol as p
from charnn.serve.engine import Engine, EngineClosed, Job, Stream
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


# -- completions -----------------------------------------------------------------------------------


async def completions(request: Request) -> Response:
    served: Served = request.app.state.served
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        # also what makes a cross-site form post impossible: a JSON post from another origin needs
        # a CORS preflight, which this server does not answer
        raise p.ApiError(415, "send the body as JSON, with the header Content-Type: application/json",
                         code="unsupported_media_type")
    raw = await read_body(request, served.limits.max_body)
    req = p.completion_request(p.parse_body(raw), served.limits)
    engine = served.engine(req.model)
    primes = [prime_ids(engine, text) for text in req.prompts]
    cond = topic(engine, req.topic)
    k = len(req.prompts) * req.n
    served.take(k)
    try:
        streams, event = await start_streams(engine, req, primes, cond)
    except BaseException:
        served.give(k)
        raise
    name = engine.run.name
    prompt_tokens = sum(len(ids) for ids, _ in primes) * req.n

    closed = False

    def close() -> None:            # once, when the response ends for any reason
        nonlocal closed
        if not closed:
            closed = True
            engine.cancel([s for s in streams if not s.done])
            served.give(k)

    if req.stream:
        return Completion(events(req, name, streams, event, prompt_tokens), close)
    try:
        return JSONResponse(await collect(request, req, name, streams, event, prompt_tokens))
    finally:
        close()


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise p.ApiError(413, f"the request body is over {limit:,} bytes", code="body_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise p.ApiError(413, f"the request body is over {limit:,} bytes", code="body_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def prime_ids(engine: Engine, text: str) -> tuple[list[int], list[int]]:
    """A prompt -> (its token ids, the ids to start from): as `charnn sample`, no prompt starts
    as if after a line break."""
    from charnn.sampling.generate import encode_prime

    tok = engine.tokenizer
    try:
        ids = encode_prime(tok, text) if text else []
    except CharnnError as e:
        raise p.ApiError(400, str(e).replace("the prime text", "the prompt"), "prompt", "invalid_prompt") from None
    if ids:
        return ids, ids
    nl = tok.id_of("\n")
    return [], [nl] if nl is not None else []


def topic(engine: Engine, words: str | None):
    """A --input bow model's topic vector (1, bow_dim); None for other models."""
    try:
        return engine.run.topic(words)
    except CharnnError as e:
        raise p.ApiError(400, str(e).replace("--topic", "topic"), "topic") from None


async def start_streams(engine: Engine, req: p.CompletionRequest, primes: list,
                        cond) -> tuple[list[Stream], asyncio.Event]:
    """One stream per (prompt, choice), choice j seeded seed + j (as --num-samples), submitted
    to the engine together. A long prime is read by the fused model in a worker thread."""
    loop, event = asyncio.get_running_loop(), asyncio.Event()
    streams = []
    for _, feed in primes:
        if len(feed) > SHORT_PRIME:
            start = await anyio.to_thread.run_sync(engine.prepare, feed, cond)
        else:
            start = engine.prepare(feed, cond)
        for j in range(req.n):
            job = Job(start, req.sampling, req.seed + j, req.max_tokens, req.stops, req.logprobs)
            streams.append(Stream(job, engine.tokenizer, loop, event))
    if req.max_tokens == 0:         # nothing to generate: every choice ends at once
        for s in streams:
            s.push("", None, "length")
        return streams, event
    try:
        engine.submit(streams)
    except EngineClosed:
        raise p.ApiError(503, "the server is shutting down", kind="server_error", code="shutting_down") from None
    return streams, event


class Completion(StreamingResponse):
    """A stream of server-sent events whose slots are given back however it ends (finished,
    client gone, server stopping), even if it never started."""

    def __init__(self, content: AsyncIterator[bytes], on_close):
        super().__init__(content, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.on_close = on_close

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()


async def events(req: p.CompletionRequest, model: str, streams: list[Stream], event: asyncio.Event,
                 prompt_tokens: int) -> AsyncIterator[bytes]:
    """Chunks as the engine makes text: each carries what one choice made since the last."""
    cid = p.completion_id()
    chunk = lambda choices: p.sse(p.envelope(cid, model, choices))  # noqa: E731
    offsets = [0] * len(streams)
    if req.echo:
        for i in range(len(streams)):
            offsets[i] = len(req.prompts[i // req.n])
            yield chunk([p.choice(i, req.prompts[i // req.n], None)])
    open_ = set(range(len(streams)))
    while open_:
        await event.wait()
        event.clear()
        for i in sorted(open_):
            text, tokens, finish = streams[i].take()
            if text or tokens or finish:
                lp = p.logprobs_block(tokens, offsets[i]) if req.logprobs is not None else None
                offsets[i] += len(text)
                yield chunk([p.choice(i, text, finish, lp)])
            if finish:
                open_.discard(i)
    if req.include_usage:
        body = p.envelope(cid, model, [])
        body["usage"] = p.usage(prompt_tokens, sum(s.tokens for s in streams))
        yield p.sse(body)
    yield p.sse("[DONE]")


async def collect(request: Request, req: p.CompletionRequest, model: str, streams: list[Stream],
                  event: asyncio.Event, prompt_tokens: int) -> dict[str, Any]:
    """The whole completion, waiting for every choice; a client that leaves ends it."""
    texts = [req.prompts[i // req.n] if req.echo else "" for i in range(len(streams))]
    tokens: list[list] = [[] for _ in streams]
    finish: list[str | None] = [None] * len(streams)
    while True:
        for i, s in enumerate(streams):
            text, toks, f = s.take()
            texts[i] += text
            tokens[i] += toks
            finish[i] = finish[i] or f
        if all(finish):
            break
        try:
            await asyncio.wait_for(event.wait(), 0.5)
        except asyncio.TimeoutError:
            if await request.is_disconnected():
                raise p.ApiError(499, "the client went away") from None
        event.clear()
    choices = []
    for i, text in enumerate(texts):
        start = len(req.prompts[i // req.n]) if req.echo else 0
        lp = p.logprobs_block(tokens[i], start) if req.logprobs is not None else None
        choices.append(p.choice(i, text, finish[i], lp))
    body = p.envelope(p.completion_id(), model, choices)
    body["usage"] = p.usage(prompt_tokens, sum(s.tokens for s in streams))
    return body
