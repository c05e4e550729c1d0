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

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from charnn.errors import CharnnError

FORMAT = "charnn-checkpoint"
VERSION = 1
LATEST, BEST = "latest.pt", "best.pt"


def save(payload: dict[str, Any], path: Path) -> None:
    """Write atomically: temporary file in the same folder, fsync, rename, fsync the folder.

    A crash at any moment leaves either the old file or the new one, never a torn one.
    """
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": VERSION, **payload}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise CharnnError(f"could not save checkpoint {path}: {e.strerror or e}") from None
        raise
    _fsync_dir(path.parent)


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load(path: Path, mmap: bool = False) -> dict[str, Any]:
    """Load and check a checkpoint file. Raises CharnnError for anything wrong with it.

    mmap=True maps the file instead of reading it: only the tensors used are read, so a
    sampler does not read the optimizer state (two thirds of a training checkpoint)."""
    import torch

    path = Path(path)
    if not path.exists():
        raise CharnnError(f"{path}: no such checkpoint")
    if path.is_dir():
        path = checkpoint_in(path)
    if path.stat().st_size == 0:
        raise CharnnError(f"{path} is empty: not a charnn checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unsafe content"
        raise CharnnError(
            f"{path} is not a safe charnn checkpoint: it holds objects that loading would have to "
            f"run code for, so it was refused ({first[:120]})"
        ) from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, OSError, KeyError,
            AttributeError, TypeError, IndexError, UnicodeDecodeError, MemoryError) as e:
        raise CharnnError(f"{path} is damaged or not a charnn checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CharnnError(f"{path} is not a charnn checkpoint")
    version = ckpt.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise CharnnError(
            f"{path} was written by a newer charnn (format version {version}; this one reads "
            f"up to {VERSION}): upgrade charnn to use it"
        )
    for key in ("model_config", "tokenizer", "model"):
        if key not in ckpt:
            raise CharnnError(f"{path} is damaged: it has no {key!r} entry")
    return ckpt


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
    """Rebuild the model and tokenizer of a loaded checkpoint (weights included), on the CPU."""
    from charnn.config import ModelConfig
    from charnn.model import RNNLM
    from charnn.tokenizers import tokenizer_from_dict

    try:
        cfg = ModelConfig.from_dict(ckpt["model_config"])
        # made on "meta" and given the checkpoint's tensors as they are: no random initialisation
        # of weights about to be overwritten, no copy (with checkpoint.load(mmap=True) a weight
        # is read from the file when first used)
        model = RNNLM(cfg, device="meta")
        model.load_state_dict(ckpt["model"], assign=True)
        if cfg.tie_weights:
            model.head.weight = model.embed.weight      # assign gave the two names two tensors
        model.float()
    except CharnnError:
        raise
    except (TypeError, ValueError, RuntimeError, KeyError) as e:
        raise CharnnError(f"the checkpoint's model does not match its configuration: "
                          f"{str(e).splitlines()[0][:200]}") from None
    return model, tokenizer_from_dict(ckpt["tokenizer"])


class RunLock:
    """One writer per run folder: a `.lock` file naming the owner's pid.

    A second `charnn train` on the same folder refuses while the owner lives; a lock left by a
    process that has died (killed, crashed) is taken over.
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid = _read_pid(self.path)
                if pid is not None and pid != os.getpid() and _alive(pid):
                    raise CharnnError(f"{self.path.parent} is in use by another charnn train "
                                      f"(pid {pid}); wait for it or choose another --out")
                try:  # stale: its owner is gone
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()}\n")
            return self
        raise CharnnError(f"could not lock {self.path.parent}")

    def __exit__(self, *exc) -> None:
        if _read_pid(self.path) == os.getpid():
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
