"""Fine-tuning (`charnn train NEW --init-from RUN`, charnn.training.finetune): the vocabulary
grows without remapping (torch-rnn #147), the architecture is kept and its flags refused, and a
damaged or malicious source is a one-line error."""

from __future__ import annotations

import json

import pytest
import torch

from charnn import checkpoint
from charnn.config import ModelConfig, TrainConfig
from charnn.data import CorpusText
from charnn.model import RNNLM
from charnn.training import finetune
from charnn.training.dataset import prepare_data
from charnn.training.trainer import train
from tests.conftest import TINY_MODEL, cli
from tests.test_security import _malicious

OLD_TEXT = "the cat sat on the mat. the dog sat on the log.\n" * 30
NEW_TEXT = "Zebras and QUAILS jump; the cat sat! 42 xylophones?\n" * 30


def _source(tmp_path, **model) -> finetune.Source:
    f = tmp_path / "old.txt"
    f.write_text(OLD_TEXT)
    data = prepare_data(f)
    cfg = ModelConfig(vocab_size=data.tokenizer.vocab_size, **{"hidden": 24, "embed_dim": 8, **model})
    train(cfg, TrainConfig(seq_len=16, batch_size=4, max_steps=3), data, tmp_path / "src")
    return finetune.load_source(str(tmp_path / "src"))


@pytest.mark.parametrize("model", [{}, {"tie_weights": True}, {"input": "onehot"}, {"cell": "gru"}])
def test_old_characters_keep_their_ids_rows_and_predictions(tmp_path, model):
    """torch-rnn #147: after growing the vocabulary for new text, every old character has its
    old id and rows, so right after initialisation the model's logits for old characters on
    old text are exactly the source's."""
    src = _source(tmp_path, **model)
    new = tmp_path / "new.txt"
    new.write_text(NEW_TEXT)
    tok = finetune.tokenizer_for(src, CorpusText((new,)).source(), None)
    old_chars = src.tokenizer.chars
    V0, V1 = len(old_chars), tok.vocab_size
    assert tok.chars[:V0] == old_chars and V1 > V0          # appended, never remapped
    assert {"Z", "Q", "4", "!"} <= set(tok.chars[V0:])
    cfg = ModelConfig(**{**src.model_cfg.to_dict(), "vocab_size": V1})
    fresh = RNNLM(cfg)
    finetune.initializer(src)(fresh)
    w = src.weights
    if cfg.input != "onehot":
        assert torch.equal(fresh.embed.weight[:V0], w["embed.weight"])
    else:
        assert torch.equal(fresh.rnn.weight_ih_l0[:, :V0], w["rnn.weight_ih_l0"])
    assert torch.equal(fresh.head.weight[:V0], w["head.weight"])
    assert torch.equal(fresh.head.bias[:V0], w["head.bias"])
    source_model, _ = checkpoint.build_model(src.ckpt)
    ids = torch.from_numpy(tok.encode(OLD_TEXT[:200])).unsqueeze(0)
    with torch.no_grad():
        a, _ = source_model.eval()(ids)
        b, _ = fresh.eval()(ids)
    assert torch.equal(a, b[..., :V0])                      # same logits for every old id
    assert torch.equal(a.argmax(-1), b.argmax(-1))          # and the same predictions


def test_finetune_end_to_end_keeps_old_rows_and_refuses_architecture_flags(tmp_path):
    (tmp_path / "old.txt").write_text(OLD_TEXT)
    (tmp_path / "new.txt").write_text(NEW_TEXT)
    assert cli("train", "old.txt", *TINY_MODEL, "--max-steps", "20", "-q").exit_code == 0
    for flag, value in [("--hidden", "64"), ("--cell", "gru"), ("--tokenizer", "byte"), ("--tie-weights", None),
                        ("--layers", "2"), ("--vocab-size", "500")]:
        r = cli("train", "new.txt", "--init-from", "checkpoints/old", flag, *([value] if value else []),
                "--max-steps", "2")
        assert r.exit_code == 2 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, (flag, r.stderr)
        assert flag in r.stderr and "keeps the run's architecture" in r.stderr
    # the same values, --dropout and the training options are fine; lr ~0: the weights stay put
    r = cli("train", "new.txt", "--init-from", "checkpoints/old", "--hidden", "32", "--dropout", "0.1",
            "--max-steps", "1", "--lr", "1e-12", "--batch-size", "4", "--seq-len", "16", "--out", "ft")
    assert r.exit_code == 0, r.stderr
    assert "fine-tuning from checkpoints/old" in r.stderr and "vocabulary" in r.stderr
    old = torch.load("checkpoints/old/best.pt", weights_only=True)
    ft = torch.load("ft/latest.pt", weights_only=True)
    V0 = old["model_config"]["vocab_size"]
    assert ft["tokenizer"]["state"]["chars"].startswith(old["tokenizer"]["state"]["chars"])
    for k in ("embed.weight", "head.weight", "head.bias"):
        assert torch.allclose(ft["model"][k][:V0], old["model"][k], atol=1e-6), k
    assert ft["train_config"]["init_from"] == "checkpoints/old" and ft["model_config"]["dropout"] == 0.1
    # a fine-tuned run resumes like any other; --init-from with --resume is refused
    assert cli("train", "--resume", "ft", "--max-steps", "2", "-q").exit_code == 0
    r = cli("train", "--resume", "ft", "--init-from", "checkpoints/old", "--max-steps", "3")
    assert r.exit_code == 2 and "--init-from only applies when a run starts" in r.stderr


def test_the_budget_planner_keeps_the_sources_architecture(tmp_path):
    (tmp_path / "old.txt").write_text(OLD_TEXT)
    (tmp_path / "new.txt").write_text(NEW_TEXT)
    cli("train", "old.txt", "--hidden", "40", "--layers", "1", "--embed-dim", "12", "--cell", "rnn",
        "--max-steps", "2", "--batch-size", "4", "--seq-len", "16", "-q")
    r = cli("train", "new.txt", "--init-from", "checkpoints/old", "--time-budget", "20s", "--dry-run", "--json")
    assert r.exit_code == 0, r.stderr
    d = json.loads(r.stdout)
    m = d["model"]
    assert (m["layers"], m["hidden"], m["embed_dim"], m["cell"]) == (1, 40, 12, "rnn")
    assert d["why"][0].startswith("fine-tuning checkpoints/old")


@pytest.mark.parametrize("tokenizer", ["byte", "word", "bpe"])
def test_other_tokenizers_are_kept_and_docs_add_the_end_token(tmp_path, tokenizer):
    (tmp_path / "old.txt").write_text(OLD_TEXT)
    (tmp_path / "new.txt").write_text("unseen words arrive\nzebras quail\n" * 30)
    extra = ["--vocab-size", "300"] if tokenizer == "bpe" else []
    r = cli("train", "old.txt", "--tokenizer", tokenizer, *extra, *TINY_MODEL, "--max-steps", "2", "-q")
    assert r.exit_code == 0, r.stderr
    r = cli("train", "new.txt", "--init-from", "checkpoints/old", "--docs", "lines", "--max-steps", "2",
            "--batch-size", "4", "--seq-len", "16", "--out", "ft")
    assert r.exit_code == 0, r.stderr
    old = torch.load("checkpoints/old/best.pt", weights_only=True)
    ft = torch.load("ft/latest.pt", weights_only=True)
    assert ft["model_config"]["vocab_size"] == old["model_config"]["vocab_size"] + 1   # the end token only
    state = ft["tokenizer"]["state"]
    if tokenizer == "word":
        assert state["vocab"] == old["tokenizer"]["state"]["vocab"] + ["<eod>"]
    elif tokenizer == "bpe":
        assert state["model"] == old["tokenizer"]["state"]["model"] and state["eod"] is True
    s = cli("sample", "ft", "--docs", "2", "--length", "30", "--seed", "0")
    assert s.exit_code == 0, s.stderr


def test_a_damaged_or_malicious_source_is_a_one_line_error(tmp_path, tiny_corpus):
    target = tmp_path / "PWNED"
    bad = tmp_path / "random.pt"
    bad.write_bytes(bytes(range(256)) * 10)
    cases = {**{k: str(v) for k, v in _malicious(tmp_path, target).items()},
             "random bytes": str(bad), "missing": str(tmp_path / "nothing-here")}
    for kind, path in cases.items():
        r = cli("train", str(tiny_corpus), "--init-from", path, "--max-steps", "2")
        assert r.exit_code in (1, 2), (kind, r.stderr)
        assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, (kind, r.stderr)
        assert not target.exists(), f"{kind}: loading ran code"
        assert not (tmp_path / "checkpoints" / "tiny" / "latest.pt").exists()
