"""Fuzzing with hypothesis: the checkpoint loader on arbitrary bytes and on mutations of a real
checkpoint (truncated anywhere, bytes flipped, entries replaced by arbitrary plain data), and
every tokenizer fitted on and encoding arbitrary text. Nothing may escape but CharnnError.

Example counts are modest so the whole module runs in seconds; each run draws new examples,
and a failure prints the one that broke (with @reproduce_failure to replay it)."""

from __future__ import annotations

import atexit
import functools
import io
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charnn import checkpoint
from charnn.errors import CharnnError
from charnn.tokenizers import get_tokenizer_class, tokenizer_from_dict
from tests.conftest import cli

FUZZ = settings(deadline=None, suppress_health_check=list(HealthCheck), database=None,
                print_blob=True)
_DIR = Path(tempfile.mkdtemp(prefix="charnn-fuzz-"))    # outside hypothesis' reach of tmp_path
atexit.register(shutil.rmtree, _DIR, True)


@functools.cache
def real() -> bytes:
    """The bytes of a real checkpoint of a small trained model (with optimizer and history)."""
    from charnn.config import ModelConfig, TrainConfig
    from charnn.training.trainer import train
    from tests.test_model import _data

    data = _data("the quick brown fox jumps over the lazy dog\n" * 30)
    run = _DIR / "run"
    train(ModelConfig(vocab_size=data.tokenizer.vocab_size, hidden=8, layers=1, embed_dim=4),
          TrainConfig(seq_len=8, batch_size=4, max_steps=3, eval_every=2), data, run)
    return (run / "latest.pt").read_bytes()


def _only_charnn_errors(data: bytes) -> str:
    """Load `data` as a checkpoint and use it as the commands do; 'ok' or 'refused'."""
    path = _DIR / f"fuzz-{os.getpid()}.pt"
    path.write_bytes(data)
    try:
        ck = checkpoint.load(path)
        model, tok = checkpoint.build_model(ck)
        model.eval()(torch.zeros(1, 2, dtype=torch.long))
        tok.decode(list(range(min(tok.vocab_size, 50))))
        checkpoint.check_resumable(ck, path)
    except CharnnError as e:
        assert "\n" not in str(e)
        return "refused"
    return "ok"


@settings(FUZZ, max_examples=100)
@given(data=st.binary(max_size=2048))
def test_arbitrary_bytes(data):
    assert _only_charnn_errors(data) == "refused"


@settings(FUZZ, max_examples=60)
@given(cut=st.integers(min_value=0))
def test_a_real_checkpoint_truncated_anywhere(cut):
    data = real()
    assert _only_charnn_errors(data[:cut % len(data)]) == "refused"


@settings(FUZZ, max_examples=60)
@given(flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(1, 255)), min_size=1, max_size=8))
def test_a_real_checkpoint_with_bytes_flipped(flips):
    data = bytearray(real())
    for at, xor in flips:
        data[at % len(data)] ^= xor
    _only_charnn_errors(bytes(data))          # either outcome, as long as nothing else escapes


plain = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats() | st.text(max_size=12)
    | st.binary(max_size=12) | st.builds(torch.randn, st.integers(0, 3), st.integers(0, 3)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8)

KEYS = ["model_config", "train_config", "tokenizer", "model", "optimizer", "progress", "state", "rng",
        "history", "corpus", "bow", "version"]


@settings(FUZZ, max_examples=50)
@given(key=st.sampled_from(KEYS), path=st.lists(st.integers(0, 20), max_size=2), value=plain)
def test_a_real_checkpoint_with_an_entry_replaced_by_arbitrary_data(key, path, value):
    """Plain data that torch.load(weights_only=True) accepts, in the wrong place: a list for the
    model config, a string for the step, garbage tokenizer state, tensors of the wrong shape..."""
    ck = torch.load(io.BytesIO(real()), weights_only=True)
    node, name = ck, key
    for i in path:                  # go down into the entry: replace a part of it, not all of it
        child = node.get(name) if isinstance(node, dict) else None
        if not isinstance(child, dict) or not child:
            break
        node, name = child, sorted(child, key=str)[i % len(child)]
    node[name] = value
    buf = io.BytesIO()
    torch.save(ck, buf)
    _only_charnn_errors(buf.getvalue())
    path = _DIR / f"fuzz-{os.getpid()}.pt"
    for argv in (["info", str(path)], ["info", str(path), "--json"], ["sample", str(path), "--length", "3"]):
        r = cli(*argv)             # the commands too: a clean answer or one clean error line
        assert r.exit_code == 0 or (r.exit_code == 1 and r.stderr.startswith("error: ")
                                    and r.stderr.count("\n") == 1 and "internal error" not in r.stderr), r.stderr


# ----------------------------------------------------------------------------------------------
# tokenizers

text = st.text(max_size=200)


@pytest.mark.parametrize("name,examples", [("char", 60), ("byte", 60), ("word", 60), ("bpe", 8), ("unigram", 8)])
def test_tokenizers_on_arbitrary_text(name, examples):
    cls = get_tokenizer_class(name)

    @settings(FUZZ, max_examples=examples)
    @given(corpus=text, other=text, ids=st.lists(st.integers(-3, 1200), max_size=20))
    def run(corpus, other, ids):
        try:
            tok = cls.fit(lambda: iter([corpus]), **({"vocab_size": 300} if name in ("bpe", "unigram") else {}))
        except CharnnError:
            return
        again = tokenizer_from_dict(tok.to_dict())          # through a checkpoint's plain data
        for t in (tok, again):
            for s in (corpus, other):
                try:
                    got = t.encode(s)
                except CharnnError:
                    assert name == "char" and s is other     # only unseen characters are refused
                    continue
                assert ((0 <= got) & (got < t.vocab_size)).all()
                t.decode(got)
                t.tokens(s)
            try:
                t.decode(ids)
            except CharnnError:
                pass

    run()


@settings(FUZZ, max_examples=60)
@given(name=st.sampled_from(["char", "byte", "word", "bpe", "unigram", "../../x", ""]), state=plain)
def test_tokenizer_states_from_a_file(name, state):
    try:
        tokenizer_from_dict({"name": name, "state": state})
    except CharnnError:
        pass
