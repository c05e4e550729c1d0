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
