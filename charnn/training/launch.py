"""The launcher behind `charnn train --nproc N`: the same command on N ranks of this machine,
started through PyTorch's own torch.distributed.run (torchrun) with a standalone rendezvous."""

from __future__ import annotations

import contextlib
import os
import signal

from charnn.errors import CharnnError
from charnn.machine import available_cores


def launch(nproc: int, args: list[str]) -> int:
    """Run `python -m charnn ARGS` as nproc ranks on this machine through torch.distributed.run
    (standalone rendezvous on a free local port) and return their exit status.

    Ctrl-C reaches every rank once (they stop together at the next step, save, exit 130; a second
    Ctrl-C interrupts at once), as in a single process: torchrun would turn it into a shutdown
    with a 30 s limit, so this launcher forwards SIGINT to the ranks itself where it can find them
    (Linux /proc). A rank killed by a signal is reported as an error; other failures were reported
    by the ranks themselves.
    """
    import logging

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    if nproc < 1:
        raise CharnnError("--nproc must be at least 1", 2)
    # torchrun would give each rank 1 thread, and warn; split the cores evenly instead
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, available_cores() // nproc)))
    forward = _children_visible()
    argv = ["--standalone", f"--nproc-per-node={nproc}"]
    if forward:
        argv += ["--signals-to-handle", "SIGTERM,SIGHUP,SIGQUIT"]
    argv += ["-m", "charnn", *args]
    elastic = logging.getLogger("torch.distributed.elastic")
    old_level, old_int = elastic.level, None
    elastic.setLevel(logging.CRITICAL)   # its warnings repeat what the ranks already said
    if forward:
        old_int = signal.signal(signal.SIGINT, _forward_sigint)
    try:
        run(get_args_parser().parse_args(argv))
        return 0
    except ChildFailedError as e:
        return _exit_status(e, nproc)
    except SignalException as e:
        return 128 + int(e.sigval)
    finally:
        elastic.setLevel(old_level)
        if old_int is not None:
            signal.signal(signal.SIGINT, old_int)


def _exit_status(e, nproc: int) -> int:
    """The exit status of failed ranks (a ChildFailedError). The ranks reported their own errors;
    a rank killed by a signal cannot, so the launcher does, when that death came first."""
    failures = e.failures                                   # {global rank: ProcessFailure}
    codes = [f.exitcode for f in failures.values()]
    if all(c in (130, -signal.SIGINT, -signal.SIGTERM) for c in codes):
        return 130                                          # stopped by Ctrl-C / SIGTERM, saved
    # the first to fail (torch's own rule: earliest timestamp, then the order it saw them in)
    rank, first = min(failures.items(), key=lambda kv: kv[1].timestamp)
    if first.exitcode < 0:
        sig = -first.exitcode
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else f"signal {sig}"
        raise CharnnError(f"rank {rank} of {nproc} (pid {first.pid}) was killed by {name}; the "
                          "other ranks were stopped", 128 + sig)
    return first.exitcode


def _children_visible() -> bool:
    return os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


def _children() -> list[int]:
    pids: list[int] = []
    task = f"/proc/{os.getpid()}/task"
    for tid in os.listdir(task):
        try:
            with open(f"{task}/{tid}/children") as f:
                pids += [int(p) for p in f.read().split()]
        except (OSError, ValueError):
            pass
    return pids


def _forward_sigint(signum, frame) -> None:
    pids = _children()
    if not pids:             # the ranks are not started yet: give up the launch
        raise KeyboardInterrupt
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
