"""Checkpoints: self-contained, plain data, written atomically, loaded without running code.

A checkpoint is one torch.save'd dict of tensors, numbers, strings, lists and dicts:
    format, version, model_config, train_config, tokenizer {name, state}, model (state_dict),
    optimizer (state_dict), progress {step, epoch, chunk, elapsed, ...}, rng, carried state,
    history (metric records), corpus {path, digest}
It is loaded with torch.load(weights_only=True), whose unpickler accepts only those types, so a
checkpoint from an untrusted source cannot run code; tensors are mapped to the CPU, so a file
saved on a GPU loads on a machine without one.

A run folder holds latest.pt (every save), best.pt (best validation loss) and metrics.jsonl.
"""

from __future__ import annotations

import dataclasses
import errno
import math
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from charnn.atomic import atomic_file
from charnn.errors import CharnnError

FORMAT = "charnn-checkpoint"
VERSION = 1
LATEST, BEST = "latest.pt", "best.pt"


def save(payload: dict[str, Any], path: Path) -> None:
    """Write atomically and durably (charnn.atomic): a crash at any moment leaves either the old
    file or the new one, never a torn one. A failed write (disk full, a file size limit) raises
    CharnnError naming the real cause; the previous checkpoint is untouched.
    """
    import torch

    path = Path(path)
    payload = {"format": FORMAT, "version": VERSION, **payload}
    sink = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path, durable=True) as f:
            sink = _Sink(f)
            torch.save(payload, sink)
    except BaseException as e:
        # torch's writer turns a failed write into a RuntimeError; the sink kept the real one
        err = e if isinstance(e, OSError) else (sink.error if sink is not None else None)
        if err is not None:
            hint = " (the disk is full, or a file size limit was reached)" \
                if err.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT) else ""
            kept = f"the previous {path.name} is untouched" if path.exists() else "nothing was written"
            raise CharnnError(f"could not save checkpoint {path}: {err.strerror or err}{hint}; "
                              f"{kept}") from None
        raise


class _Sink:
    """A file wrapper for torch.save that remembers the OSError behind a failed write."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.f.flush()


def load(path: Path, mmap: bool = False) -> dict[str, Any]:
    """Load and check a checkpoint file. Raises CharnnError for anything wrong with it.

    Whatever the file holds (random bytes, a truncated or bit-flipped checkpoint, a pickle that
    asks to run code, plain data of the wrong shape), the result is a checked dict or a
    CharnnError: check() vets every entry the commands read, so no KeyError or TypeError from
    a malformed file reaches the user. mmap=True maps the file instead of reading it: only the
    tensors used are read, so a sampler does not read the optimizer state (two thirds of a
    training checkpoint).
    """
    import torch

    path = Path(path)
    if not path.exists():
        raise CharnnError(f"{path}: no such checkpoint")
    if path.is_dir():
        path = checkpoint_in(path)
    if not path.is_file():
        raise CharnnError(f"{path} is not a regular file: not a charnn checkpoint")
    if path.stat().st_size == 0:
        raise CharnnError(f"{path} is empty: not a charnn checkpoint")
    try:
        with warnings.catch_warnings():   # torch warns about pickle protocols on foreign files
            warnings.simplefilter("ignore")
            # torch maps only its zip format; anything else (a legacy or forged pickle) is read,
            # so that it meets the same checks
            ckpt = torch.load(path, map_location="cpu", weights_only=True,
                              mmap=mmap and zipfile.is_zipfile(path))
    except pickle.UnpicklingError as e:
        # weights_only's unpickler refuses any global outside its allow-list (os.system, ...)
        unsafe = re.search(r"GLOBAL (\S+)", str(e))
        if unsafe:
            raise CharnnError(
                f"{path} is not a safe charnn checkpoint: loading it would run code "
                f"({unsafe.group(1)}), so it was refused") from None
        raise CharnnError(f"{path} is damaged or not a charnn checkpoint (it is not plain data)") from None
    except MemoryError:
        raise
    except Exception as e:   # torch/zipfile/pickle raise many types for a damaged file
        raise CharnnError(f"{path} is damaged or not a charnn checkpoint ({type(e).__name__})") from None
    check(ckpt, path)
    return ckpt


def check(ckpt: Any, path: Path | str = "the checkpoint") -> None:
    """Vet the structure of a loaded checkpoint: every entry the commands read has its type.

    Only plain data can come out of torch.load(weights_only=True), but that data may still be
    anything: a list where a dict belongs, a string for a step. Contents (shapes, vocabulary
    sizes) are checked where they are used: build_model() and check_resumable().
    """
    import torch

    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CharnnError(f"{path} is not a charnn checkpoint")
    version = ckpt.get("version")
    if not _is_int(version) or version < 1:
        raise CharnnError(f"{path} is damaged: its format version is {_show(version)}")
    if version > VERSION:
        raise CharnnError(
            f"{path} was written by a newer charnn (format version {version}; this one reads "
            f"up to {VERSION}): upgrade charnn to use it"
        )

    def bad(what: str) -> CharnnError:
        return CharnnError(f"{path} is damaged: {what}")

    for key in ("model_config", "tokenizer", "model"):
        if key not in ckpt:
            raise bad(f"it has no {key!r} entry")
    for key, kind in _ENTRY_TYPES.items():
        if key in ckpt and not isinstance(ckpt[key], kind):
            raise bad(f"its {key!r} entry is a {type(ckpt[key]).__name__}")
    if not ckpt["model"] or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                    for k, v in ckpt["model"].items()):
        raise bad("its weights are not a table of tensors")
    tok = ckpt["tokenizer"]
    if not isinstance(tok.get("name"), str) or not isinstance(tok.get("state"), dict):
        raise bad("its tokenizer entry has no name and state")
    if not all(isinstance(k, str) for k in ckpt["model_config"]):
        raise bad("its model configuration is not a table of settings")
    progress = ckpt.get("progress", {})
    for key, fits in _PROGRESS.items():   # absent is fine (older files); present must make sense
        if key in progress and not fits(progress[key]):
            raise bad(f"its progress entry {key!r} is {_show(progress[key])}")
    for h in ckpt.get("history", []):
        if not (isinstance(h, dict) and _is_number(h.get("step")) and _is_number(h.get("val_loss"))):
            raise bad("its metric history holds an entry that is not a (step, val_loss) record")
    for key in ("path", "digest"):
        v = ckpt.get("corpus", {}).get(key)
        if v is not None and not isinstance(v, str):
            raise bad(f"its corpus {key} is not text")
    for key in ("args", "files"):
        v = ckpt.get("corpus", {}).get(key)
        if v is not None and not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
            raise bad(f"its corpus {key} are not a list of file names")
    if "bow" in ckpt:
        _check_bow(ckpt["bow"], bad)
    if "docs" in ckpt:
        _check_docs(ckpt["docs"], bad)


_ENTRY_TYPES = {"model_config": dict, "tokenizer": dict, "model": dict, "train_config": dict,
                "optimizer": dict, "progress": dict, "state": (list, tuple), "rng": dict,
                "history": list, "corpus": dict, "bow": dict, "data_config": dict, "docs": dict}
_COUNT = lambda v: _is_int(v) and v >= 0                           # noqa: E731
_POSITIVE = lambda v: _is_number(v) and 0 < v < math.inf            # noqa: E731
_PROGRESS = {"step": _COUNT, "epoch": _COUNT, "chunk": _COUNT, "lr_scale": _POSITIVE,
             "chars_per_token": _POSITIVE,
             "elapsed": lambda v: _is_number(v) and 0 <= v < math.inf,
             "best_val": lambda v: _is_number(v) and v >= 0}      # inf before any evaluation


def _check_bow(bow: dict, bad: Callable[[str], CharnnError]) -> None:
    words, df = bow.get("words"), bow.get("df")
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise bad("its bag-of-words vocabulary is not a list of words")
    if df is not None and not (isinstance(df, list) and len(df) == len(words)
                               and all(_is_number(x) for x in df)):
        raise bad("its bag-of-words document frequencies do not match its words")
    if not (bow.get("n_docs") is None or _is_int(bow["n_docs"])) or \
            not isinstance(bow.get("doc_sep", ""), str):
        raise bad("its bag-of-words settings are not numbers and text")


def _check_docs(docs: dict, bad: Callable[[str], CharnnError]) -> None:
    import torch

    from charnn.documents import MODES

    if docs.get("mode") not in MODES:
        raise bad(f"its documents mode is {_show(docs.get('mode'))}")
    fps = docs.get("fingerprints")
    if fps is not None and not (isinstance(fps, torch.Tensor) and fps.dtype == torch.int64 and fps.dim() == 1):
        raise bad("its document fingerprints are not a list of 64-bit numbers")


def _show(v: Any, limit: int = 60) -> str:
    """A value from a file, shown in one short line of an error message."""
    text = " ".join(repr(v).split()) if not isinstance(v, str) else " ".join(v.split())
    return text if len(text) <= limit else text[:limit] + "..."


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def configs(ckpt: dict[str, Any]):
    """The checkpoint's (ModelConfig, TrainConfig | None), each field checked for its type."""
    from charnn.config import ModelConfig, TrainConfig

    model_cfg = _config(ModelConfig, ckpt["model_config"], "model configuration")
    train_cfg = _config(TrainConfig, ckpt["train_config"], "training configuration") \
        if "train_config" in ckpt else None
    return model_cfg, train_cfg


def data_config(ckpt: dict[str, Any]):
    """The checkpoint's DataConfig (older checkpoints hold none: the tokenizer's name, the rest
    defaults), each field checked for its type."""
    from charnn.config import DataConfig

    return _config(DataConfig, {**ckpt.get("data_config", {}), "tokenizer": ckpt["tokenizer"]["name"]},
                   "data configuration")


def docs_mode(ckpt: dict[str, Any]) -> str | None:
    """How the run read its corpus as documents (charnn.documents.MODES), or None."""
    return ckpt.get("docs", {}).get("mode")


_FIELD_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,),
                "Optional[int]": (int, type(None)), "Optional[float]": (int, float, type(None)),
                "Optional[str]": (str, type(None))}


def _config(cls, d: dict[str, Any], what: str):
    for f in dataclasses.fields(cls):
        kinds = _FIELD_TYPES.get(str(f.type))
        if f.name in d and kinds is not None:
            v = d[f.name]
            if not isinstance(v, kinds) or (isinstance(v, bool) and bool not in kinds):
                raise CharnnError(f"the checkpoint's {what} is damaged: {f.name} is {_show(v)}")
    try:
        return cls.from_dict(d)
    except CharnnError as e:      # e.g. an unknown cell: the file is at fault, not the flags
        raise CharnnError(f"the checkpoint's {what} is invalid: {e}") from None
    except (TypeError, ValueError) as e:
        raise CharnnError(f"the checkpoint's {what} is damaged ({_show(str(e))})") from None


def checkpoint_in(run_dir: Path, prefer: str = BEST) -> Path:
    """The checkpoint file of a run folder: `prefer` (best.pt) if present, else the other."""
    run_dir = Path(run_dir)
    other = LATEST if prefer == BEST else BEST
    for name in (prefer, other):
        if (run_dir / name).is_file():
            return run_dir / name
    raise CharnnError(f"{run_dir} is not a charnn run folder (no {BEST} or {LATEST} in it)")


def find_latest_run(root: Path = Path("checkpoints")) -> Path:
    """The most recently written run folder under `root` (for `charnn sample` with no argument)."""
    runs = []
    if root.is_dir():
        for d in root.iterdir():
            files = [d / n for n in (LATEST, BEST) if (d / n).is_file()] if d.is_dir() else []
            if files:
                runs.append((max(f.stat().st_mtime for f in files), d))
    if not runs:
        raise CharnnError(f"no trained model found under {root}/: train one with `charnn train CORPUS`, "
                          "or name a run folder or checkpoint")
    return max(runs)[1]


def resolve(arg: str | None, prefer: str = BEST) -> Path:
    """A RUN|CHECKPOINT argument (or None: the newest run) -> a checkpoint file."""
    if arg is None:
        return checkpoint_in(find_latest_run(), prefer)
    p = Path(arg)
    if p.is_dir():
        return checkpoint_in(p, prefer)
    if p.exists():
        return p
    under = Path("checkpoints") / arg   # a run name, as in `charnn sample shakespeare`
    if "/" not in arg and ".." not in arg and under.is_dir():
        return checkpoint_in(under, prefer)
    raise CharnnError(f"{arg}: no such checkpoint or run folder")


def build_model(ckpt: dict[str, Any]):
    """Rebuild the model and tokenizer of a loaded checkpoint (weights included), on the CPU.

    The weights must fit the configuration exactly (names and shapes, compared on the meta
    device before anything is allocated, so a forged vocabulary size of 10^12 costs nothing),
    must be finite, and the tokenizer's vocabulary must be the model's.
    """
    import torch

    from charnn.model import RNNLM
    from charnn.tokenizers import tokenizer_from_dict

    cfg, _ = configs(ckpt)
    tok = tokenizer_from_dict(ckpt["tokenizer"])
    if tok.vocab_size != cfg.vocab_size:
        raise CharnnError(f"the checkpoint is damaged: its {tok.name} tokenizer has "
                          f"{tok.vocab_size} tokens but its model {cfg.vocab_size}")
    weights = ckpt["model"]
    try:
        want = {k: tuple(v.shape) for k, v in RNNLM(cfg, device="meta").state_dict().items()}
    except CharnnError as e:
        raise CharnnError(f"the checkpoint's model configuration is invalid: {e}") from None
    got = {k: tuple(v.shape) for k, v in weights.items()}
    if want != got:
        diff = sorted(set(want) ^ set(got)) or [k for k in want if want[k] != got[k]]
        raise CharnnError(f"the checkpoint's weights do not match its model configuration "
                          f"({diff[0]}: {got.get(diff[0], 'missing')} vs {want.get(diff[0], 'none')})")
    for k, v in weights.items():
        if not (v.is_floating_point() and bool(torch.isfinite(v).all())):
            raise CharnnError(f"the checkpoint's weights are damaged: {k} is "
                              f"{'not finite' if v.is_floating_point() else v.dtype}")
    if docs_mode(ckpt) and tok.eod_id is None:
        raise CharnnError("the checkpoint is damaged: it was trained on documents, but its tokenizer "
                          "has no end-of-document token")
    if cfg.input == "bow" and len(ckpt.get("bow", {}).get("words", [])) != cfg.bow_dim:
        raise CharnnError("the checkpoint is damaged: its bag-of-words vocabulary does not fit its model")
    try:
        # made on "meta" and given the checkpoint's tensors as they are: no random initialisation
        # of weights about to be overwritten, no copy (with checkpoint.load(mmap=True) a weight
        # is read from the file when first used)
        model = RNNLM(cfg, device="meta")
        model.load_state_dict(weights, assign=True)
        if cfg.tie_weights:
            model.head.weight = model.embed.weight      # assign gave the two names two tensors
        model.float()
    except (TypeError, ValueError, RuntimeError) as e:
        raise CharnnError(f"the checkpoint's model does not match its configuration: "
                          f"{str(e).splitlines()[0][:200]}") from None
    return model, tok


def check_resumable(ckpt: dict[str, Any], path: Path | str = "the checkpoint") -> None:
    """What `charnn train --resume` reads beyond the model: progress, optimizer, carried state,
    RNG. Raises CharnnError when any of it is missing or does not fit the model."""
    import torch

    def bad(what: str) -> CharnnError:
        return CharnnError(f"{path} cannot be resumed: {what}")

    for key in ("progress", "optimizer", "train_config"):
        if key not in ckpt:
            raise bad(f"it holds no {key} (a checkpoint without training state)")
    model_cfg, train_cfg = configs(ckpt)
    p = ckpt["progress"]
    if not all(_is_int(p.get(k)) for k in ("step", "epoch", "chunk")):
        raise bad("its progress entry has no step, epoch and chunk")
    _check_optimizer(ckpt["optimizer"], model_cfg, bad)
    state = ckpt.get("state") or []
    from charnn.model import RNNLM

    # (layers, B, H) for h (and c), then (K-1, B, 2D+1) for an --attention window
    want = [tuple(s.shape) for s in RNNLM(model_cfg, device="meta").init_state(
        train_cfg.batch_size, device="meta")]
    if state and (len(state) != len(want) or not all(
            isinstance(s, torch.Tensor) and tuple(s.shape) == w and s.is_floating_point()
            for s, w in zip(state, want))):
        raise bad("its carried recurrent state does not fit the model")
    rng = ckpt.get("rng", {})
    cuda = rng.get("cuda", [])
    if ("torch" in rng and not (isinstance(rng["torch"], torch.Tensor) and rng["torch"].dtype == torch.uint8
                                and rng["torch"].shape == torch.get_rng_state().shape)) or \
            not (isinstance(cuda, list) and all(isinstance(t, torch.Tensor) and t.dtype == torch.uint8
                                                for t in cuda)):
        raise bad("its random number generator state is damaged")


def _check_optimizer(opt: dict[str, Any], model_cfg, bad: Callable[[str], CharnnError]) -> None:
    """The AdamW state must cover the model's trainable parameters: as many, of their shapes
    (compared as multisets: the order of parameters within the optimizer's groups is train's
    business)."""
    from collections import Counter

    import torch

    from charnn.model import RNNLM

    with torch.device("meta"):
        shapes = [tuple(p.shape) for p in RNNLM(model_cfg).parameters() if p.requires_grad]
    groups, state = opt.get("param_groups"), opt.get("state")
    if not (isinstance(groups, list) and isinstance(state, dict)
            and all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups)):
        raise bad("its optimizer state is damaged")
    ids = [i for g in groups for i in g["params"]]
    if not all(_is_int(i) for i in ids) or sorted(ids) != list(range(len(shapes))):
        raise bad(f"its optimizer state holds {len(ids)} parameters, the model {len(shapes)}")
    got: Counter = Counter()
    for i, st in state.items():
        moments = [st.get(k) for k in ("exp_avg", "exp_avg_sq")] if isinstance(st, dict) else [None]
        if i not in ids or not all(isinstance(m, torch.Tensor) and m.shape == moments[0].shape
                                   for m in moments):
            raise bad("its optimizer state is damaged")
        got[tuple(moments[0].shape)] += 1
    if got - Counter(shapes):
        raise bad("its optimizer state does not fit the model's parameters")


class RunLock:
    """One writer per run folder: a `.lock` file naming the owner's pid, held with flock().

    A second `charnn train` on the same folder refuses while the owner lives, naming its pid.
    The kernel drops a flock when its process dies however it dies (SIGKILL, a crash, power
    loss), so a lock file left behind by a dead owner is simply taken over: no guessing from
    pids, which the system reuses. Entering also removes temporary files that a killed writer
    left half-written (only the lock holder writes here, so any there are orphans), and leaving
    removes the run folder again if entering created it and nothing was written into it.
    """

    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)
        self.path = self.dir / ".lock"
        self._fd: int | None = None
        self._created: list[Path] = []    # folders entering made, deepest first

    def __enter__(self) -> RunLock:
        import fcntl

        d = self.dir
        while not d.exists():
            self._created.append(d)
            d = d.parent
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CharnnError(f"cannot create the run folder {self.dir}: {e.strerror}") from None
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                self._cleanup_dir()
                raise CharnnError(f"cannot write to {self.dir}: {e.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise CharnnError(f"cannot lock {self.dir}: {e.strerror}") from None
                pid = _read_pid(self.path)
                raise CharnnError(f"{self.dir} is in use by another charnn train"
                                  f"{f' (pid {pid})' if pid else ''}; wait for it to finish, "
                                  "or choose another --out") from None
            # the owner we waited on may have unlinked the file we opened: lock the live one
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            self._fd = fd
            remove_stale_temps(self.dir)
            return self
        raise CharnnError(f"could not lock {self.dir}")

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            try:
                os.unlink(self.path)    # unlink while still holding it, then let go
            except FileNotFoundError:
                pass
            os.close(self._fd)
            self._fd = None
        self._cleanup_dir()

    def _cleanup_dir(self) -> None:
        for d in self._created:         # rmdir only succeeds when empty: a run that wrote nothing
            try:
                d.rmdir()
            except OSError:
                break


def remove_stale_temps(run_dir: Path) -> int:
    """Delete the temporary files of unfinished saves (`.latest.pt.XXXX.tmp`); returns how many."""
    n = 0
    for name in (LATEST, BEST):
        for tmp in Path(run_dir).glob(f".{name}.*.tmp"):
            try:
                tmp.unlink()
                n += 1
            except OSError:
                pass
    return n


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
