"""What a new user meets in their first hour (issue 12): the rough edges found by trying charnn
from the README, each held by a test: text in other encodings, characters a model has not seen,
escapes in --stop, strict JSON, numeric options, file modes, resume limits, messages, help."""

from __future__ import annotations

import json
import math
import os
import re
import stat
from pathlib import Path

import pytest

from charnn import checkpoint
from tests.conftest import cli

TINY = ["--hidden", "16", "--layers", "1", "--embed-dim", "8", "--seq-len", "8", "--batch-size", "4"]


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity, which are not JSON."""
    def refuse(c):
        raise ValueError(f"not JSON: {c}")
    return [json.loads(line, parse_constant=refuse) for line in text.splitlines() if line.strip()]


@pytest.fixture
def run(tiny_corpus) -> Path:
    r = cli("train", str(tiny_corpus), *TINY, "--max-steps", "6", "--eval-every", "3", "--quiet",
            "--out", "checkpoints/tiny")
    assert r.exit_code == 0, r.stderr
    return Path("checkpoints/tiny")


# ----------------------------------------------------------------------------------------------
# text that is not clean UTF-8, and characters the model has not seen

def test_encoding_reads_latin1_text_everywhere(tmp_path):
    p = tmp_path / "latin.txt"
    p.write_bytes(("Café crème, déjà vu. Naïve façade.\n" * 60).encode("latin-1"))
    r = cli("train", str(p), *TINY, "--max-steps", "2", "--quiet")
    assert r.exit_code == 1 and "--encoding" in r.stderr and "not valid UTF-8" in r.stderr
    r = cli("train", str(p), *TINY, "--max-steps", "2", "--quiet", "--encoding", "latin-1")
    assert r.exit_code == 0, r.stderr
    ck = checkpoint.load(Path("checkpoints/latin/latest.pt"))
    assert "é" in ck["tokenizer"]["state"]["chars"] and ck["corpus"]["encoding"] == "iso8859-1"
    assert cli("eval", "checkpoints/latin", str(p), "--encoding", "latin-1", "--json").exit_code == 0
    r = cli("tokenize", str(p), "--encoding", "latin-1")
    assert r.exit_code == 0 and r.stdout.splitlines()[0].startswith("C a f é")
    r = cli("vectorize", str(p), "--kind", "bow", "--fit", str(p), "--encoding", "latin-1")
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 60
    # resuming keeps the run's encoding without being told; a different one is refused
    assert cli("train", "--resume", "checkpoints/latin", "--max-steps", "3", "--quiet").exit_code == 0
    r = cli("train", "--resume", "checkpoints/latin", "--max-steps", "4", "--encoding", "utf-16")
    assert r.exit_code == 2 and "--encoding" in r.stderr


def test_an_unknown_encoding_is_one_line(tiny_corpus):
    r = cli("train", str(tiny_corpus), "--encoding", "klingon")
    assert r.exit_code == 2 and r.stderr == ("error: --encoding klingon: unknown encoding (e.g. utf-8, "
                                             "latin-1, cp1252, utf-16)\n")


def test_eval_can_skip_characters_the_model_has_never_seen(run, tmp_path, tiny_corpus):
    text = "the cat sat on the mat. 100% of €uros\n" * 20
    p = tmp_path / "held.txt"
    p.write_text(text, encoding="utf-8")
    r = cli("eval", str(run), str(p))
    assert r.exit_code == 1 and "not in the model's vocabulary" in r.stderr
    r = cli("eval", str(run), str(p), "--unknown", "skip", "--json", "--batch-size", "1")
    assert r.exit_code == 0, r.stderr
    res = strict_json(r.stdout)[0]
    unseen = set(text) - set(tiny_corpus.read_text())       # 1, 0, %, f, €
    assert res["skipped_chars"] == sum(text.count(c) for c in unseen)
    assert set(res["skipped"]) == unseen and "left out of the text and of the loss" in r.stderr
    # the per-character loss is over the characters that remain: one stream, all scored
    kept = sum(1 for c in text if c not in unseen)
    assert res["tokens"] == kept - 1
    assert cli("eval", str(run), str(p), "--unknown", "maybe").exit_code == 2


# ----------------------------------------------------------------------------------------------
# defects found in review

def test_stop_escapes_keep_non_ascii_text():
    from charnn.commands.common import unescape

    assert unescape("é\\n") == "é\n"             # unicode_escape made this 'Ã©\n'
    assert unescape("a\\tb\\\\c\\x41\\u00e9\\U0001F642") == "a\tb\\cAé🙂"
    assert unescape("\\q \\UFFFFFFFF") == "\\q \\UFFFFFFFF"      # not escapes: left as typed


def test_sample_stops_at_an_escaped_non_ascii_stop(mixed_corpus):
    r = cli("train", str(mixed_corpus), *TINY, "--max-steps", "2", "--quiet")
    assert r.exit_code == 0, r.stderr
    r = cli("sample", "checkpoints/mixed", "--prime", "Café", "--stop", "é\\n", "--length", "0", "--seed", "1")
    # the prime is printed; the stop text must be found in the text the model continues from
    assert r.exit_code == 0 and r.stdout.startswith("Caf")
    from charnn.sampling.generate import StopFilter

    f = StopFilter(__import__("charnn.commands.common", fromlist=["unescape"]).unescape("é\\n"))
    assert f.feed("naïve façade é\nrest") == "naïve façade " and f.done


def test_every_json_output_is_strict_json(run, tiny_corpus):
    """NaN and Infinity are not JSON: write_json turns them into null, everywhere."""
    from charnn.commands.common import jsonable

    assert json.dumps(jsonable({"a": [math.nan, math.inf, 1.5], "b": (float("-inf"),)}),
                      allow_nan=False) == '{"a": [null, null, 1.5], "b": [null]}'
    ck = checkpoint.load(run / "latest.pt")
    ck["progress"]["best_val"] = math.inf        # a run saved before its first evaluation
    import torch

    torch.save(ck, "noeval.pt")
    for argv in (["info", "noeval.pt", "--json"], ["info", str(run), "--json"],
                 ["sample", str(run), "--length", "5", "--json"], ["eval", str(run), str(tiny_corpus), "--json"],
                 ["corpus", "list", "--json"], ["train", str(tiny_corpus), "--dry-run", "--json", "--max-steps", "3"],
                 ["train", str(tiny_corpus), *TINY, "--max-steps", "2", "--json", "--quiet", "--out", "j"]):
        r = cli(*argv)
        assert r.exit_code == 0, (argv, r.stderr)
        assert strict_json(r.stdout), argv


@pytest.mark.parametrize("argv,message", [
    (["eval", "{run}", "{corpus}", "--seq-len", "0"], "--seq-len must be at least 1"),
    (["eval", "{run}", "{corpus}", "--batch-size", "-3"], "--batch-size must be at least 1"),
    (["tokenize", "{corpus}", "--tokenizer", "bpe", "--vocab-size", "0"], "--vocab-size must be at least 1"),
    (["vectorize", "{corpus}", "--kind", "bow", "--max-vocab", "-1"], "--max-vocab must be at least 1"),
    (["train", "{corpus}", "--min-count", "0", "--tokenizer", "word"], "--min-count must be at least 1"),
    (["train", "{corpus}", "--weight-decay", "-1"], "--weight-decay must be >= 0"),
    (["sample", "{run}", "--threads", "0"], "--threads must be at least 1"),
    (["embed", "{corpus}", "-o", "x.kv", "--window", "0"], "--window must be at least 1"),
])
def test_numeric_options_are_checked(run, tiny_corpus, argv, message):
    argv = [a.format(run=run, corpus=tiny_corpus) for a in argv]
    r = cli(*argv)
    assert r.exit_code == 2 and r.stderr == f"error: {message}\n", r.stderr


def test_files_follow_the_umask(tiny_corpus):
    """Checkpoints, caches and vectors get 0666 less the umask, as files from open() do."""
    old = os.umask(0o027)
    try:
        r = cli("train", str(tiny_corpus), *TINY, "--max-steps", "2", "--quiet", "--out", "m")
        assert r.exit_code == 0, r.stderr
        assert cli("embed", str(tiny_corpus), "-o", "v.kv", "--min-count", "1", "--quiet").exit_code == 0
    finally:
        os.umask(old)
    cache = Path(os.environ["CHARNN_CACHE"])
    files = [Path("m/latest.pt"), Path("m/best.pt"), Path("v.kv"), *cache.rglob("*.ids"), *cache.rglob("*.json")]
    assert len(files) > 4
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o640, (f, oct(f.stat().st_mode))


def test_resume_with_a_step_limit_already_reached_says_so(run):
    r = cli("train", "--resume", str(run), "--max-steps", "6")
    assert r.exit_code == 2
    assert r.stderr == (f"error: --max-steps 6: the run in {run} is already at step 6; give a larger "
                        "--max-steps (or --time-budget) to train on\n")


def test_empty_stdin_says_so_without_a_cache_path():
    for text in ("", "  \n\n"):
        r = cli("train", "-", "--max-steps", "2", input=text)
        assert r.exit_code == 1
        assert r.stderr == "error: standard input is empty (or only whitespace): nothing to train on\n"


def test_corpus_list_shows_small_sizes():
    r = cli("corpus", "list")
    line = next(x for x in r.stdout.splitlines() if x.startswith("crime-and-punishment"))
    assert " 3.79 kB " in line and "0.00" not in line


def test_dry_run_with_fixed_limits_prints_a_readable_plan(tiny_corpus):
    r = cli("train", str(tiny_corpus), "--dry-run", "--max-steps", "100")
    assert r.exit_code == 0 and "Config(" not in r.stdout
    assert re.search(r"^model +2 x 512 LSTM", r.stdout, flags=re.M)
    assert re.search(r"^limits +max steps 100$", r.stdout, flags=re.M)
    # regularisers beyond dropout show on the model line when they are on, and only then
    assert "weight drop" not in r.stdout
    r = cli("train", str(tiny_corpus), "--dry-run", "--max-steps", "100", "--weight-drop", "0.2", "--ar", "1")
    assert re.search(r"^model .*dropout [\d.]+, weight drop 0.2, AR 1,", r.stdout, flags=re.M), r.stdout


def test_train_help_shows_defaults_and_fits_80_columns(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    r = cli("train", "--help")
    assert r.exit_code == 0
    assert "[default: 512, or chosen by --time-budget]" in " ".join(r.stdout.split())
    assert "--nproc N" in r.stdout and all(len(line) <= 80 for line in r.stdout.splitlines())
    assert "--install-completion" in cli("--help").stdout


def test_the_summary_says_stopped_not_done_when_interrupted():
    from charnn.commands.train import summary_line

    s = {"steps": 40, "elapsed": 12.0, "run_dir": "checkpoints/x", "interrupted": True,
         "val_nats_per_char": 2.0, "val_bpc": 2.885, "best_val_bpc": 2.885}
    assert summary_line(s).startswith("stopped at step 40 after 0:12; val 2.0000")
    assert "done" not in summary_line(s)
    assert summary_line({**s, "interrupted": False}).startswith("done: 40 steps in 0:12")


def test_after_a_resume_the_summary_counts_the_whole_run(run):
    r = cli("train", "--resume", str(run), "--max-steps", "9", "--json", "--quiet")
    assert r.exit_code == 0, r.stderr
    summary = strict_json(r.stdout)[0]
    ck = checkpoint.load(run / "latest.pt")
    # the summary's elapsed and the checkpoint's are the same clock: earlier sessions included
    assert summary["elapsed"] >= ck["progress"]["elapsed"] - 1.0


# ----------------------------------------------------------------------------------------------
# the progress line

def test_the_status_line_fits_the_terminal():
    from charnn.commands.progress import Display

    parts = ["step 1200", "loss 1.2345", "val 1.4567", "ETA 3:12", "12,345 chars/s", "elapsed 1:48", "epoch 2"]
    for width in (200, 120, 80, 60, 40, 20, 8):
        line = Display._line("train", 0.4, parts, width)
        assert line.cell_len <= width - 1, (width, line.plain)
    wide = Display._line("train", 0.4, parts, 120).plain
    assert "━" in wide and "epoch 2" in wide
    at80 = Display._line("train", 0.4, parts, 80).plain
    assert "━" in at80 and "step 1200" in at80 and "ETA 3:12" in at80     # the bar and what matters
    assert "━" in Display._line("train", 0.4, parts, 40).plain
    narrow = Display._line("train", 0.4, parts, 25).plain
    assert narrow == "train  step 1200"                 # too narrow for a bar: the step stays


# ----------------------------------------------------------------------------------------------
# embed: export, and analogy questions from stdin

def test_embed_export_converts_between_formats(tiny_corpus):
    assert cli("embed", str(tiny_corpus), "-o", "a.kv", "--min-count", "1", "--quiet").exit_code == 0
    for out in ("b.vec", "c.bin", "d.kv", "e.txt.gz"):
        r = cli("embed", "export", "a.kv", "-o", out)
        assert r.exit_code == 0, r.stderr
        assert r.stderr.startswith("wrote ") and r.stdout == ""
    from charnn.representations import word2vec

    a, d = word2vec.load(Path("a.kv")), word2vec.load(Path("d.kv"))
    assert list(a.index_to_key) == list(d.index_to_key)
    assert abs(a["cat"] - d["cat"]).max() < 1e-5        # through text and binary and back
    assert cli("embed", "export", "a.kv", "-o", "a.kv").exit_code == 2


def test_analogy_from_stdin_prefixes_each_answer_with_its_question(tiny_corpus):
    assert cli("embed", str(tiny_corpus), "-o", "a.kv", "--min-count", "1", "--quiet").exit_code == 0
    r = cli("embed", "analogy", "a.kv", "--topn", "2", input="cat mat dog\n")
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and all(line.startswith("cat mat dog\t") for line in lines)
