"""Frozen, typed configurations. `charnn train`'s options are built from these fields (option()).

Each config is stored in the checkpoint as a plain dict (dataclasses.asdict) and rebuilt with
`from_dict`, which ignores unknown keys so older code can read newer checkpoints' configs.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Optional

from charnn.errors import CharnnError

CELLS = ("lstm", "gru", "rnn")
INPUTS = ("embedding", "onehot", "word2vec", "bow")


class _Dict:
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# What a flag given with `charnn train --resume` may do (see option()).
SAME, MAY_CHANGE, AT_START = "same", "may-change", "at-start"


def option(default: Any, help: str, *, flag: str | None = None, shown: str | None = None,
           resume: str = SAME, cli_type: type | None = None, metavar: str | None = None,
           escapes: bool = False):
    """A config field that is also a `charnn train` option: the one place a flag is declared
    (charnn.commands.train builds its options from these fields; the docs test reads --help).

    help: the option's help; its default is appended as `[default: ...]` (`shown` overrides
    the text, e.g. "chosen by --time-budget"). flag: the option's names when not `--field-name`
    (e.g. "--amp/--no-amp"). resume: SAME, a flag given with --resume must repeat the run's
    value; MAY_CHANGE, it changes the resumed run; AT_START, it only applies when a run starts.
    cli_type: the type on the command line when it differs from the field's (--time-budget is
    text such as 10m, stored as seconds). escapes: the command line's backslash escapes
    (\\n, \\t, ...) are read as the characters they stand for.
    """
    return dataclasses.field(default=default, metadata={
        "help": help, "flag": flag, "shown": shown, "resume": resume, "cli_type": cli_type,
        "metavar": metavar, "escapes": escapes})


def cli_fields(cls) -> list[dataclasses.Field]:
    """The fields of a config that are command-line options, in declaration order."""
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


@dataclass(frozen=True)
class ModelConfig(_Dict):
    vocab_size: int
    cell: str = option("lstm", "Recurrent cell: lstm, gru or rnn (tanh).", metavar="lstm|gru|rnn")
    layers: int = option(2, "Stacked recurrent layers.", shown="2, or chosen by --time-budget")
    hidden: int = option(512, "Hidden units per layer.", shown="512, or chosen by --time-budget")
    embed_dim: int = option(128, "Input embedding size.", shown="128, or chosen by --time-budget")
    dropout: float = option(0.0, "Dropout between layers and before the output.",
                            shown="0, or chosen by --time-budget")
    tie_weights: bool = option(False, "Share the input embedding with the output layer (a "
                               "projection is added if the sizes differ).",
                               flag="--tie-weights/--no-tie-weights")
    input: str = option("embedding", "What the network reads: embedding (learned), onehot, "
                        "word2vec (with --vectors; word tokenizer) or bow (conditioned on each "
                        "document's bag of words; sample with --topic).",
                        shown="embedding; word2vec with --vectors", metavar="KIND")
    freeze_embeddings: bool = option(False, "Keep the input embedding fixed (e.g. the word2vec "
                                     "vectors).", flag="--freeze-embeddings/--train-embeddings")
    bow_dim: int = 0                  # size of the bag-of-words vector for --input bow
    # AWD-LSTM's regularisers (charnn.model; benchmarks/RESULTS.md for what they buy); off at
    # evaluation and in sampling
    weight_drop: float = option(0.0, "DropConnect on the recurrent (hidden-to-hidden) weights: one "
                                "mask per training step, shared by every time step.",
                                shown="0, or chosen by --time-budget")
    locked_dropout: bool = option(False, "Variational dropout: --dropout's masks on the input and "
                                  "output of the recurrent stack are drawn once per chunk and "
                                  "shared by all its steps.", flag="--locked-dropout/--no-locked-dropout")
    embed_dropout: float = option(0.0, "Drop whole tokens from the input: each token type's "
                                  "embedding is zeroed for a whole chunk with this probability.")
    attention: int = option(0, "One head of attention over the last K hidden states of the top "
                            "layer, added to its output; the window carries across chunks (0: off).",
                            metavar="K")

    def __post_init__(self):
        if self.cell not in CELLS:
            raise CharnnError(f"unknown cell {self.cell!r}: choose one of {', '.join(CELLS)}", 2)
        if self.input not in INPUTS:
            raise CharnnError(f"unknown input {self.input!r}: choose one of {', '.join(INPUTS)}", 2)
        for name in ("vocab_size", "layers", "hidden", "embed_dim"):
            if int(getattr(self, name)) < 1:
                raise CharnnError(f"--{name.replace('_', '-')} must be at least 1", 2)
        for name in ("dropout", "weight_drop", "embed_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise CharnnError(f"--{name.replace('_', '-')} must be in [0, 1)", 2)
        if self.attention < 0 or self.attention == 1:
            raise CharnnError("--attention must be 0 (off) or a window of at least 2 steps", 2)


@dataclass(frozen=True)
class TrainConfig(_Dict):
    # T=64 learned more per token than 128 (benchmarks/RESULTS.md)
    seq_len: int = option(64, "Steps per chunk of truncated BPTT.")
    batch_size: int = option(32, "Parallel streams per step; the global batch, shared out over the "
                             "processes of a distributed run.")
    lr: float = option(5e-3, "Peak learning rate of AdamW.", shown="0.005 (0.003 above 512 units "
                       "under --time-budget)")
    weight_decay: float = option(0.01, "AdamW weight decay of the weight matrices.")
    grad_clip: float = option(1.0, "Clip the global gradient norm (0: off).")
    warmup: int = option(100, "Linear warmup steps before the cosine decay.",
                         shown="100, or about 2% of the steps under --time-budget")
    min_lr_frac: float = 0.1          # the cosine decay ends at lr * min_lr_frac
    epochs: Optional[int] = option(None, "Stop after this many passes over the training split.",
                                   shown="no limit", resume=MAY_CHANGE)
    max_steps: Optional[int] = option(None, "Stop after this many steps.", shown="no limit",
                                      resume=MAY_CHANGE)
    time_budget: Optional[float] = option(
        None, "Stop at this wall-clock time (90s, 10m, 2h), the whole command included; the "
        "schedule (and, with no size flags, the model) is fitted to it.",
        shown="5m when no other limit is given", resume=MAY_CHANGE, cli_type=str, metavar="DURATION")
    val_frac: float = option(0.1, "Last fraction of the text held out for validation.")
    eval_every: int = option(500, "Validate and save every N steps.", resume=MAY_CHANGE)
    device: str = option("auto", "auto, cpu, cuda or mps (auto: CUDA when available).", resume=MAY_CHANGE,
                         metavar="DEVICE")
    amp: bool = option(True, "bf16 autocast in training and evaluation, on CUDA and on CPUs with "
                       "native bf16 (AVX-512 BF16 or AMX; sampling stays fp32).", flag="--amp/--no-amp",
                       shown="on where supported", resume=MAY_CHANGE)
    seed: int = option(1337, "Random seed; a CPU run with a seed repeats bit for bit.")
    init_from: Optional[str] = option(
        None, "Fine-tune: start from the weights of this run (folder or checkpoint) on the new "
        "text, with a fresh optimizer and schedule in a run folder of its own; the architecture "
        "and tokenizer are the run's (new characters get new rows).", shown="none (from scratch)",
        resume=AT_START, metavar="RUN")
    # AWD-LSTM's activation regularisers, on the top layer's outputs h (B, T, H) before dropout
    ar: float = option(0.0, "Activation regularisation: adds this times mean(h^2) of the top "
                       "layer's outputs to the loss.")
    tar: float = option(0.0, "Temporal activation regularisation: adds this times "
                        "mean((h_t - h_t-1)^2) of the top layer's outputs to the loss.")

    def __post_init__(self):
        checks = [
            (self.seq_len >= 1, "--seq-len must be at least 1"),
            (self.batch_size >= 1, "--batch-size must be at least 1"),
            (0 < self.lr < float("inf"), "--lr must be a positive number"),
            (0 <= self.weight_decay < float("inf"), "--weight-decay must be >= 0"),
            (0 <= self.grad_clip < float("inf"), "--grad-clip must be >= 0 (0 turns clipping off)"),
            (self.epochs is None or self.epochs >= 1, "--epochs must be at least 1"),
            (self.max_steps is None or self.max_steps >= 1, "--max-steps must be at least 1"),
            (self.time_budget is None or self.time_budget > 0, "--time-budget must be positive"),
            (0.0 < self.val_frac < 1.0, "--val-frac must be between 0 and 1"),
            (self.eval_every >= 1, "--eval-every must be at least 1"),
            (self.warmup >= 0, "--warmup must be >= 0"),
            (0 <= self.ar < float("inf") and 0 <= self.tar < float("inf"), "--ar and --tar must be >= 0"),
            (self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:"),
             "--device must be auto, cpu, cuda or mps"),
        ]
        for ok, msg in checks:
            if not ok:
                raise CharnnError(msg, 2)


@dataclass(frozen=True)
class DataConfig(_Dict):
    """How the text becomes tokens and inputs: what a run's vocabulary is fitted with."""

    tokenizer: str = option("char", "char (Unicode code points), byte, word, bpe or unigram.", metavar="NAME")
    encoding: str = option("utf-8", "The corpus' text encoding (e.g. latin-1, cp1252, utf-16).", metavar="NAME")
    vocab_size: Optional[int] = option(None, "Vocabulary size for bpe/unigram (and word's cap).",
                                       shown="1000 for bpe/unigram", resume=AT_START)
    min_count: Optional[int] = option(None, "word: tokens seen fewer times become <unk>.",
                                      shown="1", resume=AT_START)
    max_vocab: Optional[int] = option(None, "word: keep at most this many tokens (and the bag of "
                                      "words of --input bow).", shown="all; 2000 for bow", resume=AT_START)
    vectors: Optional[str] = option(None, "Word vectors for --input word2vec: a `charnn embed` .kv "
                                    "file or a word2vec text/binary file; their dimension sets "
                                    "--embed-dim.", resume=AT_START, metavar="PATH")
    doc_sep: Optional[str] = option(None, "--input bow: the text between documents (\\n escapes "
                                    "allowed).", shown="a blank line", resume=AT_START, escapes=True)
    docs: Optional[str] = option(None, "Train on separate documents: lines (one per line), blank-lines "
                                 "(separated by blank lines) or files (one per file). An end-of-"
                                 "document token is learned and the state is reset at each "
                                 "document.", shown="off (one continuous text)",
                                 metavar="lines|blank-lines|files")
    glob: Optional[str] = option(None, "With a directory as CORPUS: read only the files whose path "
                                 "inside it matches this pattern (e.g. '*.txt').", shown="every text file",
                                 metavar="PATTERN")

    def __post_init__(self):
        from charnn.data import check_encoding
        from charnn.documents import check_mode

        check_mode(self.docs)
        object.__setattr__(self, "encoding", check_encoding(self.encoding))   # one name per codec
        for name in ("vocab_size", "min_count", "max_vocab"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise CharnnError(f"--{name.replace('_', '-')} must be at least 1", 2)

    def fit_options(self) -> dict[str, Any]:
        """The tokenizer's fit options that were given."""
        return {k: v for k, v in dict(vocab_size=self.vocab_size, min_count=self.min_count,
                                      max_vocab=self.max_vocab).items() if v is not None}


@dataclass(frozen=True)
class SampleConfig(_Dict):
    length: int = 1000
    temperature: float = 1.0
    top_k: int = 0                    # 0: off
    top_p: float = 1.0                # 1: off
    prime: str = ""
    stop: Optional[str] = None
    num_samples: int = 1
    seed: Optional[int] = None

    def __post_init__(self):
        import math

        t = self.temperature
        checks = [
            (self.length >= 0, "--length must be >= 0"),
            (not math.isnan(t) and t >= 0 and not math.isinf(t), "--temp must be a finite number >= 0"),
            (self.top_k >= 0, "--top-k must be >= 0"),
            (not math.isnan(self.top_p) and 0 < self.top_p <= 1, "--top-p must be in (0, 1]"),
            (self.num_samples >= 1, "--num-samples must be at least 1"),
        ]
        for ok, msg in checks:
            if not ok:
                raise CharnnError(msg, 2)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str | None) -> float | None:
    """'90s', '10m', '2h', '1h30m' or a plain number of seconds -> seconds."""
    if text is None:
        return None
    t = text.strip().lower()
    try:
        value = float(t)
    except ValueError:
        parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smhd])", t)
        if not parts or "".join(n + u for n, u in parts) != re.sub(r"\s+", "", t):
            raise CharnnError(f"cannot read {text!r} as a duration: use e.g. 90s, 10m, 2h or 1h30m", 2) from None
        value = sum(float(n) * _UNITS[u] for n, u in parts)
    if not value > 0 or value != value:
        raise CharnnError(f"--time-budget must be positive, not {text!r}", 2)
    return value
