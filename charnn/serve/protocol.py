"""The OpenAI completions format: reading a request body into a CompletionRequest (every field
checked: type, range, the server's limits) and writing responses, stream chunks and errors.

Anything wrong with a request is an ApiError, which the app answers as OpenAI does:
    HTTP 4xx  {"error": {"message": "...", "type": "invalid_request_error", "param": "n", "code": null}}
Fields are OpenAI's (`model`, `prompt`, `max_tokens`, `temperature`, `top_p`, `n`, `stop`,
`seed`, `stream`, `stream_options`, `logprobs`, `echo`, `user`) plus charnn's own `top_k` and
`topic`; OpenAI fields charnn cannot honour (`suffix`, `best_of` > n, penalties, `logit_bias`)
are accepted only at their neutral values, and a field nobody knows is an error (a typo such
as "temp" would otherwise be ignored in silence).
"""

from __future__ import annotations

import json
import math
import secrets
import time
from dataclasses import dataclass
from typing import Any

from charnn.serve.picker import Sampling

MAX_SEED = 2 ** 62          # seeds run up to seed + n - 1 and a torch.Generator takes 64 bits


@dataclass(frozen=True)
class Limits:
    """What one server accepts (each a `charnn serve` option)."""

    max_body: int = 1 << 20          # bytes of one request body
    max_prompt: int = 16_384         # characters of one prompt
    max_tokens: int = 4096           # tokens one completion may ask for
    max_n: int = 8                   # completions one request may ask for (n x prompts)
    max_streams: int = 64            # completions in flight on the whole server
    max_stops: int = 4
    max_stop_len: int = 256


class ApiError(Exception):
    """An error answered as JSON with an HTTP status (never a 5xx for anything a client sends)."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error", headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


@dataclass(frozen=True)
class CompletionRequest:
    model: str | None
    prompts: tuple[str, ...]
    max_tokens: int
    sampling: Sampling
    n: int
    seed: int
    stops: tuple[str, ...]
    stream: bool
    include_usage: bool
    logprobs: int | None
    echo: bool
    topic: str | None


FIELDS = {"model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "n", "stop", "seed", "stream",
          "stream_options", "logprobs", "echo", "user", "topic", "suffix", "best_of", "presence_penalty",
          "frequency_penalty", "logit_bias"}


def parse_body(raw: bytes) -> dict[str, Any]:
    """Request bytes -> the JSON object they hold (ApiError 400 for anything else)."""
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        # ValueError covers malformed JSON and integers too long to convert
        raise ApiError(400, f"the request body is not valid JSON: {_short(e)}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def completion_request(body: dict[str, Any], limits: Limits) -> CompletionRequest:
    """A JSON object -> a checked CompletionRequest (ApiError 400 naming the field otherwise)."""
    unknown = sorted(k for k in body if k not in FIELDS)
    if unknown:
        raise ApiError(400, f"unknown field {unknown[0][:60]!r} (fields: {', '.join(sorted(FIELDS))})", unknown[0][:60])
    _neutral(body)
    model = _opt(body, "model", str)
    prompts = _prompts(body.get("prompt"), limits)
    n = _int(body, "n", 1, 1, limits.max_n)
    if n * len(prompts) > limits.max_n:
        raise ApiError(400, f"n x prompts asks for {n * len(prompts)} completions; this server allows "
                       f"{limits.max_n} per request", "n")
    seed = _int(body, "seed", None, 0, MAX_SEED)
    stream_options = _opt(body, "stream_options", dict) or {}
    if set(stream_options) - {"include_usage"}:
        raise ApiError(400, "stream_options takes only include_usage", "stream_options")
    return CompletionRequest(
        model=model,
        prompts=prompts,
        max_tokens=_int(body, "max_tokens", 16, 0, limits.max_tokens),
        sampling=Sampling(_num(body, "temperature", 1.0, 0.0, 2.0), _int(body, "top_k", 0, 0, 1 << 30),
                          _top_p(body)),
        n=n,
        seed=secrets.randbits(62) if seed is None else seed,
        stops=_stops(body.get("stop"), limits),
        stream=_opt(body, "stream", bool) or False,
        include_usage=_flag(stream_options, "include_usage", "stream_options.include_usage"),
        logprobs=_int(body, "logprobs", None, 0, 5),
        echo=_opt(body, "echo", bool) or False,
        topic=_opt(body, "topic", str),
    )


def _neutral(body: dict[str, Any]) -> None:
    """OpenAI fields charnn does not implement: only their neutral values pass."""
    for name in ("presence_penalty", "frequency_penalty"):
        v = _num(body, name, 0.0, -2.0, 2.0)
        if v != 0:
            raise ApiError(400, f"{name} is not supported by charnn (give 0 or leave it out)", name)
    if _opt(body, "suffix", str):
        raise ApiError(400, "suffix is not supported by charnn", "suffix")
    if _opt(body, "logit_bias", dict):
        raise ApiError(400, "logit_bias is not supported by charnn", "logit_bias")
    best_of = _int(body, "best_of", None, 1, 1 << 30)
    if best_of is not None and best_of != (_int(body, "n", 1, 1, 1 << 30)):
        raise ApiError(400, "best_of is not supported by charnn (leave it out, or equal to n)", "best_of")
    _opt(body, "user", str)


def _prompts(v: Any, limits: Limits) -> tuple[str, ...]:
    if v is None:
        prompts: list[Any] = [""]
    elif isinstance(v, str):
        prompts = [v]
    elif isinstance(v, list) and v and all(isinstance(p, str) for p in v):
        prompts = v
    elif isinstance(v, list) and v and all(isinstance(p, int) for p in v):
        raise ApiError(400, "give the prompt as text: charnn does not take token ids", "prompt")
    else:
        raise ApiError(400, "prompt must be a string or a non-empty list of strings", "prompt")
    if len(prompts) > limits.max_n:
        raise ApiError(400, f"at most {limits.max_n} prompts per request", "prompt")
    for p in prompts:
        if len(p) > limits.max_prompt:
            raise ApiError(400, f"the prompt is {len(p):,} characters; this server takes at most "
                           f"{limits.max_prompt:,}", "prompt", "prompt_too_long")
        if any(0xD800 <= ord(c) <= 0xDFFF for c in p):
            raise ApiError(400, "the prompt holds a lone surrogate (not text)", "prompt")
    return tuple(prompts)


def _stops(v: Any, limits: Limits) -> tuple[str, ...]:
    stops = [] if v is None else [v] if isinstance(v, str) else v
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise ApiError(400, "stop must be a string or a list of strings", "stop")
    if len(stops) > limits.max_stops:
        raise ApiError(400, f"at most {limits.max_stops} stop texts", "stop")
    if any(len(s) > limits.max_stop_len for s in stops):
        raise ApiError(400, f"a stop text may be at most {limits.max_stop_len} characters", "stop")
    return tuple(s for s in stops if s)


def _top_p(body: dict[str, Any]) -> float:
    p = _num(body, "top_p", 1.0, 0.0, 1.0)
    if p == 0:
        raise ApiError(400, "top_p must be in (0, 1]", "top_p")
    return p


def _opt(body: dict[str, Any], name: str, kind: type) -> Any:
    v = body.get(name)
    if v is not None and not isinstance(v, kind):
        raise ApiError(400, f"{name} must be {_KINDS[kind]}", name)
    return v


def _flag(body: dict[str, Any], name: str, shown: str) -> bool:
    v = body.get(name)
    if v is not None and not isinstance(v, bool):
        raise ApiError(400, f"{shown} must be true or false", shown)
    return bool(v)


def _int(body: dict[str, Any], name: str, default: int | None, lo: int, hi: int) -> int | None:
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise ApiError(400, f"{name} must be an integer", name)
    if not lo <= v <= hi:
        raise ApiError(400, f"{name} must be between {lo} and {hi:,}", name)
    return v


def _num(body: dict[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ApiError(400, f"{name} must be a number", name)
    v = float(v)
    if not (math.isfinite(v) and lo <= v <= hi):
        raise ApiError(400, f"{name} must be between {lo:g} and {hi:g}", name)
    return v


_KINDS = {str: "a string", bool: "true or false", dict: "an object", int: "an integer"}


def _short(e: Exception) -> str:
    return str(e).splitlines()[0][:120] if str(e) else type(e).__name__


# -- responses ------------------------------------------------------------------------------------


def completion_id() -> str:
    return "cmpl-" + secrets.token_hex(12)


def envelope(cid: str, model: str, choices: list[dict[str, Any]], created: int | None = None) -> dict[str, Any]:
    return {"id": cid, "object": "text_completion", "created": created or int(time.time()), "model": model,
            "choices": choices}


def choice(index: int, text: str, finish: str | None, logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"text": text, "index": index, "logprobs": logprobs, "finish_reason": finish}


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def logprobs_block(tokens: list[Any], offset: int) -> dict[str, Any]:
    """OpenAI's legacy logprobs object for Tokens (charnn.serve.engine.Token), text offsets
    counted from `offset` (the characters of the choice's text before these tokens)."""
    offsets = []
    for t in tokens:
        offsets.append(offset)
        offset += len(t.text)
    return {"tokens": [t.text for t in tokens], "token_logprobs": [t.logprob for t in tokens],
            "top_logprobs": [t.top for t in tokens], "text_offset": offsets}


def sse(obj: Any) -> bytes:
    """One server-sent event carrying a JSON object (or the literal [DONE])."""
    data = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False, allow_nan=False)
    return f"data: {data}\n\n".encode()
