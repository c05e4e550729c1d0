"""charnn tokenize / charnn vectorize as Unix filters: data-only stdout, escapes, models from
checkpoints and .model files, clear errors, npy, and a pipe closed early."""

from __future__ import annotations

import io
import json
import subprocess

import numpy as np
import pytest

from tests.conftest import MIXED, TINY_MODEL, charnn_cmd, cli, run_charnn, subprocess_env

TEXT = "Hello, wörld  🙂\tx\\y\n\nLast line"


def test_tokenize_char_and_byte_escapes():
    r = cli("tokenize", "--tokenizer", "char", input=TEXT)
    assert r.exit_code == 0 and r.stderr == ""
    lines = r.stdout.split("\n")
    assert lines[0] == "H e l l o , \\s w ö r l d \\s \\s 🙂 \\t x \\\\ y"
    assert lines[1:] == ["", "L a s t \\s l i n e", ""]     # one output line per input line
    b = cli("tokenize", "--tokenizer", "byte", input="é🙂\n").stdout
    assert b == "\\xc3 \\xa9 \\xf0 \\x9f \\x99 \\x82\n"
    ids = cli("tokenize", "--tokenizer", "byte", "--ids", input="é\n").stdout
    assert ids == "195 169\n"


def test_tokenize_word_without_a_model_and_ids_need_one():
    r = cli("tokenize", "--tokenizer", "word", input="Hello, world.\n")
    assert r.stdout == "Hello , world .\n"
    bad = cli("tokenize", "--tokenizer", "word", "--ids", input="Hello\n")
    assert bad.exit_code == 2 and bad.stderr.startswith("error:") and bad.stdout == ""


def test_tokenize_bpe_fits_on_a_file_and_reads_checkpoints(mixed_corpus, tmp_path):
    r = cli("tokenize", str(mixed_corpus), "--tokenizer", "bpe", "--vocab-size", "400")
    assert r.exit_code == 0, r.stderr
    assert "fitting a bpe tokenizer" in r.stderr
    first = r.stdout.split("\n")[0].split(" ")
    # unescaping the tokens gives the line back
    assert "".join(t.replace("\\s", " ") for t in first) == MIXED.split("\n")[0]
    assert len(first) < len(MIXED.split("\n")[0])
    # stdin needs a model
    assert cli("tokenize", "--tokenizer", "bpe", input="x\n").exit_code == 2
    out = tmp_path / "run"
    assert cli("train", str(mixed_corpus), "--tokenizer", "unigram", "--vocab-size", "400", *TINY_MODEL,
               "--max-steps", "2", "--out", str(out), "--quiet").exit_code == 0
    from charnn import checkpoint
    from charnn.tokenizers import tokenizer_from_dict

    tok = tokenizer_from_dict(checkpoint.load(out / "latest.pt")["tokenizer"])
    r = cli("tokenize", "--model", str(out), "--ids", input=MIXED)
    assert r.exit_code == 0 and r.stderr == ""
    got = [[int(i) for i in l.split()] for l in r.stdout.split("\n")[:4]]
    assert got == [tok.encode(l).tolist() for l in MIXED.split("\n")[:4]]
    # a sentencepiece .model file works as well
    (tmp_path / "u.model").write_bytes(tok.state()["model"])
    r2 = cli("tokenize", "--model", str(tmp_path / "u.model"), "--tokenizer", "unigram", "--ids", input=MIXED)
    assert r2.stdout == r.stdout
    assert cli("tokenize", "--model", str(out), "--tokenizer", "char", input="x").exit_code == 2


def test_tokenize_rejects_bad_input(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_bytes(b"fine\nbad \xff here\n")
    r = run_charnn("tokenize", str(p))
    assert r.returncode == 1
    assert r.stderr.decode().strip() == (f"error: {p}: not valid UTF-8 on line 2 (byte 5 of the line); if the "
                                         "text is in another encoding, say which with --encoding (e.g. --encoding latin-1)")
    assert r.stdout == b"f i n e\n"     # streamed: the good line went out before the bad one
    assert cli("tokenize", str(tmp_path / "nope.txt")).exit_code == 1


def test_vectorize_bow_onehot_word2vec(tmp_path):
    fit = tmp_path / "fit.txt"
    fit.write_text("war and peace\npeace garden\nwar war\n", encoding="utf-8")
    r = cli("vectorize", "--kind", "bow", "--fit", str(fit), input="War, war! peace?\nnothing\n")
    assert r.exit_code == 0 and r.stderr == ""
    rows = [json.loads(l) for l in r.stdout.splitlines()]
    assert len(rows) == 2 and rows[1]["indices"] == []
    words = ["war", "peace", "and", "garden"]      # by count, then alphabetical
    assert dict(zip(rows[0]["indices"], rows[0]["values"])) == {words.index("war"): 2, words.index("peace"): 1}
    tfidf = cli("vectorize", "--kind", "bow", "--fit", str(fit), "--weight", "tfidf", input="war peace\n")
    v = json.loads(tfidf.stdout)["values"]
    assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)

    oh = cli("vectorize", "--kind", "onehot", "--tokenizer", "byte", input="ab\n")
    assert json.loads(oh.stdout) == {"dim": 256, "ids": [97, 98]}

    from gensim.models import KeyedVectors

    kv = KeyedVectors(vector_size=3)
    kv.add_vectors(["war", "peace"], np.array([[1, 0, 0], [0, 1, 0]], np.float32))
    kv.save_word2vec_format(str(tmp_path / "v.txt"))
    w2v = cli("vectorize", "--kind", "word2vec", "--vectors", str(tmp_path / "v.txt"), input="War peace zebra\n")
    rec = json.loads(w2v.stdout)
    assert rec["words"] == 2 and rec["vector"] == [0.5, 0.5, 0]


def test_vectorize_npy_and_errors(tmp_path):
    fit = tmp_path / "fit.txt"
    fit.write_text("war and peace\npeace garden\n", encoding="utf-8")
    r = run_charnn("vectorize", "--kind", "bow", "--fit", str(fit), "--format", "npy",
                   input=b"war war\ngarden\n")
    assert r.returncode == 0, r.stderr
    arr = np.load(io.BytesIO(r.stdout))
    assert arr.shape == (2, 4) and arr.dtype == np.float32 and arr[0].sum() == 2
    assert cli("vectorize", "--kind", "bow", input="x\n").exit_code == 2            # no vocabulary
    assert cli("vectorize", "--kind", "onehot", "--format", "npy", input="x\n").exit_code == 2
    assert cli("vectorize", "--kind", "pixels", input="x\n").exit_code == 2
    bad = cli("vectorize", "--kind", "word2vec", "--vectors", str(fit), input="x\n")
    assert bad.exit_code == 1 and bad.stderr.startswith("error:") and "Traceback" not in bad.stderr


@pytest.mark.parametrize("args", [["tokenize", "--tokenizer", "char"],
                                  ["vectorize", "--kind", "bow", "--fit", "FIT"]])
def test_early_closed_pipe_exits_quietly(tmp_path, args):
    """`cat big.txt | charnn ... | head -n 1`: exit 0, nothing on stderr, and no waiting for the
    whole input (stdin is never closed by us until the end)."""
    fit = tmp_path / "fit.txt"
    fit.write_text("the cat sat on the mat\n", encoding="utf-8")
    args = [str(fit) if a == "FIT" else a for a in args]
    p = subprocess.Popen(charnn_cmd(*args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=subprocess_env())
    line = b"the cat sat on the mat\n"
    p.stdin.write(line * 200)
    p.stdin.flush()
    first = p.stdout.readline()          # output arrives while the input is still open
    assert first
    p.stdout.close()                     # like head -n 1 exiting
    try:
        for _ in range(2000):            # keep feeding: the writer must hit the closed pipe
            p.stdin.write(line * 50)
            p.stdin.flush()
    except BrokenPipeError:
        pass
    try:
        p.stdin.close()
    except BrokenPipeError:
        pass
    rc = p.wait(timeout=60)
    err = p.stderr.read()
    assert rc == 0 and err == b""
