"""Data-parallel training (charnn.training.distributed): real gloo process groups of 2 ranks on 127.0.0.1,
started as real subprocesses through torch.distributed.run, `charnn train --nproc 2`, or plain
environment variables (as another launcher would set them)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from charnn import checkpoint
from charnn.errors import CharnnError
from charnn.training.distributed import Group, error_line
from tests.conftest import charnn_cmd, cli, subprocess_env

# fp32: on a CPU with native bf16, autocast would round one batch and its two halves differently
FLAGS = ["--hidden", "32", "--layers", "1", "--embed-dim", "16", "--seq-len", "16", "--batch-size", "4",
         "--eval-every", "10", "--seed", "1", "--dropout", "0", "--no-amp"]
LINES = ["the cat sat on the mat.", "the dog sat on the log.", "a bird sang in the tree.",
         "to be or not to be, that is the question.", "all the world's a stage."]


def _corpus(folder: Path) -> Path:
    p = folder / "tiny.txt"
    p.write_text("\n".join(LINES * 50) + "\n", encoding="utf-8")
    return p


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
            "-m", "charnn", "train", *args]


def _records(run: Path, kind: str) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["event"] == kind]


def _assert_close_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6), k


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """A 20-step run on 2 ranks (global batch 4, 2 streams each), started with torchrun."""
    d = tmp_path_factory.mktemp("two_ranks")
    corpus = _corpus(d)
    env = subprocess_env(CHARNN_CACHE=str(d / ".cache"))
    r = subprocess.run(_torchrun(str(corpus), *FLAGS, "--max-steps", "20", "--out", str(d / "r2")),
                       cwd=d, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return corpus, d / "r2", r


def test_two_ranks_match_one_process_with_the_same_global_batch(two_ranks):
    corpus, r2, proc = two_ranks
    one = cli("train", str(corpus), *FLAGS, "--max-steps", "20", "--out", "r1")
    assert one.exit_code == 0, one.stderr
    # the loss record: the global mean loss at each logged step, the sharded validation loss
    for kind, key in (("step", "loss"), ("eval", "val_loss")):
        a, b = _records(Path("r1"), kind), _records(r2, kind)
        assert [x["step"] for x in a] == [x["step"] for x in b] and a    # rank 0 alone logged
        assert torch.allclose(torch.tensor([x[key] for x in a]), torch.tensor([x[key] for x in b]),
                              rtol=1e-5), kind
        assert all(x.get("tokens", 0) == y.get("tokens", 0) for x, y in zip(a, b))
    a, b = checkpoint.load(Path("r1") / "latest.pt"), checkpoint.load(r2 / "latest.pt")
    _assert_close_weights(a["model"], b["model"])
    assert not any(k.startswith("module.") for k in b["model"])     # DDP's prefix never saved
    # the carried state is saved whole: (layers, global B, H), rank 0's rows then rank 1's
    assert [s.shape for s in b["state"]] == [(1, 4, 32)] * 2
    for s, t in zip(a["state"], b["state"]):
        assert torch.allclose(s, t, rtol=1e-4, atol=1e-6)
    # one rank speaks: one summary line, nothing on stdout
    assert proc.stderr.count("done: 20 steps") == 1 and proc.stdout == ""


def test_a_two_rank_checkpoint_samples_and_resumes_in_one_process(two_ranks, tmp_path):
    corpus, r2, _ = two_ranks
    run = tmp_path / "from2"
    shutil.copytree(r2, run)
    s = cli("sample", str(run), "--length", "30", "--seed", "0", "--prime", "the ")
    assert s.exit_code == 0 and s.stdout.startswith("the ") and len(s.stdout) > 30
    # world size 2 -> 1: continue to step 30; the same as a single process that ran 20 then 30
    r = cli("train", str(corpus), "--resume", str(run), "--max-steps", "30", "--quiet")
    assert r.exit_code == 0, r.stderr
    assert cli("train", str(corpus), *FLAGS, "--max-steps", "20", "--out", "r1").exit_code == 0
    assert cli("train", str(corpus), "--resume", "r1", "--max-steps", "30", "--quiet").exit_code == 0
    a, b = checkpoint.load(Path("r1") / "latest.pt"), checkpoint.load(run / "latest.pt")
    assert a["progress"]["step"] == b["progress"]["step"] == 30
    _assert_close_weights(a["model"], b["model"])


def _ranks_of(launcher: subprocess.Popen) -> dict[int, int]:
    """{rank: pid} of the worker processes `charnn train --nproc` started (Linux /proc)."""
    out = {}
    for tid in os.listdir(f"/proc/{launcher.pid}/task"):
        for pid in open(f"/proc/{launcher.pid}/task/{tid}/children").read().split():
            env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
            rank = [e for e in env if e.startswith(b"RANK=")]
            if rank:
                out[int(rank[0][5:])] = int(pid)
    return out


def _wait_for(path: Path, proc: subprocess.Popen, limit: float = 60) -> None:
    end = time.time() + limit
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < end, "the run never saved a checkpoint"
        time.sleep(0.05)


@pytest.mark.skipif(not os.path.exists(f"/proc/{os.getpid()}/task"), reason="needs Linux /proc")
def test_a_killed_rank_ends_the_run_with_an_error_and_the_checkpoint_stays_loadable(tmp_path):
    corpus = _corpus(tmp_path)
    p = subprocess.Popen(charnn_cmd("train", str(corpus), "--nproc", "2", *FLAGS, "--max-steps",
                                    "1000000", "--out", "run"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=subprocess_env(CHARNN_DIST_TIMEOUT="10"))
    _wait_for(tmp_path / "run" / "latest.pt", p)
    ranks = _ranks_of(p)
    assert sorted(ranks) == [0, 1]
    t0 = time.time()
    os.kill(ranks[1], signal.SIGKILL)
    _, err = p.communicate(timeout=60)
    assert time.time() - t0 < 10, "the run did not stop within the collective timeout"
    assert p.returncode == 128 + signal.SIGKILL
    assert "error: rank 1 of 2" in err and "SIGKILL" in err
    assert "lost contact" in err and "Traceback" not in err
    ckpt = checkpoint.load(tmp_path / "run" / "latest.pt")
    model, tok = checkpoint.build_model(ckpt)
    # the launcher passed the flags through unchanged
    assert (ckpt["train_config"]["seq_len"], ckpt["train_config"]["batch_size"],
            ckpt["model_config"]["hidden"]) == (16, 4, 32)
    s = cli("sample", "run", "--length", "20", "--seed", "0")
    assert s.exit_code == 0 and len(s.stdout) >= 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_hung_rank_times_out_without_torchrun(tmp_path):
    """Ranks started by hand (as another launcher would: MASTER_ADDR/PORT, RANK, WORLD_SIZE);
    rank 1 freezes (SIGSTOP): rank 0 gives up after CHARNN_DIST_TIMEOUT with an error."""
    corpus = _corpus(tmp_path)
    base = dict(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE="2",
                CHARNN_DIST_TIMEOUT="2")
    cmd = charnn_cmd("train", str(corpus), *FLAGS, "--max-steps", "1000000", "--out", "run")
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=subprocess_env(**base, RANK=str(r), LOCAL_RANK=str(r)))
             for r in (0, 1)]
    try:
        _wait_for(tmp_path / "run" / "latest.pt", procs[0])
        t0 = time.time()
        os.kill(procs[1].pid, signal.SIGSTOP)
        _, err = procs[0].communicate(timeout=60)
        assert time.time() - t0 < 2 + 10
        assert procs[0].returncode == 1
        assert err.count("error:") == 1 and "lost contact" in err and "2s" in err
        assert "--resume run" in err
    finally:
        for p in procs:
            p.kill()
            p.communicate()
    checkpoint.build_model(checkpoint.load(tmp_path / "run" / "latest.pt"))


@pytest.mark.skipif(not os.path.exists(f"/proc/{os.getpid()}/task"), reason="needs Linux /proc")
def test_ctrl_c_stops_every_rank_at_the_same_step_and_saves(tmp_path):
    """Ctrl-C on `charnn train --nproc 2 -` (stdin corpus): both ranks stop at one step, rank 0
    saves and says how to resume, the exit status is 130."""
    p = subprocess.Popen(charnn_cmd("train", "-", "--nproc", "2", *FLAGS, "--max-steps", "1000000"),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=subprocess_env())
    p.stdin.write("\n".join(LINES * 50) + "\n")
    p.stdin.close()
    p.stdin = None
    run = tmp_path / "checkpoints" / "stdin"
    _wait_for(run / "latest.pt", p)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert err.count("continue with: charnn train --resume checkpoints/stdin") == 1
    ckpt = checkpoint.load(run / "latest.pt")
    final = _records(run, "eval")[-1]
    assert final["final"] and final["step"] == ckpt["progress"]["step"] > 0


def test_nproc_errors_come_before_any_process_starts(tiny_corpus, monkeypatch):
    r = cli("train", str(tiny_corpus), "--nproc", "0")
    assert r.exit_code == 2 and "error: --nproc must be at least 1" in r.stderr
    r = cli("train", str(tiny_corpus), "--nproc", "2", "--batch-size", "5")
    assert r.exit_code == 2 and "--batch-size 5 is the global batch" in r.stderr
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    r = cli("train", str(tiny_corpus), "--nproc", "2")
    assert r.exit_code == 2 and "under torchrun leave it out" in r.stderr


def test_ranks_share_the_streams_exactly_and_errors_are_reported_once(monkeypatch):
    for n, world in [(4, 2), (32, 4), (7, 3), (2, 4)]:
        parts = [Group(r, world).rows(n) for r in range(world)]
        assert [i for s in parts for i in range(n)[s]] == list(range(n))
    with pytest.raises(CharnnError, match="try --batch-size 30 or 33"):
        Group(0, 3).check_batch(32)
    Group(1, 4).check_batch(32)
    # a W = 2 checkpoint's RNG states: the same world restores its own, another only rank 0's
    rng = {"torch": "r0", "ranks": [{"torch": "r0"}, {"torch": "r1"}]}
    assert Group(1, 2).rng_for_rank(rng) == {"torch": "r1"}
    assert Group(0, 1).rng_for_rank(rng) == {"torch": "r0"}
    assert Group(2, 3).rng_for_rank(rng) == {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    same = CharnnError("--lr must be a positive number")
    assert error_line(same, str(same)) is None                  # rank 0 says it
    from charnn.training.distributed import CollectiveError

    lost = CollectiveError("lost contact")
    assert error_line(lost, str(lost)) == "rank 1: lost contact"
    monkeypatch.setenv("RANK", "0")
    assert error_line(same, str(same)) == str(same)
