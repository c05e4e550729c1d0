"""Fine-tuning (`charnn train NEW.txt --init-from RUN`): a new run that starts from a trained
run's weights, with a fresh optimizer and schedule, on new text.

What carries over, and what may change:
  - the architecture (cell, layers, sizes, tying, input) is the source run's: a flag that
    would change it is refused; --dropout and --freeze-embeddings may change, as may every
    training option (the --time-budget planner keeps the fixed sizes);
  - the tokenizer is the source run's. A char vocabulary grows by the characters the new text
    adds, appended after every existing id; --docs adds the end-of-document id the same way (a
    source trained on documents reads the new text as documents too, in its --docs mode);
    byte/word/bpe/unigram vocabularies stay as they are (unseen words map as they always do);
  - every id keeps its rows: the embedding row, the output row and bias (and a one-hot input
    column) of an old token are copied unchanged, so right after initialisation the model
    gives old text the source's logits (torch-rnn #147: garbage after fine-tuning, because the
    vocabulary was rebuilt and the ids remapped). New output rows start at zero weight and the
    lowest old bias, so a new token starts no likelier than the rarest old one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charnn import checkpoint as ckpt_io
from charnn.config import DataConfig, ModelConfig, cli_fields
from charnn.errors import CharnnError

# ModelConfig options a fine-tuned run may set for itself; every other one is the source's
MAY_CHANGE = ("dropout", "freeze_embeddings")
# DataConfig options about the new text (the others fit a tokenizer, which is the source's)
NEW_TEXT = ("docs", "glob")


@dataclass
class Source:
    """The run fine-tuning starts from, loaded and checked (charnn.checkpoint)."""

    path: Path
    ckpt: dict[str, Any]
    model_cfg: ModelConfig
    tokenizer: Any
    weights: dict[str, Any]     # the source model's state_dict (CPU tensors)


def load_source(arg: str) -> Source:
    """--init-from RUN -> the source run. Anything wrong with the file (damaged, forged, a
    pickle that would run code, weights that do not fit) is a one-line CharnnError."""
    try:
        path = ckpt_io.resolve(arg)
    except CharnnError as e:
        raise CharnnError(f"--init-from: {e}") from None
    ckpt = ckpt_io.load(path)
    model, tok = ckpt_io.build_model(ckpt)
    return Source(path, ckpt, model.cfg, tok, model.state_dict())


def check_flags(source: Source, model_given: dict[str, Any], data_given: dict[str, Any]) -> None:
    """Refuse a flag that would change the source's architecture or tokenizer (the same value
    repeated is fine)."""
    have = {**source.model_cfg.to_dict(), **ckpt_io.data_config(source.ckpt).to_dict()}
    given = {**model_given, **{k: v for k, v in data_given.items() if k not in NEW_TEXT}}
    for name, value in given.items():
        if name in MAY_CHANGE or have.get(name) == value:
            continue
        flag = "--" + name.replace("_", "-")
        own = have.get(name)
        what = f"the source's {own}" if own is not None else "the source's tokenizer"
        raise CharnnError(
            f"{flag} {value} differs from {what}: fine-tuning (--init-from {source.path}) keeps the "
            f"run's architecture and tokenizer; leave {flag} out (--dropout, --freeze-embeddings, "
            "--docs and the training options may change)", 2)


def model_options(source: Source, model_given: dict[str, Any]) -> dict[str, Any]:
    """The ModelConfig fields of the new run but its vocabulary size: the source's architecture
    (and its --freeze-embeddings unless given); --dropout as for any new run (given, chosen by
    --time-budget, or the default), as it is about the new text, not the network."""
    fields = {f.name for f in cli_fields(ModelConfig)} | {"bow_dim"}
    mc = {k: v for k, v in source.model_cfg.to_dict().items() if k in fields and k != "dropout"}
    return {**mc, **{k: v for k, v in model_given.items() if k in MAY_CHANGE}}


def data_options(source: Source, data_cfg: DataConfig) -> DataConfig:
    """The new run's DataConfig: the source's tokenizer settings, the new text's --docs/--glob.
    A source trained on documents makes the new text documents too, in its mode unless --docs
    says another (its model begins and ends every text at the end-of-document token)."""
    old = ckpt_io.data_config(source.ckpt)
    new = dataclasses.replace(old, **{k: getattr(data_cfg, k) for k in NEW_TEXT})
    return new if new.docs is not None else dataclasses.replace(new, docs=ckpt_io.docs_mode(source.ckpt))


def tokenizer_for(source: Source, text_source, docs: str | None):
    """The source's tokenizer, grown by the characters of the new text (char) and by an
    end-of-document id (--docs); the old ids unchanged. text_source: data.CorpusText.source()."""
    tok = source.tokenizer
    if tok.name == "char":
        from charnn.tokenizers.char import CharTokenizer

        tok = tok.extended(CharTokenizer.fit(text_source).chars)
    return tok.with_eod() if docs else tok


def initializer(source: Source) -> Callable:
    """The Trainer's init_model hook: the source's weights into the new model, every old id's
    rows in place, new ids' rows as described in the module's doc."""
    import torch

    old_vocab = source.model_cfg.vocab_size

    def init(model) -> None:
        with torch.no_grad():
            for name, p in model.state_dict(keep_vars=True).items():
                _copy_leading(p, source.weights[name], name)
            head = model.head
            if head.weight.shape[0] > old_vocab:            # new output rows
                head.bias[old_vocab:] = head.bias[:old_vocab].min()
                if not model.cfg.tie_weights:               # tied: they are the new embedding rows
                    head.weight[old_vocab:] = 0.0

    return init


def _copy_leading(dst, src, name: str) -> None:
    """Copy src into dst where their shapes differ in one dimension only, the vocabulary's
    (src is the smaller): the leading rows (or columns) are the old ids'."""
    if dst.shape == src.shape:
        dst.copy_(src)
        return
    diff = [d for d in range(dst.dim()) if dst.shape[d] != src.shape[d]]
    if dst.dim() != src.dim() or len(diff) != 1 or dst.shape[diff[0]] < src.shape[diff[0]]:
        raise CharnnError(f"--init-from: the source's {name} {tuple(src.shape)} does not fit "
                          f"the new model's {tuple(dst.shape)}")
    dst.narrow(diff[0], 0, src.shape[diff[0]]).copy_(src)
