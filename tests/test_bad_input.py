"""Bad input, one table: every case gets one `error: ...` line on stderr, a non-zero exit, no
traceback, nothing on stdout, and leaves every file as it was (run folders and checkpoints
byte-identical, no temp files, no half-written cache entries, no new folders).

A few cases need real processes or big files and have tests of their own below the table: two
`charnn train` on one folder at once, a stale lock, a 100 MB text without a newline.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY_MODEL, cli

TINY = ["--hidden", "32", "--layers", "1", "--embed-dim", "16", "--seq-len", "16", "--batch-size", "4"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Everything the cases point at, made once: corpora good and bad, a char run and a word
    run, damaged checkpoints, vectors files. Every case checks that none of it changed."""
    import numpy as np
    from gensim.models import KeyedVectors

    from charnn.representations import word2vec as embed

    w = tmp_path_factory.mktemp("world")
    mp = pytest.MonkeyPatch()
    mp.chdir(w)
    mp.setenv("CHARNN_CACHE", str(w / ".cache"))
    try:
        (w / "tiny.txt").write_text("the cat sat on the mat.\nthe dog sat on the log.\n" * 100)
        (w / "empty.txt").write_bytes(b"")
        (w / "blank.txt").write_text(" \n\t\n   \r\n" * 50)
        (w / "latin1.txt").write_bytes("price: £3\n".encode("latin-1") * 100)
        (w / "deep.txt").write_bytes(b"a" * 4_500_000 + b"\xff" + b"b" * 10)  # past the first 4 MiB read
        (w / "nul.txt").write_bytes(b"hello world\x00 and more text\n" * 10)
        (w / "short.txt").write_text("hello world\n")
        (w / "oov.txt").write_text("the cat sat on the Ж.\n" * 20)
        (w / "notarun").mkdir()
        for run, extra in (("char", []), ("word", ["--tokenizer", "word"])):
            r = cli("train", "tiny.txt", *TINY, "--max-steps", "4", "--eval-every", "2", "--quiet",
                    "--out", run, *extra)
            assert r.exit_code == 0, r.stderr
        good = (w / "char" / "latest.pt").read_bytes()
        ck = torch.load(w / "char" / "latest.pt", weights_only=True)
        damaged = {
            "truncated": good[: len(good) // 2],
            "empty": b"",
            "random": np.random.default_rng(0).bytes(len(good)),
            "newer": _saved({**ck, "version": 99}),
            "malformed": _saved({**ck, "model_config": ["lstm", 2]}),
            "nan_weights": _saved({**ck, "model": {k: v * float("nan") for k, v in ck["model"].items()}}),
        }
        for name, data in damaged.items():           # as a file, and as a run folder's latest.pt
            (w / f"{name}.pt").write_bytes(data)
            (w / f"run_{name}").mkdir()
            (w / f"run_{name}" / "latest.pt").write_bytes(data)
        kv = KeyedVectors(20)
        kv.add_vectors(["the", "cat", "sat"], np.random.default_rng(0).normal(size=(3, 20)).astype(np.float32))
        embed.save(kv, w / "v20.kv")
        (w / "rows5.vec").write_text("3 10\nthe 1 2 3 4 5\ncat 1 2 3 4 5\nsat 1 2 3 4 5\n")
    finally:
        mp.undo()
    return w


def _saved(obj) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


CKPT_DAMAGE = [
    ("truncated", r"is damaged or not a charnn checkpoint"),
    ("empty", r"is empty: not a charnn checkpoint"),
    ("random", r"is damaged or not a charnn checkpoint"),
    ("newer", r"was written by a newer charnn \(format version 99; this one reads up to 1\): upgrade"),
    ("malformed", r"is damaged: its 'model_config' entry is a list"),
    ("nan_weights", r"weights are damaged: .* is not finite"),
]

# (case, argv with {w} for the world folder, exit code, what the one error line must say)
CASES = [
    # the corpus
    ("missing file", ["train", "missing.txt"], 1, r"missing\.txt: no such file"),
    ("a directory as the corpus", ["train", "{w}/notarun"], 1, r"notarun: no text files in this directory"),
    ("empty corpus", ["train", "{w}/empty.txt"], 1, r"empty\.txt: the corpus is empty or holds only whitespace"),
    ("whitespace-only corpus", ["train", "{w}/blank.txt"], 1, r"blank\.txt: the corpus is empty or holds only whitespace"),
    ("non-UTF-8 bytes", ["train", "{w}/latin1.txt"], 1, r"latin1\.txt: not valid UTF-8 at byte offset 7; if the text is in another encoding, say which with --encoding \(e\.g\. --encoding latin-1\)$"),
    ("non-UTF-8 after 4 MiB", ["train", "{w}/deep.txt"], 1, r"deep\.txt: not valid UTF-8 at byte offset 4500000; .*--encoding"),
    ("NUL bytes", ["train", "{w}/nul.txt"], 1, r"nul\.txt: NUL byte at byte offset 11: not a text file"),
    ("corpus shorter than one batch", ["train", "{w}/short.txt", "--batch-size", "32", "--max-steps", "1"], 1,
     r"the training split has 10 tokens, too few for --batch-size 32"),
    ("non-UTF-8 text to eval", ["eval", "{w}/char", "{w}/latin1.txt"], 1, r"latin1\.txt: not valid UTF-8 at byte offset 7"),
    ("non-UTF-8 text to tokenize", ["tokenize", "{w}/latin1.txt"], 1, r"latin1\.txt.*not valid UTF-8"),
    ("characters eval's model lacks", ["eval", "{w}/char", "{w}/oov.txt"], 1, r"oov\.txt: .*'Ж'"),
    # sampling flags
    ("prime outside the vocabulary", ["sample", "{w}/char", "--prime", "the Ж"], 1,
     r"1 character\(s\) not in the model's vocabulary: 'Ж'"),
    ("--temp < 0", ["sample", "{w}/char", "--temp", "-1"], 2, r"--temp must be a finite number >= 0"),
    ("--temp NaN", ["sample", "{w}/char", "--temp", "nan"], 2, r"--temp must be a finite number >= 0"),
    ("--temp inf", ["sample", "{w}/char", "--temp", "inf"], 2, r"--temp must be a finite number >= 0"),
    ("--top-p 0", ["sample", "{w}/char", "--top-p", "0"], 2, r"--top-p must be in \(0, 1\]"),
    ("--top-p > 1", ["sample", "{w}/char", "--top-p", "1.5"], 2, r"--top-p must be in \(0, 1\]"),
    ("--top-p NaN", ["sample", "{w}/char", "--top-p", "nan"], 2, r"--top-p must be in \(0, 1\]"),
    ("--top-k < 0", ["sample", "{w}/char", "--top-k", "-1"], 2, r"--top-k must be >= 0"),
    ("--length < 0", ["sample", "{w}/char", "--length", "-1"], 2, r"--length must be >= 0"),
    ("--length not a number", ["sample", "{w}/char", "--length", "ten"], 2,
     r"invalid value for '--length' / '-n'.*\(see .* sample --help\)"),
    ("--num-samples 0", ["sample", "{w}/char", "--num-samples", "0"], 2, r"--num-samples must be at least 1"),
    ("an option that does not exist", ["sample", "{w}/char", "--tempreature", "1"], 2, r"no such option: --tempreature"),
    # training flags
    ("--seq-len 0", ["train", "{w}/tiny.txt", "--seq-len", "0"], 2, r"--seq-len must be at least 1"),
    ("--batch-size 0", ["train", "{w}/tiny.txt", "--batch-size", "0"], 2, r"--batch-size must be at least 1"),
    ("--lr NaN", ["train", "{w}/tiny.txt", "--lr", "nan"], 2, r"--lr must be a positive number"),
    ("--lr inf", ["train", "{w}/tiny.txt", "--lr", "inf"], 2, r"--lr must be a positive number"),
    ("--lr < 0", ["train", "{w}/tiny.txt", "--lr", "-0.1"], 2, r"--lr must be a positive number"),
    ("--val-frac 1", ["train", "{w}/tiny.txt", "--val-frac", "1"], 2, r"--val-frac must be between 0 and 1"),
    ("--eval-every 0", ["train", "{w}/tiny.txt", "--eval-every", "0"], 2, r"--eval-every must be at least 1"),
    ("--max-steps 0", ["train", "{w}/tiny.txt", "--max-steps", "0"], 2, r"--max-steps must be at least 1"),
    ("--time-budget unreadable", ["train", "{w}/tiny.txt", "--time-budget", "soon"], 2, r"cannot read 'soon' as a duration"),
    ("--time-budget negative", ["train", "{w}/tiny.txt", "--time-budget", "-5m"], 2, r"cannot read '-5m' as a duration"),
    ("unknown tokenizer", ["train", "{w}/tiny.txt", "--tokenizer", "morse", "--max-steps", "1"], 2,
     r"unknown tokenizer 'morse'"),
    ("unknown cell", ["train", "{w}/tiny.txt", "--cell", "transformer", "--max-steps", "1"], 2, r"unknown cell 'transformer'"),
    ("--out is a file", ["train", "{w}/tiny.txt", "--out", "{w}/tiny.txt", *TINY, "--max-steps", "1"], 1,
     r"cannot create the run folder .*tiny\.txt: File exists"),
    ("--device cuda without a GPU", ["train", "{w}/tiny.txt", "--device", "cuda", *TINY, "--max-steps", "1"], 2,
     r"--device cuda was asked for, but no CUDA GPU is available"),
    ("an existing run without --resume", ["train", "{w}/tiny.txt", "--out", "{w}/char", "--max-steps", "1"], 1,
     r"char already holds a run: continue it with --resume"),
    # --resume
    ("--resume of a folder that is not a run", ["train", "--resume", "{w}/notarun"], 1,
     r"notarun is not a charnn run folder \(no best\.pt or latest\.pt in it\)"),
    ("--resume of a file", ["train", "--resume", "{w}/tiny.txt"], 1, r"--resume .*tiny\.txt: not a charnn run folder$"),
    ("--resume of nothing", ["train", "--resume", "{w}/nowhere"], 1, r"not a charnn run folder \(no such folder\)"),
    ("--resume with another tokenizer", ["train", "--resume", "{w}/char", "--tokenizer", "word"], 2,
     r"--tokenizer word differs from the run's char: a resumed run keeps its model, tokenizer"),
    ("--resume with another model size", ["train", "--resume", "{w}/char", "--hidden", "64"], 2,
     r"--hidden 64 differs from the run's 32"),
    ("--resume with a fitting option", ["train", "--resume", "{w}/char", "--vocab-size", "300"], 2,
     r"--vocab-size only applies when a run starts"),
    ("--resume with --force", ["train", "--resume", "{w}/char", "--force"], 2, r"--force starts a run afresh"),
    ("--resume on a changed corpus", ["train", "{w}/short.txt", "--resume", "{w}/char", "--max-steps", "8"], 1,
     r"short\.txt is not the corpus this run was trained on"),
    # checkpoints: damaged, of another version, of another tokenizer than asked
    *[(f"{name} checkpoint to {cmd}", [*argv, f"{{w}}/{name}.pt", *rest], 1, msg)
      for name, msg in CKPT_DAMAGE
      for cmd, argv, rest in (("sample", ["sample"], []), ("info", ["info"], []),
                              ("eval", ["eval"], ["{w}/tiny.txt"]),
                              ("tokenize", ["tokenize", "--model"], ["{w}/tiny.txt"]))
      if not (cmd == "tokenize" and name == "nan_weights")],      # tokenize reads no weights
    *[(f"{name} checkpoint to --resume", ["train", "--resume", f"{{w}}/run_{name}"], 1, msg)
      for name, msg in CKPT_DAMAGE],
    ("no checkpoint at all", ["sample", "{w}/nowhere.pt"], 1, r"nowhere\.pt: no such checkpoint or run folder"),
    ("a folder that is not a run to sample", ["sample", "{w}/notarun"], 1, r"notarun is not a charnn run folder"),
    ("an empty text to eval", ["eval", "{w}/char", "{w}/empty.txt"], 1, r"empty\.txt is too short to score"),
    ("a checkpoint of another tokenizer to tokenize", ["tokenize", "--model", "{w}/word", "--tokenizer", "char"], 2,
     r"--tokenizer char differs from the model's tokenizer \(word\)"),
    ("a checkpoint of another tokenizer to vectorize",
     ["vectorize", "--kind", "onehot", "--model", "{w}/word", "--tokenizer", "bpe", "{w}/tiny.txt"], 2,
     r"--tokenizer bpe differs from the model's tokenizer \(word\)"),
    # word vectors
    ("vectors of another dimension than --embed-dim",
     ["train", "{w}/tiny.txt", "--tokenizer", "word", "--input", "word2vec", "--vectors", "{w}/v20.kv",
      "--embed-dim", "50", "--max-steps", "1"], 2, r"--embed-dim 50 differs from the 20-dimensional vectors in"),
    ("vectors whose rows disagree with their header",
     ["train", "{w}/tiny.txt", "--tokenizer", "word", "--input", "word2vec", "--vectors", "{w}/rows5.vec",
      "--max-steps", "1"], 1, r"rows5\.vec: its header says 10-dimensional vectors, but its first row holds 5 values"),
    ("vectors file missing", ["embed", "similar", "{w}/none.kv", "the"], 1, r"none\.kv: no such file"),
    ("a checkpoint as vectors", ["embed", "similar", "{w}/char/latest.pt", "the"], 1, r"latest\.pt"),
]


def _tree(root: Path) -> dict[str, str]:
    """Every file under root (the encoding cache aside) -> sha256 of its bytes; folders too."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if rel == ".cache" or rel.startswith(".cache/"):
            continue
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


def _assert_cache_whole(root: Path) -> None:
    """The encoding cache holds only finished entries: an .ids with its .json, no temp files."""
    enc = root / ".cache" / "encoded"
    names = [p.name for p in enc.iterdir()] if enc.is_dir() else []
    assert not [n for n in names if n.startswith(".")], names
    assert {n[:-4] for n in names if n.endswith(".ids")} == {n[:-5] for n in names if n.endswith(".json")}


@pytest.mark.parametrize("case,argv,code,message", CASES, ids=[c[0] for c in CASES])
def test_bad_input(world, tmp_path, case, argv, code, message):
    if case.startswith("--device") and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    argv = [a.replace("{w}", str(world)) for a in argv]
    before = (_tree(world), _tree(tmp_path))
    r = cli(*argv)
    assert r.exit_code == code, (r.exit_code, r.stderr)
    assert r.stdout == ""
    assert re.fullmatch(r"error: [^\n]+\n", r.stderr), r.stderr       # one line, nothing else
    assert re.search(message, r.stderr), r.stderr
    assert (_tree(world), _tree(tmp_path)) == before
    _assert_cache_whole(tmp_path)
    _assert_cache_whole(world)


def test_the_table_covers_every_case_the_issue_lists():
    names = " | ".join(c[0] for c in CASES)
    for needle in ("missing file", "a directory as the corpus", "empty corpus", "whitespace-only", "non-UTF-8",
                   "NUL", "shorter than one batch", "prime outside", "--temp < 0", "--temp NaN", "--top-p 0",
                   "--top-p > 1", "--top-k < 0", "--length < 0", "--seq-len 0", "--batch-size 0",
                   "--resume of a folder that is not a run", "truncated checkpoint", "empty checkpoint",
                   "random checkpoint", "newer checkpoint", "another tokenizer", "vectors of another dimension"):
        assert needle in names, needle
    print(f"\n{len(CASES)} bad inputs in the table, plus 3 below it")


# ----------------------------------------------------------------------------------------------
# cases that need processes or big files


def test_two_trains_on_one_folder_the_second_refuses_naming_the_owner(forkserver, tmp_path, tiny_corpus):
    run = tmp_path / "run"
    pid = forkserver.start("train", str(tiny_corpus), "--out", str(run), *TINY, "--max-steps", "100000",
                           "--eval-every", "10", "--quiet", log=tmp_path / "owner.log")
    deadline = time.time() + 60
    # the owner holds the lock and has trained (and saved) already, so a Ctrl-C below lands in
    # its training loop, not in its start-up
    while not ((run / ".lock").exists() and (run / ".lock").read_text() == f"{pid}\n"
               and (run / "latest.pt").exists()):
        assert time.time() < deadline, (tmp_path / "owner.log").read_text()
        time.sleep(0.01)
    for argv in (["train", str(tiny_corpus), "--out", str(run), "--force", *TINY_MODEL, "--max-steps", "2"],
                 ["train", "--resume", str(run), "--max-steps", "5"]):
        r = cli(*argv)
        assert r.exit_code == 1 and r.stdout == ""
        assert r.stderr == (f"error: {run} is in use by another charnn train (pid {pid}); wait for it to "
                            "finish, or choose another --out\n"), r.stderr
    os.kill(pid, signal.SIGINT)                  # the owner was not disturbed: it stops and saves
    assert forkserver.wait(pid) == 130, (tmp_path / "owner.log").read_text()
    assert not (run / ".lock").exists()
    from charnn import checkpoint

    checkpoint.build_model(checkpoint.load(run / "latest.pt"))


def test_a_stale_lock_is_taken_over(tmp_path, tiny_corpus):
    """A lock file left by a process that died, and one naming a live process that holds no
    lock (a reused pid): both are taken over."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    for n, pid in enumerate((dead.pid, os.getppid())):
        run = tmp_path / f"run{n}"
        run.mkdir()
        (run / ".lock").write_text(f"{pid}\n")
        r = cli("train", str(tiny_corpus), "--out", str(run), *TINY_MODEL, "--max-steps", "2", "--quiet")
        assert r.exit_code == 0, r.stderr
        assert (run / "latest.pt").is_file() and not (run / ".lock").exists()


def test_a_100_mb_text_with_no_newline_trains_in_flat_memory(tmp_path):
    """One 100 MB line: read in 4 MiB blocks, encoded to a memory-mapped cache, trained on."""
    import numpy as np

    big = tmp_path / "oneline.txt"
    rng = np.random.default_rng(0)
    alphabet = np.frombuffer(b"abcdefgh ", dtype=np.uint8)
    with open(big, "wb") as f:
        for _ in range(10):
            f.write(alphabet[rng.integers(0, len(alphabet), 10_000_000)].tobytes())
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss   # KiB on Linux
    try:
        r = cli("train", str(big), *TINY_MODEL, "--max-steps", "2", "--val-frac", "0.0001", "--quiet", "--json")
        assert r.exit_code == 0, r.stderr
        assert json.loads(r.stdout)["steps"] == 2
        grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
        assert grown_mb < 200, f"peak memory grew by {grown_mb:.0f} MB for a 100 MB corpus"
    finally:
        big.unlink()
        for ids in (tmp_path / ".cache").rglob("*.ids"):
            ids.unlink()
