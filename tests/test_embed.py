"""charnn embed: word2vec vectors built on gensim's Lee corpus in well under a second (tiny dim,
few epochs), queried, evaluated, exported and reloaded; bad input fails with one clear line."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from charnn.representations import word2vec as embed
from charnn.tokenizers.word import split_words
from tests.conftest import cli, run_charnn

FAST = ["--dim", "16", "--epochs", "2", "--min-count", "3", "--workers", "1"]


@pytest.fixture(scope="module")
def lee_kv(tmp_path_factory) -> Path:
    """Vectors built once for the query tests (through the library, in a private cache)."""
    d = tmp_path_factory.mktemp("lee")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHARNN_CACHE", str(d / ".cache"))
        from charnn import corpora

        kv, stats = embed.build(corpora.resolve("lee"),
                                embed.EmbedConfig(dim=16, epochs=3, min_count=3, sg=True, workers=1))
    assert stats.vocab == len(kv) > 1000 and stats.corpus_words > 60_000
    path = d / "lee.kv"
    embed.save(kv, path)
    return path


def assert_clean_error(result, code: int = 1, contains: str = "") -> str:
    err = result.stderr if isinstance(result.stderr, str) else result.stderr.decode()
    rc = result.exit_code if hasattr(result, "exit_code") else result.returncode
    assert rc == code, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert contains in err, err
    return err


# ---------------------------------------------------------------------------------------------
# building


def test_build_default_form_writes_native_vectors(tmp_path):
    r = cli("embed", "lee", "-o", "lee.kv", *FAST, "--json")
    assert r.exit_code == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["format"] == "native" and summary["dim"] == 16 and summary["vocab"] > 1000
    assert summary["corpus_words"] > 60_000 and summary["corpus_cached"] is False
    assert "epoch 2/2" in r.stderr and "wrote" in r.stderr  # progress and summary on stderr

    from gensim.models import KeyedVectors

    kv = KeyedVectors.load("lee.kv")  # gensim reads it as its own
    assert len(kv) == summary["vocab"] and kv.vector_size == 16
    assert sorted(os.listdir(".")) == [".cache", "lee.kv"]  # one file, no temp or side files left

    # `embed build` is the same command, the tokenized corpus now comes from the cache, and one
    # worker with one seed repeats exactly
    r2 = cli("embed", "build", "lee", "-o", "again.kv", *FAST, "--json", "--quiet")
    assert r2.exit_code == 0 and r2.stderr == ""
    assert json.loads(r2.stdout)["corpus_cached"] is True
    kv2 = KeyedVectors.load("again.kv")
    assert kv2.index_to_key == kv.index_to_key
    assert np.array_equal(kv2.vectors, kv.vectors)


def test_corpus_named_like_a_subcommand(tmp_path):
    Path("similar").write_text("the cat sat on the mat\nthe dog sat on the log\n" * 5)
    r = cli("embed", "build", "similar", "-o", "s.txt", "--min-count", "2", "--dim", "8", "-q")
    assert r.exit_code == 0, r.stderr
    assert Path("s.txt").read_text().splitlines()[0] == "7 8"  # word2vec text, from the suffix
    # without `build`, `similar` is the query command
    r = cli("embed", "similar", "s.txt", "cat", "--topn", "2")
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 2


def test_options_reach_gensim(tmp_path):
    r = cli("embed", "lee", "-o", "v.kv", "--dim", "8", "--epochs", "1", "--min-count", "1",
            "--max-vocab", "50", "--lowercase", "--cbow", "--negative", "0", "--window", "2", "-q")
    assert r.exit_code == 0, r.stderr
    kv = embed.load(Path("v.kv"))
    assert 40 <= len(kv) <= 50 and kv.vector_size == 8  # at most 50: ties at the cut go together
    assert all(w == w.lower() for w in kv.index_to_key)
    assert kv.index_to_key[0] == "the"


def test_prepared_corpus_is_split_words_one_sentence_per_line(tmp_path):
    text = "Hello, world.\r\n\n\nIt's well-known: naïve café — 42!\nСъешь ещё\nlast line no newline"
    src = tmp_path / "t.txt"
    src.write_text(text, encoding="utf-8")
    p = embed.prepare_corpus(src)
    expected = [split_words(line) for line in text.split("\n")]
    expected = [s for s in expected if s]
    got = [line.split(" ") for line in p.path.read_text(encoding="utf-8").splitlines()]
    assert got == expected
    assert p.sentences == len(expected) and p.words == sum(map(len, expected))
    assert p.counts["well-known"] == 1 and "\n" not in p.counts
    again = embed.prepare_corpus(src)
    assert again.cached and again.path == p.path
    lower = embed.prepare_corpus(src, lowercase=True)
    assert lower.path != p.path and "hello" in lower.counts


# ---------------------------------------------------------------------------------------------
# queries


def test_similar(lee_kv):
    r = cli("embed", "similar", str(lee_kv), "government", "--topn", "5")
    assert r.exit_code == 0, r.stderr
    rows = [line.split("\t") for line in r.stdout.splitlines()]
    kv = embed.load(lee_kv)
    assert len(rows) == 5 and all(w in kv.key_to_index and w != "government" for w, _ in rows)
    scores = [float(s) for _, s in rows]
    assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)
    assert rows[0][0] == kv.most_similar("government", topn=1)[0][0]

    r = cli("embed", "similar", str(lee_kv), "police", "fire", "--topn", "3", "--json")
    objs = [json.loads(line) for line in r.stdout.splitlines()]
    assert [o["word"] for o in objs] == ["police", "fire"] and all(len(o["similar"]) == 3 for o in objs)


def test_analogy_and_vector(lee_kv):
    r = cli("embed", "analogy", str(lee_kv), "Australia", "Australian", "Israel", "--json")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    answers = [a["word"] for a in out["answers"]]
    assert len(answers) == 5 and not {"Australia", "Australian", "Israel"} & set(answers)

    r = cli("embed", "vector", str(lee_kv), "police", "Sydney")
    lines = r.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["police", "Sydney"]
    kv = embed.load(lee_kv)
    got = np.array([float(x) for x in lines[1].split()[1:]], dtype=np.float32)
    assert np.array_equal(got, kv["Sydney"])  # printed exactly


def test_queries_read_stdin(lee_kv):
    r = cli("embed", "vector", str(lee_kv), "--json", input="police\nfire  Sydney\n")
    assert [json.loads(line)["word"] for line in r.stdout.splitlines()] == ["police", "fire", "Sydney"]
    r = cli("embed", "analogy", str(lee_kv), "--topn", "2", input="man he woman\npolice fire Sydney\n")
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 4 and lines[0].startswith("man he woman\t") and lines[3].startswith("police fire Sydney\t")
    r = cli("embed", "similar", str(lee_kv), "--topn", "1", input="police\n")
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 1


def test_eval(lee_kv):
    r = cli("embed", "eval", str(lee_kv), "--json")
    assert r.exit_code == 0, r.stderr
    res = {x["test"]: x for x in json.loads(r.stdout)["results"]}
    assert res["questions-words.txt"]["total"] == 19544
    assert res["wordsim353.tsv"]["total"] == 353 and res["simlex999.txt"]["total"] == 999
    for x in res.values():
        assert 0 < x["covered"] < x["total"]  # a small news corpus covers some items, not all
        assert x["score"] is not None and -1 <= x["score"] <= 1
    r = cli("embed", "eval", str(lee_kv))
    assert "wordsim353.tsv" in r.stdout and "spearman" in r.stdout and "/ 19,544" in r.stdout


# ---------------------------------------------------------------------------------------------
# formats


@pytest.mark.parametrize("name,fmt,binary", [("v.txt", None, False), ("v.vec.gz", None, False),
                                             ("v.bin", None, True), ("v.out", "word2vec-bin", True)])
def test_exports_reload_with_gensim(lee_kv, tmp_path, name, fmt, binary):
    from gensim.models import KeyedVectors

    kv = embed.load(lee_kv)
    written = embed.save(kv, tmp_path / name, fmt)
    assert written == ("word2vec-bin" if binary else "word2vec-text")
    back = KeyedVectors.load_word2vec_format(str(tmp_path / name), binary=binary)
    assert back.index_to_key == kv.index_to_key
    assert np.allclose(back.vectors, kv.vectors, atol=1e-5)
    assert embed.detect_format(tmp_path / name) == written
    r = cli("embed", "similar", str(tmp_path / name), "police", "--topn", "2")
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 2


def test_vectors_made_elsewhere(lee_kv, tmp_path):
    kv = embed.load(lee_kv)
    # gensim's own save with big arrays in .npy side files
    kv.save(str(tmp_path / "side.kv"), sep_limit=0)
    assert (tmp_path / "side.kv.vectors.npy").exists()
    assert np.array_equal(embed.load(tmp_path / "side.kv").vectors, kv.vectors)
    # GloVe-style text: no header line
    with open(tmp_path / "glove.txt", "w") as f:
        for w in kv.index_to_key[:50]:
            f.write(w + " " + " ".join(str(v) for v in kv[w]) + "\n")
    assert embed.detect_format(tmp_path / "glove.txt") == "word2vec-text-noheader"
    assert len(embed.load(tmp_path / "glove.txt")) == 50
    # missing side file
    (tmp_path / "side.kv.vectors.npy").unlink()
    r = cli("embed", "eval", str(tmp_path / "side.kv"))
    assert_clean_error(r, 1, "side file")


# ---------------------------------------------------------------------------------------------
# bad input


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_bad_vectors_files(lee_kv, tmp_path):
    assert_clean_error(cli("embed", "similar", "missing.kv", "a"), 1, "no such file")
    Path("garbage.kv").write_bytes(b"this is not a vectors file\n")
    assert_clean_error(cli("embed", "eval", "garbage.kv"), 1, "not a word-vectors file")
    Path("trunc.kv").write_bytes(lee_kv.read_bytes()[:2000])
    assert_clean_error(cli("embed", "similar", "trunc.kv", "police"), 1, "damaged")
    Path("trunc.txt").write_text("10 4\nthe 0.1 0.2 0.3 0.4\nof 0.1 0.2\n")
    assert_clean_error(cli("embed", "similar", "trunc.txt", "the"), 1, "damaged")
    Path("evil.kv").write_bytes(pickle.dumps(_Boom(), protocol=4))
    assert_clean_error(cli("embed", "similar", "evil.kv", "the"), 1, "refusing to unpickle")
    assert not Path("pwned").exists()


def test_unknown_words(lee_kv):
    err = assert_clean_error(cli("embed", "similar", str(lee_kv), "police", "xyzzy"), 1, "'xyzzy'")
    assert "not in the vocabulary" in err
    assert_clean_error(cli("embed", "analogy", str(lee_kv), "man", "qwerty", "woman"), 1, "'qwerty'")
    r = cli("embed", "vector", str(lee_kv), "POLICE")
    assert_clean_error(r, 1, "'police' is")  # a case hint
    assert r.stdout == ""


def test_bad_corpora_and_flags(tmp_path):
    Path("empty.txt").write_text("")
    assert_clean_error(cli("embed", "empty.txt", "-o", "e.kv"), 1, "no words")
    Path("few.txt").write_text("one two three\n")
    assert_clean_error(cli("embed", "few.txt", "-o", "e.kv"), 1, "--min-count")
    assert_clean_error(cli("embed", "nonesuch", "-o", "e.kv"), 1, "no such file")
    assert_clean_error(cli("embed", "few.txt", "-o", "e.kv", "--dim", "0"), 2, "--dim")
    assert_clean_error(cli("embed", "few.txt", "-o", "nodir/e.kv", "--min-count", "1"), 1, "does not exist")
    assert_clean_error(cli("embed", "few.txt", "-o", "e.kv", "--format", "csv"), 2, "unknown format")
    assert not Path("e.kv").exists()
    Path("bad.txt").write_bytes(b"caf\xe9\n")
    assert_clean_error(cli("embed", "bad.txt", "-o", "e.kv"), 1, "UTF-8")
    assert_clean_error(cli("embed", "analogy", "x.kv", "a", "b"), 2, "three words")


def test_failed_save_leaves_old_file(lee_kv, tmp_path, monkeypatch):
    kv = embed.load(lee_kv)
    target = tmp_path / "v.kv"
    target.write_bytes(b"old")

    def broken(*a, **k):
        Path(a[0]).write_bytes(b"half")  # a partial write, then a failure
        raise OSError("disk full")

    monkeypatch.setattr(type(kv), "save", lambda self, *a, **k: broken(*a, **k))
    with pytest.raises(OSError):
        embed.save(kv, target)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["v.kv"]


# ---------------------------------------------------------------------------------------------
# a real process: corpus from stdin, vectors queried through a pipe


def test_subprocess_stdin_build_and_query(tmp_path):
    text = ("the cat sat on the mat . the dog sat on the log .\n" * 30).encode()
    p = run_charnn("embed", "-", "-o", "pipe.kv", "--min-count", "2", "--dim", "8", "--epochs", "2",
                   "--workers", "1", input=text)
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout == b"" and b"wrote 8 vectors" in p.stderr
    p = run_charnn("embed", "similar", "pipe.kv", "--topn", "3", input=b"cat\n")
    assert p.returncode == 0, p.stderr.decode()
    rows = [line.split("\t") for line in p.stdout.decode().splitlines()]
    assert len(rows) == 3 and all(w in {"the", "sat", "on", "mat", ".", "dog", "log"} for w, _ in rows)
