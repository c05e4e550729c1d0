"""Shared fixtures. Every test runs in its own temporary folder (so checkpoints/ and corpora/
land there) with its own encoding cache, on the CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHAKESPEARE = REPO.parent / "shared" / "corpora" / "tinyshakespeare.txt"

# A short text with Cyrillic, CJK, accents and emoji: the char tokenizer must handle all of it.
MIXED = (
    "The quick brown fox jumps over the lazy dog.\n"
    "Съешь же ещё этих мягких французских булок.\n"
    "我能吞下玻璃而不伤身体。\n"
    "Café naïve façade — “quotes” 🙂🚀\n"
)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHARNN_CACHE", str(tmp_path / ".cache"))
    monkeypatch.setenv("CHARNN_CORPORA", str(tmp_path / "corpora"))
    monkeypatch.delenv("CHARNN_DEBUG", raising=False)
    import torch

    torch.set_num_threads(1)   # tests are tiny; one thread is faster and repeatable
    yield


@pytest.fixture
def browser():
    """A headless chromium (selenium WebDriver); the test is skipped where none is installed."""
    from tests.browser import start

    driver = start()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def tiny_corpus(tmp_path) -> Path:
    """~6 KB of repetitive English: enough for a few training steps in well under a second."""
    lines = [
        "the cat sat on the mat.", "the dog sat on the log.", "a bird sang in the tree.",
        "to be or not to be, that is the question.", "all the world's a stage.",
    ]
    p = tmp_path / "tiny.txt"
    p.write_text("\n".join(lines * 50) + "\n", encoding="utf-8")
    return p


@pytest.fixture
def mixed_corpus(tmp_path) -> Path:
    p = tmp_path / "mixed.txt"
    p.write_text(MIXED * 40, encoding="utf-8")
    return p


def cli(*args: str, input: str | None = None):
    """Run the Typer app in-process (CliRunner) with stdout and stderr kept apart."""
    from typer.testing import CliRunner

    from charnn.cli import app

    try:
        runner = CliRunner(mix_stderr=False)
    except TypeError:  # newer Click keeps them apart by default
        runner = CliRunner()
    return runner.invoke(app, list(args), input=input, catch_exceptions=False)


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for running `python -m charnn` as a real process from this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def charnn_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "charnn", *args]


def run_charnn(*args: str, input: bytes | None = None, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(charnn_cmd(*args), input=input, capture_output=True, timeout=timeout,
                          env=subprocess_env(), **kw)


TINY_MODEL = ["--hidden", "32", "--layers", "1", "--embed-dim", "16", "--seq-len", "16",
              "--batch-size", "4", "--eval-every", "20"]


# ----------------------------------------------------------------------------------------------
# Real `charnn` processes, started in milliseconds: a fork server

_SERVER = r'''
import json, os, resource, signal, sys
import torch, torch._dynamo, torch.optim            # the seconds of every start, paid once here
import charnn.cli, charnn.commands.train, charnn.training.trainer, charnn.sampling.generate, charnn.checkpoint
out = os.fdopen(os.dup(1), "w")
for line in sys.stdin:
    req = json.loads(line)
    if req["op"] == "wait":
        _, status = os.waitpid(req["pid"], 0)
        out.write(json.dumps(os.waitstatus_to_exitcode(status)) + "\n")
        out.flush()
        continue
    pid = os.fork()
    if pid == 0:                                     # the child: `python -m charnn ARGS...`
        os.chdir(req["cwd"])
        os.environ.update(req["env"])
        os.close(out.fileno())                      # the server's pipes are not the child's
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        log = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        if req.get("fsize"):
            resource.setrlimit(resource.RLIMIT_FSIZE, (req["fsize"], req["fsize"]))
        sys.argv = ["charnn", *req["argv"]]
        code = 0
        try:
            charnn.cli.main()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    out.write(json.dumps(pid) + "\n")
    out.flush()
'''


class ForkServer:
    """Starts `charnn` commands as real child processes, forked from one server process that
    has imported torch and charnn already: each start costs milliseconds instead of the seconds
    of a fresh interpreter, so a test can kill and restart training dozens of times. A child
    runs exactly what `python -m charnn ARGS` runs (charnn.cli.main), in its own process, with
    its own pid, signals and file descriptors; its stdout and stderr go to a log file."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", _SERVER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True,
                                     env=subprocess_env(OMP_NUM_THREADS="1"))

    def _ask(self, req: dict):
        import json

        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def start(self, *args: str, log: Path, fsize: int | None = None) -> int:
        """Start `charnn ARGS` in the current folder with the current CHARNN_* settings."""
        env = {k: v for k, v in os.environ.items() if k.startswith("CHARNN_")}
        return self._ask({"op": "start", "argv": list(args), "cwd": os.getcwd(), "env": env,
                          "log": str(log), "fsize": fsize})

    def wait(self, pid: int) -> int:
        """Exit status as subprocess reports it: the code, or -N for death by signal N."""
        return self._ask({"op": "wait", "pid": pid})

    def run(self, *args: str, log: Path, fsize: int | None = None) -> tuple[int, str]:
        code = self.wait(self.start(*args, log=log, fsize=fsize))
        return code, log.read_text()

    def close(self) -> None:
        self.proc.kill()        # its children are all waited for; nothing of it needs saving
        self.proc.wait(timeout=30)


@pytest.fixture(scope="session")
def forkserver():
    server = ForkServer()
    yield server
    server.close()
