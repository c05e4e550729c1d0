"""Every command through the CLI (CliRunner), plus real subprocess pipelines."""

from __future__ import annotations

import http.server
import json
import subprocess
import threading
from pathlib import Path

import pytest

from tests.conftest import MIXED, SHAKESPEARE, TINY_MODEL, charnn_cmd, cli, run_charnn, subprocess_env


def _train(corpus: Path, *extra: str):
    return cli("train", str(corpus), *TINY_MODEL, "--max-steps", "30", "--quiet", *extra)


def test_help_lists_the_commands():
    r = cli("--help")
    assert r.exit_code == 0
    for name in ("train", "sample", "eval", "info", "corpus"):
        assert name in r.stdout


def test_train_then_sample_end_to_end(tiny_corpus):
    r = _train(tiny_corpus, "--json")
    assert r.exit_code == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["steps"] == 30 and summary["val_bpc"] > 0
    run = Path("checkpoints/tiny")
    assert (run / "best.pt").is_file() and (run / "latest.pt").is_file()
    records = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert any(r["event"] == "eval" for r in records)
    s = cli("sample", "--length", "40", "--seed", "1", "--prime", "the ")
    assert s.exit_code == 0, s.stderr
    assert s.stdout.startswith("the ") and len(s.stdout) >= 44
    assert s.stderr == ""


def test_progress_goes_to_stderr_and_stdout_stays_empty(tiny_corpus):
    r = cli("train", str(tiny_corpus), *TINY_MODEL, "--max-steps", "20")
    assert r.exit_code == 0
    assert r.stdout == ""
    assert "eval final" in r.stderr and "done:" in r.stderr


def test_mixed_script_corpus_trains_and_samples(mixed_corpus):
    assert _train(mixed_corpus).exit_code == 0
    s = cli("sample", "checkpoints/mixed", "--prime", "Съешь 我", "--length", "30", "--seed", "0")
    assert s.exit_code == 0 and s.stdout.startswith("Съешь 我")
    info = json.loads(cli("info", "checkpoints/mixed", "--json").stdout)
    assert info["vocab_size"] == len(set(MIXED))


def test_sample_seed_repeats_and_temp_zero_is_deterministic(tiny_corpus):
    _train(tiny_corpus)
    a = cli("sample", "--seed", "3", "--length", "60").stdout
    b = cli("sample", "--seed", "3", "--length", "60").stdout
    assert a == b
    g1 = cli("sample", "--temp", "0", "--length", "60", "--seed", "1").stdout
    g2 = cli("sample", "--temp", "0", "--length", "60", "--seed", "2").stdout
    assert g1 == g2


def test_sample_reads_the_prime_from_stdin(tiny_corpus):
    _train(tiny_corpus)
    s = cli("sample", "--length", "10", "--seed", "0", input="the cat")
    assert s.exit_code == 0 and s.stdout.startswith("the cat")


def test_num_samples_and_json(tiny_corpus):
    _train(tiny_corpus)
    s = cli("sample", "--num-samples", "3", "--length", "20", "--seed", "0", "--json")
    rows = [json.loads(l) for l in s.stdout.splitlines()]
    assert [r["sample"] for r in rows] == [0, 1, 2]
    assert all(len(r["text"]) == 20 for r in rows)


def test_unknown_prime_characters_are_named(tiny_corpus):
    _train(tiny_corpus)
    s = cli("sample", "--prime", "the Ж")
    assert s.exit_code == 1 and s.stdout == ""
    assert s.stderr.startswith("error: ") and "'Ж'" in s.stderr and "Traceback" not in s.stderr


def test_eval_and_info(tiny_corpus, tmp_path):
    _train(tiny_corpus)
    held = tmp_path / "held.txt"
    held.write_text("the cat sat on the log.\n" * 20)
    r = cli("eval", "checkpoints/tiny", str(held), "--json")
    assert r.exit_code == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["bits_per_char"] == pytest.approx(res["nats_per_char"] / 0.6931471805599453)
    assert 0 < res["loss"] < 4
    text = cli("info", "checkpoints/tiny")
    assert "parameters" in text.stdout and "LSTM" in text.stdout
    foreign = tmp_path / "foreign.txt"
    foreign.write_text("the cat sat on the Ж.\n" * 5)
    r = cli("eval", "checkpoints/tiny", str(foreign))
    assert r.exit_code == 1 and str(foreign) in r.stderr and "'Ж'" in r.stderr


def test_resume_continues_and_existing_run_is_protected(tiny_corpus):
    assert _train(tiny_corpus).exit_code == 0
    again = _train(tiny_corpus)
    assert again.exit_code == 1 and "--resume" in again.stderr
    r = cli("train", "--resume", "checkpoints/tiny", "--max-steps", "40", "--quiet", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["steps"] == 40
    # --force starts afresh: the old run's metrics and checkpoints are not mixed into the new one
    r = _train(tiny_corpus, "--force", "--max-steps", "10")
    assert r.exit_code == 0, r.stderr
    records = [json.loads(l) for l in Path("checkpoints/tiny/metrics.jsonl").read_text().splitlines()]
    assert max(rec["step"] for rec in records) == 10
    from charnn import checkpoint
    assert checkpoint.load(Path("checkpoints/tiny/best.pt"))["progress"]["step"] == 10


@pytest.mark.parametrize("args,needle", [
    (["train", "missing.txt"], "no such file"),
    (["train", "--time-budget", "soon"], "duration"),
    (["sample", "--temp", "-1"], "--temp"),
    (["sample", "--top-p", "1.5"], "--top-p"),
    (["eval", "nope.pt", "x.txt"], "no such checkpoint"),
    (["sample"], "no trained model"),
])
def test_bad_input_is_one_line_error(args, needle):
    r = cli(*args)
    assert r.exit_code in (1, 2)
    assert r.stderr.startswith("error: ") and needle in r.stderr
    assert r.stderr.count("\n") == 1 and r.stdout == ""


def test_stdin_corpus_and_default_run_name(tiny_corpus):
    r = cli("train", "-", *TINY_MODEL, "--max-steps", "10", "--quiet", input=tiny_corpus.read_text())
    assert r.exit_code == 0, r.stderr
    assert Path("checkpoints/stdin/best.pt").is_file()


def test_non_utf8_corpus_error_names_file_and_offset(tmp_path):
    p = tmp_path / "latin1.txt"
    p.write_bytes("price: £3\n".encode("latin-1") * 100)
    r = cli("train", str(p), "--quiet")
    assert r.exit_code == 1
    assert r.stderr == (f"error: {p}: not valid UTF-8 at byte offset 7; if the text is in another "
                        "encoding, say which with --encoding (e.g. --encoding latin-1)\n")


def test_corpus_list_and_builtin_default():
    r = cli("corpus", "list", "--json")
    rows = {json.loads(l)["name"]: json.loads(l) for l in r.stdout.splitlines()}
    assert rows["lee"]["available"] and rows["lee"]["kind"] == "built-in"
    assert rows["tinyshakespeare"]["kind"] == "download"
    path = cli("corpus", "get", "lee").stdout.strip()
    assert Path(path).is_file()


@pytest.mark.skipif(not SHAKESPEARE.is_file(), reason="needs ../shared/corpora/tinyshakespeare.txt")
def test_download_is_verified_against_a_local_server(tmp_path):
    root = SHAKESPEARE.parent
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(root), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        bad = cli("corpus", "get", "tinyshakespeare", "--url", f"{base}/README.md", "--quiet")
        assert bad.exit_code == 1 and "checksum" in bad.stderr
        assert not any(Path("corpora").glob("*")), "a failed download must leave nothing behind"
        ok = cli("corpus", "get", "tinyshakespeare", "--url", f"{base}/tinyshakespeare.txt", "--quiet")
        assert ok.exit_code == 0, ok.stderr
        got = Path(ok.stdout.strip())
        assert got.read_bytes() == SHAKESPEARE.read_bytes()
    finally:
        server.shutdown()


def test_sample_through_head_ends_quietly(tiny_corpus):
    assert _train(tiny_corpus).exit_code == 0
    sample = subprocess.Popen(charnn_cmd("sample", "--length", "100000", "--seed", "0"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=subprocess_env())
    head = subprocess.run(["head", "-c", "10"], stdin=sample.stdout, capture_output=True)
    sample.stdout.close()
    err = sample.stderr.read()
    assert sample.wait(timeout=60) == 0
    assert len(head.stdout) == 10 and err == b""


def test_help_through_head_ends_quietly():
    # the help is long (and drawn by Rich): a reader that stops early is no error
    for args in (("--help",), ("train", "--help")):
        proc = subprocess.Popen(charnn_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=subprocess_env(COLUMNS="80"))
        head = subprocess.run(["head", "-n", "1"], stdin=proc.stdout, capture_output=True)
        proc.stdout.close()
        err = proc.stderr.read()
        assert proc.wait(timeout=60) == 0 and err == b"", (args, err)
        assert head.stdout


def test_python_dash_m_and_missing_corpus_subprocess():
    r = run_charnn("train", "definitely-missing.txt")
    assert r.returncode == 1
    assert r.stderr.decode().startswith("error: ") and b"Traceback" not in r.stderr
