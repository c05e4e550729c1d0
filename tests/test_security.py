"""Security: a checkpoint or vectors file is data and loading one never runs code; no path
traversal from checkpoint contents, run names or catalog names; downloads are verified before
they are moved into place and a failed one leaves nothing under corpora/."""

from __future__ import annotations

import hashlib
import http.server
import pickle
import threading
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY_MODEL, cli


class _OpensAFile:
    """Unpickling this calls open(target, "w"): the file appearing means code ran."""

    def __init__(self, target: Path):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def _malicious(tmp_path: Path, target: Path) -> dict[str, Path]:
    payload = {"format": "charnn-checkpoint", "version": 1, "model_config": {}, "tokenizer": {},
               "model": _OpensAFile(target)}
    files = {"torch.save zip": tmp_path / "evil_zip.pt", "raw pickle": tmp_path / "evil_raw.pt"}
    torch.save(payload, files["torch.save zip"])
    files["raw pickle"].write_bytes(pickle.dumps(payload, protocol=2))
    run = tmp_path / "evil_run"
    run.mkdir()
    (run / "latest.pt").write_bytes(files["torch.save zip"].read_bytes())
    files["a run folder"] = run
    return files


@pytest.mark.parametrize("command", ["sample", "eval", "info", "tokenize", "resume"])
def test_a_malicious_checkpoint_is_refused_and_runs_nothing(tmp_path, tiny_corpus, command):
    target = tmp_path / "PWNED"
    for kind, path in _malicious(tmp_path, target).items():
        argv = {"sample": ["sample", str(path), "--length", "5"], "eval": ["eval", str(path), str(tiny_corpus)],
                "info": ["info", str(path)], "tokenize": ["tokenize", "--model", str(path), str(tiny_corpus)],
                "resume": ["train", "--resume", str(path if path.is_dir() else path.parent)]}[command]
        if command == "resume" and not path.is_dir():
            continue
        r = cli(*argv)
        assert r.exit_code == 1, (kind, r.stderr)
        assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and r.stdout == ""
        assert "is not a safe charnn checkpoint: loading it would run code" in r.stderr, r.stderr
        assert "open" in r.stderr, r.stderr          # names what it would have called
        assert not target.exists(), f"{kind}: loading ran code"


def test_a_malicious_vectors_file_is_refused_and_runs_nothing(tmp_path, tiny_corpus):
    target = tmp_path / "PWNED"
    evil = tmp_path / "evil.kv"
    evil.write_bytes(pickle.dumps(_OpensAFile(target), protocol=4))
    for argv in (["embed", "similar", str(evil), "the"],
                 ["vectorize", "--kind", "word2vec", "--vectors", str(evil), str(tiny_corpus)],
                 ["train", str(tiny_corpus), "--tokenizer", "word", "--input", "word2vec", "--vectors", str(evil),
                  *TINY_MODEL, "--max-steps", "1"]):
        r = cli(*argv)
        assert r.exit_code == 1, r.stderr
        assert r.stderr.count("\n") == 1 and "refusing to unpickle" in r.stderr and "open" in r.stderr, r.stderr
        assert not target.exists()
    assert not Path("checkpoints").exists()


def _trained(tiny_corpus: Path) -> dict:
    assert cli("train", str(tiny_corpus), *TINY_MODEL, "--max-steps", "2", "--quiet").exit_code == 0
    return torch.load("checkpoints/tiny/latest.pt", weights_only=True)


@pytest.mark.parametrize("field,value,message", [
    ("tokenizer", {"name": "../../x", "state": {}}, r"tokenizer '\.\./\.\./x' is not one this charnn knows"),
    ("tokenizer", {"name": "/etc/passwd", "state": {"chars": "abc"}}, r"tokenizer '/etc/passwd' is not one"),
    ("tokenizer", {"name": "char", "state": {"chars": "../../x"}}, r"character vocabulary is damaged"),
])
def test_checkpoint_contents_never_name_a_path(tmp_path, tiny_corpus, field, value, message):
    import re

    ck = _trained(tiny_corpus)
    bad = tmp_path / "bad.pt"
    torch.save({**ck, field: value}, bad)
    before = sorted(p for p in tmp_path.parent.rglob("*") if "x" == p.name)
    for argv in (["sample", str(bad)], ["info", str(bad)], ["eval", str(bad), str(tiny_corpus)]):
        r = cli(*argv)
        assert r.exit_code == 1 and re.search(message, r.stderr), r.stderr
    assert sorted(p for p in tmp_path.parent.rglob("*") if "x" == p.name) == before


def test_run_and_catalog_names_stay_inside_their_folders(tmp_path, tiny_corpus):
    outside = tmp_path.parent / "x"
    r = cli("corpus", "get", "../../x")
    assert r.exit_code == 1 and "no corpus named '../../x'" in r.stderr
    r = cli("train", "../../x", *TINY_MODEL, "--max-steps", "1")
    assert r.exit_code == 1 and "no such file" in r.stderr
    assert not outside.exists() and not Path("corpora").exists()
    # a run name is looked up under checkpoints/ only, never through '..'
    assert cli("sample", "../tiny").stderr == "error: ../tiny: no such checkpoint or run folder\n"
    # a corpus whose name is dots gets a run folder under checkpoints/, not checkpoints/.. (= here)
    dots = tmp_path / "...txt"
    dots.write_text(tiny_corpus.read_text())
    assert cli("train", str(dots), *TINY_MODEL, "--max-steps", "1", "--quiet").exit_code == 0
    assert Path("checkpoints/run/latest.pt").is_file() and not Path("latest.pt").exists()


class _Handler(http.server.BaseHTTPRequestHandler):
    body = b"the cat sat on the mat\n" * 1000

    def do_GET(self):
        if self.path == "/missing":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        if self.path == "/cut":               # hang up after a tenth of the promised bytes
            self.wfile.write(self.body[: len(self.body) // 10])
            self.wfile.flush()
            self.connection.close()
            return
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


def test_downloads_are_verified_and_a_failed_one_leaves_nothing(monkeypatch):
    from charnn import corpora

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    good = corpora.Corpus("test-corpus", "served on 127.0.0.1", url=f"{base}/ok",
                          sha256=hashlib.sha256(_Handler.body).hexdigest(), size=len(_Handler.body))
    monkeypatch.setitem(corpora.CATALOG, good.name, good)
    try:
        for url, message in ((f"{base}/missing", "failed: Not Found"),
                             (f"{base}/cut", "failed: the connection closed after 2,300 of 23,000 bytes"),
                             ("http://127.0.0.1:9/", "failed:"),                 # nothing listens there
                             (f"{base}/ok?tampered", None)):
            if message is None:   # same bytes, wrong checksum: as a tampered mirror would be
                monkeypatch.setitem(corpora.CATALOG, good.name,
                                    corpora.Corpus(good.name, "", url=url, sha256="0" * 64, size=1))
                message = "does not match its checksum"
            r = cli("corpus", "get", good.name, "--url", url, "--quiet")
            assert r.exit_code == 1 and message in r.stderr and r.stderr.count("\n") == 1, r.stderr
            assert not any(Path("corpora").glob("*")) if Path("corpora").exists() else True
        monkeypatch.setitem(corpora.CATALOG, good.name, good)
        r = cli("corpus", "get", good.name, "--quiet")
        assert r.exit_code == 0, r.stderr
        assert Path(r.stdout.strip()).read_bytes() == _Handler.body
        assert [p.name for p in Path("corpora").iterdir()] == ["test-corpus.txt"]
    finally:
        server.shutdown()
