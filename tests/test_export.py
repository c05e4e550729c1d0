"""charnn export: the ONNX and TorchScript files run without charnn and give charnn's logits; the
vocabulary JSON decodes as the tokenizer does; the sampler example in docs/export.md runs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from charnn.config import ModelConfig, TrainConfig
from charnn.export import export, vocab_path
from charnn.export.step import StepModel
from charnn.export.vocab import describe
from charnn.model import RNNLM
from charnn.run import Run, load
from charnn.training.trainer import train
from tests.conftest import REPO, cli
from tests.test_model import _data

DOC = REPO / "docs" / "export.md"


def lee_text(chars: int) -> str:
    """Real text that ships with gensim (news articles), no network needed."""
    from gensim.test.utils import datapath

    return Path(datapath("lee_background.cor")).read_text(encoding="utf-8")[:chars]


@pytest.fixture(scope="module")
def lee_run(tmp_path_factory) -> Run:
    """A small char LSTM trained for a few steps on real text."""
    text = lee_text(20_000)
    data = _data(text)
    out = tmp_path_factory.mktemp("lee") / "lee"
    torch.manual_seed(0)
    train(ModelConfig(vocab_size=data.tokenizer.vocab_size, layers=2, hidden=32, embed_dim=16),
          TrainConfig(seq_len=32, batch_size=8, max_steps=20, eval_every=20, warmup=5), data, out)
    return load(out)


def _fake_run(model: RNNLM, tok, name="m") -> Run:
    return Run(Path(f"/nowhere/{name}/best.pt"), {"progress": {}}, model.eval(), tok)


def test_onnx_logits_equal_charnns_over_200_steps_of_real_text(lee_run, tmp_path):
    import onnxruntime as ort

    done = export(lee_run, "onnx", tmp_path / "lee.onnx")
    assert done.model.is_file() and done.vocab == tmp_path / "lee.vocab.json"
    assert done.max_diff is not None and done.max_diff < 1e-4 and "onnxruntime" in done.checked_with
    session = ort.InferenceSession(str(done.model))
    meta = json.loads(session.get_modelmeta().custom_metadata_map["charnn"])
    assert meta == json.loads(done.vocab.read_text())
    assert [i.name for i in session.get_inputs()] == ["ids", "state"]
    ids = lee_run.tokenizer.encode(lee_text(30_000)[20_000:20_200])            # text it was not trained on
    assert len(ids) == 200
    with torch.no_grad():
        want, _ = lee_run.model(torch.from_numpy(ids).unsqueeze(0))           # (1, 200, V)
    state = np.zeros(meta["state_shape"][:1] + [1, meta["hidden"]], np.float32)
    worst = 0.0
    for t, i in enumerate(ids):
        logits, state = session.run(None, {"ids": np.array([i]), "state": state})
        worst = max(worst, float(np.abs(logits[0] - want[0, t].numpy()).max()))
    assert worst < 1e-4, worst
    # the batch dimension is free: 3 streams at once give each stream's own logits
    logits, _ = session.run(None, {"ids": ids[:3], "state": np.zeros((4, 3, 32), np.float32)})
    one, _ = session.run(None, {"ids": ids[1:2], "state": np.zeros((4, 1, 32), np.float32)})
    assert np.allclose(logits[1], one[0], atol=1e-5)


STEP_CASES = [
    ("lstm", 2, {}), ("gru", 2, {}), ("rnn", 3, {}),
    ("lstm", 2, {"tie_weights": True}),                    # tied, with a projection 24 -> 8
    ("gru", 1, {"input": "onehot"}),
    ("lstm", 2, {"input": "bow", "bow_dim": 7}), ("gru", 2, {"input": "bow", "bow_dim": 7}),
]


def test_torchscript_loads_with_plain_torch_and_steps_like_the_model(tmp_path):
    """Every cell and input kind, each exported and then stepped in one fresh interpreter where
    importing charnn fails: the files need torch alone."""
    tok = _data("abcdefghij klmnopq\n" * 3).tokenizer
    wants = []
    for k, (cell, layers, extra) in enumerate(STEP_CASES):
        torch.manual_seed(k)
        cfg = ModelConfig(vocab_size=tok.vocab_size, cell=cell, layers=layers,
                          **{"hidden": 24, "embed_dim": 8, **extra})
        model = RNNLM(cfg).eval()
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "bias" in name:
                    p.uniform_(-0.5, 0.5)
        done = export(_fake_run(model, tok), "torchscript", tmp_path / f"m{k}.pt")
        assert done.max_diff < 1e-5
        ids = torch.randint(0, tok.vocab_size, (3, 12))
        cond = torch.rand(3, 7) if cfg.input == "bow" else torch.zeros(3, 7)
        with torch.no_grad():
            wants.append(model(ids, None, cond if cfg.input == "bow" else None)[0])
        np.save(tmp_path / f"ids{k}.npy", ids.numpy())
        np.save(tmp_path / f"cond{k}.npy", cond.numpy())
    code = (
        "import sys, json, numpy as np, torch\n"
        "sys.modules['charnn'] = None\n"
        f"for k in range({len(STEP_CASES)}):\n"
        "    extra = {'charnn.json': ''}\n"
        "    m = torch.jit.load(f'm{k}.pt', _extra_files=extra)\n"
        "    meta = json.loads(extra['charnn.json'])\n"
        "    ids = torch.from_numpy(np.load(f'ids{k}.npy'))\n"
        "    cond = [torch.from_numpy(np.load(f'cond{k}.npy'))] if meta['input'] == 'bow' else []\n"
        "    state = torch.zeros(meta['state_shape'][0], 3, meta['hidden'])\n"
        "    out = []\n"
        "    for t in range(ids.shape[1]):\n"
        "        logits, state = m(ids[:, t], state, *cond)\n"
        "        out.append(logits)\n"
        "    np.save(f'got{k}.npy', torch.stack(out, 1).detach().numpy())\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, timeout=120)
    for k, want in enumerate(wants):
        assert np.allclose(np.load(tmp_path / f"got{k}.npy"), want.numpy(), atol=1e-5), STEP_CASES[k]


def test_onnx_export_of_a_conditioned_gru_takes_the_topic_vector(tmp_path):
    import onnxruntime as ort

    torch.manual_seed(1)
    tok = _data("abcdefghij klmnopq\n" * 3).tokenizer
    model = RNNLM(ModelConfig(vocab_size=tok.vocab_size, cell="gru", layers=2, hidden=16, embed_dim=8,
                              input="bow", bow_dim=5)).eval()
    done = export(_fake_run(model, tok), "onnx", tmp_path / "g.onnx")
    session = ort.InferenceSession(str(done.model))
    assert [i.name for i in session.get_inputs()] == ["ids", "state", "cond"]
    assert done.max_diff < 1e-5


@pytest.mark.parametrize("kind", ["char", "byte", "word", "bpe"])
def test_the_vocabulary_json_decodes_as_the_tokenizer(kind):
    from charnn.tokenizers import get_tokenizer_class
    from charnn.tokenizers.word import join_words

    text = "The cat sat, and then — naïve — the dog (quietly) sat too.\n" * 30 + "日本語のテキスト。\n" * 5
    tok = get_tokenizer_class(kind).fit(lambda: [text], vocab_size=400)
    model = RNNLM(ModelConfig(vocab_size=tok.vocab_size, hidden=8, embed_dim=4))
    doc = json.loads(json.dumps(describe(_fake_run(model, tok), 4)))
    assert doc["vocab_size"] == tok.vocab_size == len(doc["tokens"]) == len(doc["token_bytes"])
    ids = [int(i) for i in tok.encode(text[:400])]
    if doc["decode"] == "concat":
        got = b"".join(bytes.fromhex(doc["token_bytes"][i]) for i in ids).decode("utf-8", "replace")
    else:
        got = join_words([doc["tokens"][i] for i in ids])
        assert re.findall(doc["word_pattern"], "a b, c.") == ["a", "b", ",", "c", "."]
    assert got == tok.decode(ids)
    assert doc["newline_id"] == tok.id_of("\n")
    if kind == "bpe":
        import base64

        import sentencepiece as spm

        sp = spm.SentencePieceProcessor(model_proto=base64.b64decode(doc["sentencepiece_model"]))
        assert sp.vocab_size() == tok.vocab_size


def test_the_documented_sampler_runs_with_onnxruntime_and_numpy_alone(lee_run, tmp_path):
    """The example in docs/export.md, run exactly as written there."""
    blocks = re.findall(r"<!-- example: onnx-sampler -->\s*```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1, "docs/export.md must hold the sampler example once, after its marker"
    code = blocks[0]
    assert len(code.strip().splitlines()) <= 45
    assert "charnn" not in re.sub(r"#.*|\"[^\"]*\"", "", code)     # imports and uses nothing of charnn
    export(lee_run, "onnx", tmp_path / "model.onnx")
    (tmp_path / "sample.py").write_text(code, encoding="utf-8")
    res = subprocess.run([sys.executable, "sample.py", "model.onnx", "The "], cwd=tmp_path, capture_output=True,
                         timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "1"})
    assert res.returncode == 0, res.stderr.decode()
    out = res.stdout.decode("utf-8")
    assert out.startswith("The ") and len(out) > 200


def test_export_command_prints_the_paths_and_refuses_bad_arguments(lee_run, tmp_path):
    res = cli("export", str(lee_run.path), "--format", "torchscript", "-o", str(tmp_path / "x.pt"))
    assert res.exit_code == 0, res.stderr
    assert res.stdout.split() == [str(tmp_path / "x.pt"), str(tmp_path / "x.vocab.json")]
    assert "logits within" in res.stderr
    res = cli("export", str(lee_run.path), "-f", "torchscript", "-o", str(tmp_path / "y.pt"), "--json")
    assert res.exit_code == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["format"] == "torchscript" and info["max_logit_diff"] < 1e-4 and info["vocab"].endswith("y.vocab.json")
    for args, message in [
        (["-f", "tflite", "-o", "z"], "unknown --format"),
        (["-f", "onnx", "-o", str(tmp_path)], "is a folder"),
        (["-f", "onnx", "-o", str(tmp_path / "no" / "z.onnx")], "no such folder"),
    ]:
        res = cli("export", str(lee_run.path), *args)
        assert res.exit_code == 2 and message in res.stderr, (args, res.stderr)
        assert res.stdout == ""
    assert not list(tmp_path.glob(".*tmp"))                                     # no temporary file left


def test_vocab_path_sits_beside_the_model():
    assert vocab_path(Path("a/lee.onnx")) == Path("a/lee.vocab.json")
    assert vocab_path(Path("model")) == Path("model.vocab.json")
    assert vocab_path(Path("m.vocab.json")) == Path("m.vocab.vocab.json")


def test_step_model_state_size():
    for cell, s in (("lstm", 6), ("gru", 3), ("rnn", 3)):
        assert StepModel(RNNLM(ModelConfig(vocab_size=5, cell=cell, layers=3, hidden=4, embed_dim=2))).state_size == s


def test_every_export_option_is_documented():
    from tests.test_serve import documented_options

    flags, documented = documented_options("export", "export.md")
    assert flags - documented == set()
