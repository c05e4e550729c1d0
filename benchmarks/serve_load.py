"""Load on a real `charnn serve`: 1, 4, 16 and 64 concurrent streaming clients on localhost.

    python benchmarks/serve_load.py [--checkpoint RUN | --hidden 512 --layers 2]
                                    [--clients 1,4,16,64] [--duration 20] [--max-tokens 200] [--json]

Starts `charnn serve` as its own process on a free 127.0.0.1 port (one model, 1 thread, its
--max-streams set to the largest client count), then for each client count C runs C asyncio
clients (httpx), each sending streaming completions (max_tokens --max-tokens, temperature 0.8, a
seed of its own) back to back for --duration seconds. Per level it reports:

  chars/s      aggregate characters received per second over all clients
  x 1 client   that figure over the 1-client figure of the same run (the batch-1 reference)
  TTFT p50/p99 time to first token: from sending a request to its first text, in ms
  requests     completions finished; errors: requests that failed (any non-200, a broken stream)

The model is --checkpoint's, or a (layers x hidden) char LSTM trained for one step on a
generated text (speed does not depend on the weights). Clients and server share the machine,
so the client side (parsing server-sent events) takes a part of the CPU the server would have:
the figures are a lower bound for the server alone. Targets (issue 15, 2 cores): 16 clients
>= 5x the aggregate chars/s of 1 client, p99 TTFT < 250 ms at 16 clients, 0 errors.
Not a test: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_info import cpu_name  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", help="serve this run instead of a generated model")
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--clients", default="1,4,16,64")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of load per client count")
    ap.add_argument("--max-tokens", type=int, default=200, help="tokens per completion")
    ap.add_argument("--threads", type=int, default=1, help="the server's --threads")
    ap.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = ap.parse_args()
    levels = [int(c) for c in args.clients.split(",")]

    with tempfile.TemporaryDirectory(prefix="serve_load.") as tmp:
        run = args.checkpoint or make_run(Path(tmp) / "model", args.layers, args.hidden)
        proc, url = start_server(run, max(levels), args.threads, Path(tmp) / "serve.log")
        try:
            asyncio.run(level(url, 1, 2.0, args.max_tokens))            # warm-up: first steps, sockets
            rows = [asyncio.run(level(url, c, args.duration, args.max_tokens)) for c in levels]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    report(args, rows, url)


def make_run(path: Path, layers: int, hidden: int) -> str:
    """A char LSTM of the given size, trained for one step (a real run folder for charnn serve)."""
    from charnn.config import ModelConfig, TrainConfig
    from charnn.tokenizers.char import CharTokenizer
    from charnn.training.dataset import TrainData
    from charnn.training.trainer import train

    text = "".join(chr(32 + (i * 7919) % 95) for i in range(20_000)) + "\n"
    tok = CharTokenizer.fit(lambda: [text])
    ids = tok.encode(text)
    data = TrainData(tok, ids[:18_000], ids[18_000:], len(ids) - 18_000)
    train(ModelConfig(vocab_size=tok.vocab_size, layers=layers, hidden=hidden, embed_dim=128),
          TrainConfig(seq_len=32, batch_size=4, max_steps=1, eval_every=1, warmup=0, device="cpu"), data, path)
    return str(path)


def start_server(run: str, max_streams: int, threads: int, log: Path) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = open(log, "w")
    proc = subprocess.Popen([sys.executable, "-m", "charnn", "serve", run, "--port", "0", "--threads", str(threads),
                             "--max-streams", str(max_streams)], env=env, stdout=subprocess.DEVNULL, stderr=out)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        m = re.search(r"on (http://127\.0\.0\.1:\d+) ", log.read_text())
        if m:
            return proc, m.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"charnn serve did not start:\n{log.read_text()}")


async def level(url: str, clients: int, duration: float, max_tokens: int) -> dict:
    """`clients` clients streaming completions back to back for `duration` seconds."""
    import httpx

    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        t0 = time.monotonic()
        results = await asyncio.gather(*(client(http, i, t0 + duration, max_tokens) for i in range(clients)))
        elapsed = time.monotonic() - t0
    ttft = sorted(t for r in results for t in r["ttft"])
    chars = sum(r["chars"] for r in results)
    return {"clients": clients, "seconds": elapsed, "chars": chars, "chars_per_s": chars / elapsed,
            "requests": sum(r["requests"] for r in results), "errors": sum(r["errors"] for r in results),
            "ttft_p50_ms": pct(ttft, 0.50) * 1e3, "ttft_p99_ms": pct(ttft, 0.99) * 1e3}


async def client(http, i: int, deadline: float, max_tokens: int) -> dict:
    out = {"chars": 0, "requests": 0, "errors": 0, "ttft": []}
    seed = i * 100_000
    while time.monotonic() < deadline:
        seed += 1
        body = {"prompt": "\n", "max_tokens": max_tokens, "temperature": 0.8, "seed": seed, "stream": True}
        t0, first, done = time.monotonic(), None, False
        try:
            async with http.stream("POST", "/v1/completions", json=body) as r:
                if r.status_code != 200:
                    out["errors"] += 1
                    await r.aread()
                    continue
                async for line in r.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    if line == "data: [DONE]":
                        done = True
                        break
                    text = json.loads(line[6:])["choices"][0]["text"]
                    if text and first is None:
                        first = time.monotonic() - t0
                    out["chars"] += len(text)
        except Exception:       # noqa: BLE001 (a broken stream is an error to count, not to stop on)
            done = False
        out["requests" if done else "errors"] += 1
        if first is not None:
            out["ttft"].append(first)
    return out


def pct(xs: list[float], q: float) -> float:
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def report(args: argparse.Namespace, rows: list[dict], url: str) -> None:
    import torch

    base = next((r["chars_per_s"] for r in rows if r["clients"] == 1), None)
    print(f"# serve_load: python {' '.join(sys.argv)}")
    print(f"# {datetime.datetime.now():%Y-%m-%d %H:%M}, {cpu_name()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, torch {torch.__version__}; server {url}, --threads {args.threads}")
    model = args.checkpoint or f"generated {args.layers}x{args.hidden} LSTM, 95 chars"
    print(f"# model: {model}; {args.max_tokens} tokens per completion, {args.duration:g} s per level")
    print(f"{'clients':>7} {'chars/s':>9} {'x 1 client':>10} {'TTFT p50 ms':>12} {'TTFT p99 ms':>12} "
          f"{'requests':>9} {'errors':>7}")
    for r in rows:
        ratio = f"{r['chars_per_s'] / base:.1f}x" if base else "-"
        print(f"{r['clients']:>7} {r['chars_per_s']:>9,.0f} {ratio:>10} {r['ttft_p50_ms']:>12.1f} "
              f"{r['ttft_p99_ms']:>12.1f} {r['requests']:>9} {r['errors']:>7}")
    if args.json:
        print(json.dumps({"argv": sys.argv, "rows": rows}))


if __name__ == "__main__":
    main()
