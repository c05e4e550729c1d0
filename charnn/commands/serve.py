"""charnn serve: an OpenAI-compatible completions API and a web playground for trained runs."""

from __future__ import annotations

import sys
from typing import Optional

import typer

Opt = typer.Option


def register(app: typer.Typer) -> None:
    from charnn.commands.guard import guard

    app.command(
        "serve",
        short_help="Serve runs over HTTP: an OpenAI-compatible completions API and a web playground.",
        help="Serve trained runs over HTTP: an OpenAI-compatible completions API (POST "
        "/v1/completions, GET /v1/models; streaming as server-sent events) and a web playground at /. "
        "Concurrent requests are sampled together in one batched step. RUN is a run folder, a "
        "checkpoint file or a run name under checkpoints/ (default: the newest run); give several "
        "to serve several models, each named after its run. The listening address goes to stderr.\n\n"
        "Example: charnn serve checkpoints/shakespeare --port 8000   (then open http://127.0.0.1:8000)",
    )(guard(serve_cmd))


def serve_cmd(
    runs: Optional[list[str]] = typer.Argument(None, help="Run folders or checkpoints. "
                                               "[default: newest under checkpoints/]"),
    host: str = Opt("127.0.0.1", help="Address to listen on. 127.0.0.1 is this machine only; 0.0.0.0 is every "
                    "network this machine is on (give a --token then)."),
    port: int = Opt(8000, help="Port to listen on (0: any free port; the address chosen is printed on stderr)."),
    token: Optional[str] = Opt(None, envvar="CHARNN_TOKEN", help="Require 'Authorization: Bearer TOKEN' on every "
                               "request but the playground page (401 otherwise). From the environment variable "
                               "CHARNN_TOKEN if set, which keeps it out of the process list. [default: none]"),
    max_streams: int = Opt(64, help="Completions in flight at once, over all clients and models; more get 429 "
                           "with Retry-After."),
    max_tokens: int = Opt(4096, help="The largest max_tokens a request may ask for."),
    max_prompt: int = Opt(16384, help="The longest prompt, in characters."),
    max_n: int = Opt(8, help="Completions one request may ask for (n times the number of prompts)."),
    max_body: int = Opt(1 << 20, help="The largest request body, in bytes (413 beyond)."),
    quantize: str = Opt("none", help="none, or int8: the recurrent and output weights in int8 (faster, a little "
                        "less accurate; seeded output then differs from `charnn sample` in fp32)."),
    threads: int = Opt(1, help="CPU threads for the batched step. One suits small batches; more can help "
                       "with many clients on a large model."),
    access_log: bool = Opt(False, "--access-log", help="Log every request on stderr."),
):
    from charnn.errors import CharnnError

    if not 0 <= port <= 65535:
        raise CharnnError("--port must be between 0 and 65535", 2)
    limits = _limits(max_streams, max_tokens, max_prompt, max_n, max_body, threads)
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise CharnnError("charnn serve needs starlette and uvicorn: pip install 'charnn[serve]'") from None
    import torch

    from charnn.run import load
    from charnn.sampling import quantize as q
    from charnn.serve import server
    from charnn.serve.app import create_app

    quantize = q.check(quantize, "cpu")
    torch.set_num_threads(threads)
    loaded = [load(r, mmap=True) for r in (runs or [None])]
    # on loopback, only requests addressed to this machine (see charnn.serve.app.HostCheck)
    hosts = ["localhost", "127.0.0.1", "[::1]", host if ":" not in host else f"[{host}]"] \
        if server.is_loopback(host) else None
    app = create_app(loaded, limits, token or None, quantize, hosts)
    if not server.is_loopback(host) and not token:
        say(f"warning: listening on {host} without --token: anyone who can reach this machine can use the "
            "server (give --token, or CHARNN_TOKEN)")

    def on_listen(url: str) -> None:
        names = ", ".join(r.name for r in loaded)
        say(f"charnn serve: {names} on {url}  (API {url}/v1, playground {url}/; Ctrl-C or SIGTERM stops)")

    server.run(app, host, port, access_log, on_listen, app.state.served.shutdown)
    say("charnn serve: stopped")


def _limits(max_streams: int, max_tokens: int, max_prompt: int, max_n: int, max_body: int, threads: int):
    from charnn.errors import CharnnError
    from charnn.serve.protocol import Limits

    for name, value in (("--max-streams", max_streams), ("--max-tokens", max_tokens), ("--max-prompt", max_prompt),
                        ("--max-n", max_n), ("--max-body", max_body), ("--threads", threads)):
        if value < 1:
            raise CharnnError(f"{name} must be at least 1", 2)
    return Limits(max_body=max_body, max_prompt=max_prompt, max_tokens=max_tokens, max_n=max_n,
                  max_streams=max_streams)


def say(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
