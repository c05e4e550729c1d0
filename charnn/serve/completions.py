"""POST /v1/completions: a request becomes one engine Stream per (prompt, choice); the answer
is one JSON object, or server-sent events as the text is made ("stream": true).

Each choice holds one slot of --max-streams (Served.take) from admission until it ends or its
client goes away: a streamed response gives its slots back however it ends (Completion), a
waiting one when it returns, and a client that leaves either way cancels its streams, whose rows
leave the batch at the next step.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from charnn.errors import CharnnError
from charnn.sampling.generate import SHORT_PRIME
from charnn.serve import protocol as p
from charnn.serve.engine import Engine, EngineClosed, Job, Stream

if TYPE_CHECKING:
    from charnn.serve.app import Served


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
    """A prompt -> (its token ids, the ids to start from), as `charnn sample` starts a stream
    (charnn.sampling.generate.start_ids: after a line break, or a document model's end token)."""
    from charnn.sampling.generate import encode_prime, start_ids

    tok = engine.tokenizer
    try:
        ids = encode_prime(tok, text) if text else []
    except CharnnError as e:
        raise p.ApiError(400, str(e).replace("the prime text", "the prompt"), "prompt", "invalid_prompt") from None
    return ids, start_ids(tok, text)


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
        event.set()
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
    if "error" in finish:           # the engine failed (a bug, logged on stderr), not the request
        raise p.ApiError(500, "internal error while generating (see the server's log)", kind="server_error")
    choices = []
    for i, text in enumerate(texts):
        start = len(req.prompts[i // req.n]) if req.echo else 0
        lp = p.logprobs_block(tokens[i], start) if req.logprobs is not None else None
        choices.append(p.choice(i, text, finish[i], lp))
    body = p.envelope(p.completion_id(), model, choices)
    body["usage"] = p.usage(prompt_tokens, sum(s.tokens for s in streams))
    return body
