"""charnn serve: the OpenAI-compatible API (through Starlette's TestClient), continuous batching
(streams joining and leaving give each stream exactly its `charnn sample` text), limits, auth,
fuzzed bodies, and a real `charnn serve` process for load, disconnects and SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
import torch

from charnn.config import ModelConfig, SampleConfig, TrainConfig
from charnn.run import load
from charnn.sampling.generate import Picker, sample_text, start_ids
from charnn.serve.app import create_app
from charnn.serve.engine import Engine, Job, Stream
from charnn.serve.picker import BatchPicker, Draws, Sampling
from charnn.serve.protocol import Limits
from charnn.training.trainer import train
from tests.conftest import cli
from tests.test_export import lee_text
from tests.test_model import _data

# Starlette's TestClient asks for httpx2 in place of httpx; httpx still works
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

LONG_PRIME = "The Prime Minister said on Tuesday that the government would "     # > SHORT_PRIME tokens


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A small char LSTM trained for a few steps on real text, in a folder named 'tiny'."""
    data = _data(lee_text(20_000))
    out = tmp_path_factory.mktemp("serve") / "tiny"
    torch.manual_seed(0)
    train(ModelConfig(vocab_size=data.tokenizer.vocab_size, layers=2, hidden=32, embed_dim=16),
          TrainConfig(seq_len=32, batch_size=8, max_steps=20, eval_every=10, warmup=5), data, out)
    return out


@pytest.fixture(scope="module")
def client(run_dir):
    from starlette.testclient import TestClient

    with TestClient(create_app([load(run_dir)], Limits(max_tokens=512, max_prompt=2000, max_n=4, max_body=4096))) as c:
        yield c


def complete(client, **body) -> dict:
    r = client.post("/v1/completions", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def sse(lines) -> list:
    """Server-sent event data lines -> the JSON objects, and "[DONE]" as it comes."""
    out = []
    for line in lines:
        if line.startswith("data: "):
            data = line[len("data: "):]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


# -- picking and batching ---------------------------------------------------------------------------


def test_batch_picker_draws_what_picker_draws_row_by_row():
    """Rows with their own seeds and settings in one batch pick exactly what a Picker picks for
    each alone, step after step (past a block of uniforms)."""
    settings = [Sampling(1.0), Sampling(0.7), Sampling(0.0), Sampling(1.3, top_k=4), Sampling(0.9, top_p=0.8),
                Sampling(1.0, top_k=3, top_p=0.5), Sampling(0.7)]
    seeds = [1, 2, 3, 4, 5, 6, 2]
    V = 11
    pickers = [Picker(1, V, s.temperature, s.top_k, s.top_p, seed) for s, seed in zip(settings, seeds)]
    draws = [Draws(seed) for seed in seeds]
    batch = BatchPicker(settings)
    g = torch.Generator().manual_seed(0)
    for _ in range(Picker.BLOCK + 50):
        logits = torch.randn(len(settings), V, generator=g) * 3
        us = [d.next() if s.temperature > 0 else 0.5 for d, s in zip(draws, settings)]
        got = batch(logits, us).tolist()
        want = [int(p(logits[i:i + 1])[0]) for i, p in enumerate(pickers)]
        assert got == want


def test_a_resized_stepper_shares_the_weights_and_steps_like_a_new_one():
    from charnn.model import RNNLM
    from charnn.sampling.stepper import Stepper

    torch.manual_seed(0)
    model = RNNLM(ModelConfig(vocab_size=9, layers=2, hidden=16, embed_dim=4)).eval()
    one = Stepper(model, 1)
    three, fresh = one.resized(3), Stepper(model, 3)
    assert three.table is one.table and three.batch_size == 3 and one.batch_size == 1
    ids = torch.tensor([1, 5, 7])
    for _ in range(4):
        assert torch.equal(three.step(ids), fresh.step(ids))
    assert one.h.shape == (1, 32) and not one.h.any()                  # the original's buffers untouched


def test_stop_filter_ends_at_the_first_of_several_stop_texts():
    from charnn.sampling.generate import StopFilter

    f = StopFilter(["END", "\n\n"])
    out = "".join(f.feed(piece) for piece in ["one\ntw", "o\n", "\nthree END"]) + f.flush()
    assert out == "one\ntwo" and f.done
    f = StopFilter(["xyz", "b"])
    assert f.feed("aaxy") + f.feed("b") == "aaxy" and f.done
    assert StopFilter(None).feed("abc") == "abc" and StopFilter("").feed("abc") == "abc"


def test_streams_that_join_and_leave_the_batch_each_get_their_own_sample(run_dir):
    """The engine's continuous batching: streams arrive at different steps, one is cancelled half
    way, batch sizes change all the time; each finished stream's text is the one generate()
    gives it alone (the text of `charnn sample` with its seed)."""
    run = load(run_dir)
    cases = [("The ", Sampling(0.8), 5, 150, ()), ("", Sampling(1.0), 1, 120, ()),
             (LONG_PRIME, Sampling(0.7, top_k=5), 3, 100, ()), ("a", Sampling(0.0), 0, 60, ()),
             ("in ", Sampling(1.2, top_p=0.9), 9, 200, ("the",)), ("Mr ", Sampling(1.0, top_k=3, top_p=0.6), 2, 90, ()),
             ("Cancel", Sampling(1.0), 4, 400, ())]
    engine = Engine(run)
    engine.start()

    async def serve_all():
        loop, event = asyncio.get_running_loop(), asyncio.Event()
        streams = []
        for k, (prime, sampling, seed, length, stops) in enumerate(cases):
            ids = start_ids(run.tokenizer, prime)          # what charnn sample starts from
            job = Job(engine.prepare(ids), sampling, seed, length, stops)
            streams.append(Stream(job, run.tokenizer, loop, event))
            if k >= 2:                  # the first three start together, the others one by one
                engine.submit(streams[-3:] if k == 2 else streams[-1:])
                await asyncio.sleep(0.002)
        texts = [""] * len(streams)
        while True:
            await asyncio.wait_for(event.wait(), 10)
            event.clear()
            for i, s in enumerate(streams):
                texts[i] += s.take()[0]
            if len(texts[-1]) >= 20 and not streams[-1].cancelled:
                engine.cancel(streams[-1:])
            if all(s.done for s in streams[:-1]):
                return texts, streams

    texts, streams = asyncio.run(serve_all())
    for (prime, s, seed, length, stops), text, stream in list(zip(cases, texts, streams))[:-1]:
        cfg = SampleConfig(length=length, temperature=s.temperature, top_k=s.top_k, top_p=s.top_p, prime=prime,
                           stop=stops[0] if stops else None, seed=seed)
        assert text == sample_text(run.model, run.tokenizer, cfg)[0][len(prime):], prime
        assert stream.finish_reason == ("stop" if len(text) < length else "length")
    assert streams[-1].cancelled and not streams[-1].done
    assert engine.steps < sum(c[3] for c in cases[:-1])          # rows were stepped together
    deadline = time.monotonic() + 5
    while engine.open_streams and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.open_streams == 0 and engine.rows == []
    engine.shutdown()
    engine.join(5)


def test_a_failing_step_ends_its_streams_with_an_error_and_the_engine_goes_on(run_dir, capsys):
    run = load(run_dir)
    engine = Engine(run)
    steps, step = [0], engine._step

    def fails_once() -> None:
        steps[0] += 1
        if steps[0] == 5:
            raise RuntimeError("a bug")
        step()

    engine._step = fails_once
    engine.start()

    async def finish(streams: list[Stream], event: asyncio.Event) -> list:
        while not all(s.done for s in streams):
            await asyncio.wait_for(event.wait(), 10)
            event.clear()
        return [s.finish_reason for s in streams]

    async def main():
        loop, event = asyncio.get_running_loop(), asyncio.Event()
        first = [Stream(Job(engine.prepare([1, 2]), Sampling(), i, 100), run.tokenizer, loop, event) for i in range(3)]
        engine.submit(first)
        assert await finish(first, event) == ["error"] * 3
        again = [Stream(Job(engine.prepare([1]), Sampling(), 9, 20), run.tokenizer, loop, event)]
        engine.submit(again)
        assert await finish(again, event) == ["length"]

    asyncio.run(main())
    assert "RuntimeError: a bug" in capsys.readouterr().err
    engine.shutdown()
    engine.join(5)


# -- the API ------------------------------------------------------------------------------------------


def test_models_lists_the_runs_with_config_and_loss_curve(client):
    models = client.get("/v1/models").json()
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == ["tiny"]
    card = models["data"][0]
    assert card["object"] == "model" and card["owned_by"] == "charnn"
    assert card["charnn"]["config"]["hidden"] == 32 and card["charnn"]["tokenizer"] == "char"
    assert card["charnn"]["best_val_loss"] > 0 and len(card["charnn"]["history"]) == 2
    assert "path" not in json.dumps(card)                       # no file system paths to clients
    assert client.get("/v1/models/tiny").json() == card
    for name in ("nope", "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd"):
        r = client.get(f"/v1/models/{name}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found", name


SAMPLE_CASES = [
    # (prompt, CLI options, API fields)
    ("ROMEO:", ["--temp", "0.8"], {"temperature": 0.8}),
    ("", [], {}),
    (LONG_PRIME, ["--temp", "0.7", "--top-k", "5", "--top-p", "0.9"], {"temperature": 0.7, "top_k": 5, "top_p": 0.9}),
    ("the", ["--temp", "0"], {"temperature": 0}),
    ("said ", ["--stop", "e "], {"stop": "e "}),
]


@pytest.mark.parametrize("prompt,options,fields", SAMPLE_CASES)
def test_a_seeded_completion_is_the_text_charnn_sample_prints(client, run_dir, prompt, options, fields):
    res = cli("sample", str(run_dir), "--seed", "7", "--length", "150", "--prime", prompt, *options)
    assert res.exit_code == 0, res.stderr
    body = complete(client, model="tiny", prompt=prompt, max_tokens=150, seed=7, **fields)
    text = body["choices"][0]["text"]
    assert res.stdout == prompt + text + ("" if text.endswith("\n") else "\n")
    assert body["choices"][0]["finish_reason"] == ("stop" if "stop" in fields else "length")
    assert body["usage"]["prompt_tokens"] == len(prompt)
    assert body["usage"]["completion_tokens"] == (150 if "stop" not in fields else body["usage"]["completion_tokens"])


def test_choice_i_of_n_is_the_sample_of_seed_plus_i(client, run_dir):
    body = complete(client, prompt="He ", max_tokens=80, seed=20, n=3, temperature=0.9)
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    for i, c in enumerate(body["choices"]):
        alone = complete(client, prompt="He ", max_tokens=80, seed=20 + i, temperature=0.9)
        assert c["text"] == alone["choices"][0]["text"]
    assert len({c["text"] for c in body["choices"]}) == 3
    two = complete(client, prompt=["a", "b"], max_tokens=10, seed=1, n=2)     # prompt i, choice j -> index 2i + j
    assert two["choices"][2]["text"] == complete(client, prompt="b", max_tokens=10, seed=1)["choices"][0]["text"]


def test_streaming_sends_the_same_text_in_chunks_and_ends_with_done(client):
    body = {"prompt": "The ", "max_tokens": 200, "seed": 3, "temperature": 0.8}
    whole = complete(client, **body)["choices"][0]["text"]
    with client.stream("POST", "/v1/completions", json={**body, "stream": True,
                                                         "stream_options": {"include_usage": True}}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = sse(r.iter_lines())
    assert events[-1] == "[DONE]"
    usage = events[-2]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 200
    chunks = events[:-2]
    assert all(e["object"] == "text_completion" and e["id"] == chunks[0]["id"] for e in chunks)
    assert "".join(e["choices"][0]["text"] for e in chunks) == whole
    assert [e["choices"][0]["finish_reason"] for e in chunks][-1] == "length"
    assert all(e["choices"][0]["finish_reason"] is None for e in chunks[:-1])


def test_logprobs_and_echo(client):
    body = complete(client, prompt="The ", max_tokens=20, seed=1, logprobs=3, echo=True)
    c = body["choices"][0]
    assert c["text"].startswith("The ")
    lp = c["logprobs"]
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == 20
    assert "".join(lp["tokens"]) == c["text"][4:]
    assert lp["text_offset"][0] == 4 and all(v <= 0 for v in lp["token_logprobs"])
    assert all(len(top) <= 3 and max(top.values()) >= v for top, v in zip(lp["top_logprobs"], lp["token_logprobs"]))
    assert complete(client, prompt="x", max_tokens=0)["choices"][0] == {
        "text": "", "index": 0, "logprobs": None, "finish_reason": "length"}
    with client.stream("POST", "/v1/completions", json={"prompt": "x", "max_tokens": 0, "stream": True}) as r:
        events = sse(r.iter_lines())
    assert events[-1] == "[DONE]" and events[0]["choices"][0]["finish_reason"] == "length"


BAD = [
    # (body or raw bytes, status, a word of the message)
    (b"{not json", 400, "not valid JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (b"\xff\xfe", 400, "not valid JSON"),
    (b'{"prompt": NaN}', 400, "not valid JSON"),
    (b"[" * 100_000, 413, "over"),
    ({"prompt": 5}, 400, "prompt"),
    ({"prompt": [1, 2, 3]}, 400, "token ids"),
    ({"prompt": "\u00a7\u2603 unknown chars"}, 400, "not in the model's vocabulary"),
    ({"prompt": "x" * 2001}, 400, "at most 2,000"),
    ({"max_tokens": 513}, 400, "max_tokens"),
    ({"max_tokens": -1}, 400, "max_tokens"),
    ({"max_tokens": "10"}, 400, "integer"),
    ({"max_tokens": True}, 400, "integer"),
    ({"temperature": -0.1}, 400, "temperature"),
    ({"temperature": "hot"}, 400, "number"),
    ({"top_p": 0}, 400, "top_p"),
    ({"top_k": -2}, 400, "top_k"),
    ({"n": 5}, 400, "n must be"),
    ({"n": 3, "prompt": ["a", "b"]}, 400, "6 completions"),
    ({"seed": -1}, 400, "seed"),
    ({"stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
    ({"stop": 3}, 400, "stop"),
    ({"stream": "yes"}, 400, "stream"),
    ({"temp": 0.5}, 400, "unknown field 'temp'"),
    ({"presence_penalty": 1.0}, 400, "not supported"),
    ({"best_of": 3}, 400, "best_of"),
    ({"logprobs": 9}, 400, "logprobs"),
    ({"topic": "war"}, 400, "--input bow"),
    ({"model": "nope"}, 404, "does not exist"),
    ({"model": "../tiny"}, 404, "does not exist"),
]


@pytest.mark.parametrize("body,status,word", BAD)
def test_bad_requests_get_4xx_in_openais_error_shape(client, body, status, word):
    r = (client.post("/v1/completions", content=body, headers={"content-type": "application/json"})
         if isinstance(body, bytes) else client.post("/v1/completions", json=body))
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert word in err["message"] and set(err) == {"message", "type", "param", "code"}


def test_a_body_must_be_sent_as_json(client):
    for headers in ({}, {"content-type": "text/plain"}, {"content-type": "application/x-www-form-urlencoded"}):
        r = client.post("/v1/completions", content=b'{"prompt": "a"}', headers=headers)
        assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"
    r = client.post("/v1/completions", content=b'{"max_tokens": 1}',
                    headers={"content-type": "application/json; charset=utf-8"})
    assert r.status_code == 200


def test_on_loopback_only_requests_addressed_to_this_machine_are_answered(run_dir):
    from starlette.testclient import TestClient

    app = create_app([load(run_dir)], allowed_hosts=["localhost", "127.0.0.1", "[::1]"])
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        assert c.get("/v1/models").status_code == 200
        for host in ("localhost:8000", "[::1]:8000", "127.0.0.1"):
            assert c.get("/v1/models", headers={"host": host}).status_code == 200, host
        for host in ("evil.example:8000", "127.0.0.1.evil.example", ""):
            r = c.get("/", headers={"host": host})
            assert r.status_code == 403 and r.json()["error"]["code"] == "invalid_host", host


def test_unknown_routes_and_methods_are_json_errors_too(client):
    r = client.get("/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = client.get("/v1/completions")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_200_fuzzed_bodies_get_no_5xx(client):
    rng = random.Random(15)
    good = {"model": "tiny", "prompt": "the ", "max_tokens": 3, "temperature": 0.8, "top_p": 0.9, "top_k": 3,
            "n": 1, "stop": ["\n"], "seed": 1, "stream": False, "logprobs": 1, "echo": False}
    junk = [None, True, -1, 0, 1e308, -1e308, 2 ** 70, 3.5, "", "x" * 3000, "\u00e9\U0001f600", [], [None], {},
            {"a": 1}, [[["deep"]]], "NaN", -0.0, [1, "a"], "\n"]
    statuses = []
    for i in range(200):
        kind = i % 4
        if kind == 0:        # one field of the wrong type or out of range
            body = dict(good, **{rng.choice(list(good)): rng.choice(junk)})
            raw = json.dumps(body).encode()
        elif kind == 1:      # several at once, sometimes unknown names
            body = {rng.choice([*good, "zzz", "prompt ", "MODEL"]): rng.choice(junk) for _ in range(rng.randint(1, 6))}
            raw = json.dumps(body).encode()
        elif kind == 2:      # a valid body cut or corrupted
            raw = bytearray(json.dumps(good).encode())
            for _ in range(rng.randint(1, 4)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            raw = bytes(raw[: rng.randint(0, len(raw))])
        else:                # not a JSON object at all
            raw = rng.choice([b"", b"null", b"42", b'"s"', b"[" * 50 + b"]" * 50, b'{"a":' * 3000,
                              bytes(rng.randrange(256) for _ in range(rng.randint(1, 80)))])
        r = client.post("/v1/completions", content=raw, headers={"content-type": "application/json"})
        statuses.append(r.status_code)
        assert r.status_code < 500, (raw[:200], r.text)
        if r.status_code >= 400:
            assert "message" in r.json()["error"]
    assert statuses.count(200) >= 3 and len([s for s in statuses if 400 <= s < 500]) >= 100


def test_a_token_is_needed_when_set_and_compared_in_constant_time(run_dir, monkeypatch):
    import hmac

    from starlette.testclient import TestClient

    import charnn.serve.app as app_module

    compared, real = [], hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(app_module.hmac, "compare_digest", spy)
    with TestClient(create_app([load(run_dir)], token="s3cret-token")) as c:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"},
                        {"Authorization": "Basic s3cret-token"}, {"Authorization": "Bearer s3cret-token-longer"}):
            for method, path in (("GET", "/v1/models"), ("POST", "/v1/completions"), ("GET", "/v1/nothing")):
                r = c.request(method, path, headers=headers, json={"prompt": "a"})
                assert r.status_code == 401, (headers, path)
                assert r.headers["www-authenticate"] == "Bearer"
                assert r.json()["error"]["type"] == "authentication_error"
        ok = {"Authorization": "Bearer s3cret-token"}
        assert c.get("/v1/models", headers=ok).status_code == 200
        assert c.post("/v1/completions", headers=ok, json={"prompt": "a", "max_tokens": 2}).status_code == 200
        assert c.get("/").status_code == 200                 # the page holds no data: it asks for the token
    assert (b"s3cret-token", b"s3cret-token") in compared


def test_the_playground_page_is_self_contained(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)     # nothing from elsewhere
    assert "cdn" not in html.lower() and "@import" not in html
    assert "default-src 'self'" in r.headers["content-security-policy"]
    for element in ("model", "prime", "temperature", "top_k", "top_p", "length", "generate", "stop", "generated"):
        assert f'id="{element}"' in html


def test_serve_warns_when_listening_beyond_this_machine_without_a_token(run_dir, monkeypatch):
    import charnn.serve.server as server

    calls = []
    monkeypatch.setattr(server, "run", lambda app, host, port, *a: calls.append((host, port)))
    res = cli("serve", str(run_dir), "--host", "0.0.0.0", "--port", "0")
    assert res.exit_code == 0 and calls == [("0.0.0.0", 0)]
    assert "without --token" in res.stderr and res.stdout == ""
    res = cli("serve", str(run_dir), "--host", "0.0.0.0", "--token", "t")
    assert "warning" not in res.stderr
    res = cli("serve", str(run_dir), "--max-streams", "0")
    assert res.exit_code == 2 and "--max-streams must be at least 1" in res.stderr
    assert server.is_loopback("127.0.0.1") and server.is_loopback("::1") and not server.is_loopback("0.0.0.0")


# -- a real server process -------------------------------------------------------------------------


class Served:
    """`charnn serve RUN --port 0 ...` as a real process (forked from the test fork server)."""

    def __init__(self, forkserver, run_dir: Path, log: Path, *args: str):
        self.forkserver, self.log = forkserver, log
        self.pid = forkserver.start("serve", str(run_dir), "--port", "0", *args, log=log)
        deadline = time.monotonic() + 60
        while not (m := re.search(r"on (http://127\.0\.0\.1:\d+) ", log.read_text() if log.exists() else "")):
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)
        self.url = m.group(1)
        self.http = httpx.Client(base_url=self.url, timeout=20)

    def stats(self) -> dict:
        return self.http.get("/v1/stats").json()

    def idle(self, within: float = 2.0) -> bool:
        """Whether no completion is in flight and no row is open, waiting up to `within` seconds."""
        deadline = time.monotonic() + within
        while True:
            stats = self.stats()
            if not (stats["in_flight"] or any(m["open_streams"] for m in stats["models"].values())):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)

    def rss_kb(self) -> int:
        return int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{self.pid}/status").read_text()).group(1))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        """Signal it; its exit status (SIGKILL after `timeout` seconds)."""
        self.http.close()
        os.kill(self.pid, sig)
        deadline = time.monotonic() + timeout
        while _alive(self.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if _alive(self.pid):
            os.kill(self.pid, signal.SIGKILL)
        return self.forkserver.wait(self.pid)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def stream_text(url: str, body: dict) -> tuple[str, str | None, float]:
    """One streaming completion: (text, finish_reason, seconds to the first text)."""
    t0, first, text, finish = time.monotonic(), None, "", None
    with httpx.stream("POST", url + "/v1/completions", json={**body, "stream": True}, timeout=30) as r:
        assert r.status_code == 200, r.read()
        for e in sse(r.iter_lines()):
            if e == "[DONE]":
                break
            text += e["choices"][0]["text"]
            first = first or (time.monotonic() - t0)
            finish = e["choices"][0]["finish_reason"] or finish
    return text, finish, first


def hang_up_at_random(url: str, rng: random.Random, clients: int = 4) -> None:
    """Clients that each read a few chunks (or none) of a long stream, then disconnect."""
    def client(chunks: int) -> None:
        with httpx.stream("POST", url + "/v1/completions", timeout=20,
                          json={"prompt": "x", "max_tokens": 100_000, "stream": True}) as r:
            lines = r.iter_lines()
            for _ in range(chunks):
                next(lines)

    threads = [threading.Thread(target=client, args=(rng.randint(0, 6),)) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)


def test_a_real_server_batches_clients_frees_slots_at_once_and_does_not_grow(forkserver, run_dir, tmp_path):
    server = Served(forkserver, run_dir, tmp_path / "serve.log", "--max-streams", "4", "--max-tokens", "1000000")
    try:
        run = load(run_dir)
        bodies = [{"prompt": p, "max_tokens": 120, "seed": s, "temperature": 0.9} for p, s in
                  (("The ", 1), ("A ", 2), (LONG_PRIME, 3), ("in ", 4))]
        cfgs = [SampleConfig(length=120, temperature=0.9, prime=b["prompt"], seed=b["seed"]) for b in bodies]
        want = [sample_text(run.model, run.tokenizer, cfg)[0][len(cfg.prime):] for cfg in cfgs]

        def burst() -> list:
            got = [None] * 4
            threads = [threading.Thread(target=lambda i=i: got.__setitem__(i, stream_text(server.url, bodies[i])))
                       for i in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            return got

        got = burst()
        assert [g[0] for g in got] == want and all(g[1] == "length" for g in got)
        rss = server.rss_kb()
        rng = random.Random(0)
        for _ in range(3):
            assert [g[0] for g in burst()] == want
            hang_up_at_random(server.url, rng)
            assert server.idle(), server.stats()              # every slot and row free again
        assert server.rss_kb() - rss < 16_000, "the server's memory grew over three more bursts"
        # four long streams fill --max-streams 4: a fifth request is told to come back later
        long = {"prompt": "x", "max_tokens": 1_000_000}        # they would run for minutes
        with httpx.Client(base_url=server.url, timeout=20) as c:
            streams = [c.stream("POST", "/v1/completions", json={**long, "stream": True}) for _ in range(4)]
            lines = [s.__enter__().iter_lines() for s in streams]      # kept: dropping one hangs up
            for line in lines:
                next(line)
            r = c.post("/v1/completions", json={"prompt": "x", "max_tokens": 1})
            assert r.status_code == 429 and r.headers["retry-after"] == "1"
            assert r.json()["error"]["code"] == "too_many_streams"
            assert server.stats()["in_flight"] == 4
            for s in streams:                   # the clients hang up
                s.__exit__(None, None, None)
        assert server.idle(), server.stats()
        assert server.http.post("/v1/completions", json={"prompt": "x", "max_tokens": 1}).status_code == 200
    finally:
        code = server.stop()
    assert code == 0, server.log.read_text()


def test_sigterm_ends_open_streams_cleanly_and_exits_0(forkserver, run_dir, tmp_path):
    server = Served(forkserver, run_dir, tmp_path / "serve.log", "--max-tokens", "1000000")
    ends, errors = [], []

    def client(i: int) -> None:
        try:
            with httpx.stream("POST", server.url + "/v1/completions", timeout=20,
                              json={"prompt": "The ", "max_tokens": 1_000_000, "stream": True, "seed": i}) as r:
                events = sse(r.iter_lines())
            ends.append((events[-1], events[-2]["choices"][0]["finish_reason"], len(events)))
        except Exception as e:          # noqa: BLE001 (reported below)
            errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:         # all three streaming, and text made
        stats = server.stats()
        if stats["in_flight"] == 3 and stats["models"]["tiny"]["tokens"] >= 50:
            break
        time.sleep(0.01)
    t0 = time.monotonic()
    code = server.stop(signal.SIGTERM)
    for t in threads:
        t.join(20)
    assert code == 0, server.log.read_text()
    assert time.monotonic() - t0 < 8
    assert errors == [] and len(ends) == 3
    assert all(done == "[DONE]" and finish == "length" and n > 1 for done, finish, n in ends)
    assert "stopped" in server.log.read_text()


def test_the_playground_streams_text_in_a_real_browser(forkserver, run_dir, tmp_path, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    server = Served(forkserver, run_dir, tmp_path / "serve.log", "--max-tokens", "1000000")
    try:
        browser.get(server.url + "/")
        wait = WebDriverWait(browser, 20)
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#model option"))
        assert "2 × 32 LSTM" in browser.find_element(By.ID, "config").text
        assert browser.find_elements(By.CSS_SELECTOR, "#curve polyline")
        prime = browser.find_element(By.ID, "prime")
        prime.send_keys("The government ")
        length = browser.find_element(By.ID, "length")
        length.clear()
        length.send_keys("300")
        browser.find_element(By.ID, "generate").click()
        wait.until(lambda d: "chars/s" in d.find_element(By.ID, "status").text and
                   "characters in" in d.find_element(By.ID, "status").text)
        generated = browser.find_element(By.ID, "generated").text
        assert len(generated) >= 100
        assert browser.find_element(By.ID, "output").text.startswith("The government ")
        browser.save_screenshot(str(tmp_path / "playground.png"))
        assert (tmp_path / "playground.png").stat().st_size > 10_000
        # Stop: a long generation ends at once and its slot is free
        length.clear()
        length.send_keys("1000000")                 # minutes of text, unless stopped
        browser.find_element(By.ID, "generate").click()
        wait.until(lambda d: len(d.find_element(By.ID, "generated").text) > 50)
        browser.find_element(By.ID, "stop").click()
        wait.until(lambda d: "stopped" in d.find_element(By.ID, "status").text)
        deadline = time.monotonic() + 3
        while server.stats()["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.stats()["in_flight"] == 0
    finally:
        assert server.stop() == 0


def documented_options(command: str, page: str) -> tuple[set[str], set[str]]:
    """(the command's long options, those written as `--flag` on the page)."""
    import typer

    from charnn.cli import app
    from tests.conftest import REPO

    cmd = typer.main.get_command(app).commands[command]
    flags = {o for p in cmd.params for o in p.opts + p.secondary_opts if o.startswith("--")}
    text = (REPO / "docs" / page).read_text(encoding="utf-8")
    return flags, {f for f in flags if f"`{f}`" in text}


def test_every_serve_option_is_documented():
    flags, documented = documented_options("serve", "serve.md")
    assert flags - documented == set()


def test_a_bow_model_writes_about_the_requested_topic_as_charnn_sample_does(tmp_path):
    from starlette.testclient import TestClient

    from tests.conftest import TINY_MODEL
    from tests.test_representations import two_topic_corpus

    corpus = two_topic_corpus(tmp_path / "topics.txt", docs=30)
    out = tmp_path / "charbow"
    assert cli("train", str(corpus), "--input", "bow", *TINY_MODEL, "--max-steps", "10", "--out", str(out),
               "--quiet").exit_code == 0
    with TestClient(create_app([load(out)])) as c:
        for prime in ("the ", "war and the soldier went to the battle and the garden was far "):  # short, long
            res = cli("sample", str(out), "--topic", "war soldier", "--seed", "3", "--length", "60", "--prime", prime)
            body = complete(c, prompt=prime, topic="war soldier", seed=3, max_tokens=60)
            text = body["choices"][0]["text"]
            assert res.stdout == prime + text + ("" if text.endswith("\n") else "\n")
        for fields, word in (({}, "--input bow"), ({"topic": "zzz qqq"}, "none of the topic words")):
            r = c.post("/v1/completions", json={"prompt": "a", **fields})
            assert r.status_code == 400 and word in r.json()["error"]["message"], r.text
