"""Data-parallel training on PyTorch's own distributed stack (torch.distributed + DDP).

`torchrun --nproc-per-node N -m charnn train ...`, or `charnn train --nproc N ...` which starts the
same through torch.distributed.run, runs N copies of the command, one per *rank*. With world size W
and the global batch B = --batch-size, rank r trains on rows [r*B/W, (r+1)*B/W) of the (B, L)
streams: exactly the streams one process would have.

    streams  row 0 ........ ┐ rank 0       DDP averages the gradients in backward; every rank's
             row 1 ........ ┘              loss is the mean over its rows, and equal shares make
             row 2 ........ ┐ rank 1       the mean of those means the global mean: after k steps
             row 3 ........ ┘              W ranks hold the weights one process would (up to float
                                           rounding), so --batch-size keeps its meaning.

Rank 0 alone writes (checkpoints, metrics, progress, the run lock, the summary). The carried
state is gathered to the full (layers, B, H) for the checkpoint, so a run resumes with any world
size that divides B, 1 included, and its checkpoint loads anywhere as a plain one. Decisions that
must be the same everywhere (stop for the time budget or a signal, skip a non-finite step) come
from one small all-reduce per step (StepSync). Work that rank 0 does alone before training
(reading and encoding the corpus, calibrating --time-budget, locking the run folder) goes through
main_first / main_only, which share its outcome, an error included, with the other ranks.

Process groups: gloo for CPU tensors, nccl for CUDA ones, with a bounded timeout
(CHARNN_DIST_TIMEOUT, default 300 s): a rank that dies or hangs ends the run with an error
instead of a hang. A single process (W = 1) is a Group() that makes no collective call at all.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Optional, TypeVar

from charnn.errors import CharnnError
from charnn.machine import available_cores

if TYPE_CHECKING:       # torch is imported where it is used: a single process never needs it here
    import torch

T = TypeVar("T")
DEFAULT_TIMEOUT = 300.0       # seconds a collective may wait for the other ranks
PREPARE_TIMEOUT = 3600.0      # ... and how long they wait for rank 0 to read and encode the corpus
_COMM_SIGNS = ("gloo", "nccl", "NCCL", "Connection", "connection", "Timed out", "timed out",
               "ProcessGroup", "Socket", "socket", "peer")
_active: Optional[Group] = None   # the group of this process while a session() is open


class CollectiveError(CharnnError):
    """The ranks lost each other (one died, hung, or the network failed). Every rank that sees
    it reports it: it may be the only one left."""

    rank_specific = True


class MirroredError(CharnnError):
    """Rank 0's error, raised on the other ranks too so that all stop; only rank 0 prints it."""


def env_world() -> tuple[int, int, int, int]:
    """(rank, world, local rank, local world) from a launcher's environment (torchrun sets them)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    return rank, world, local_rank, local_world


def launched() -> bool:
    """True inside a process started by torchrun (or another launcher that sets WORLD_SIZE)."""
    return "WORLD_SIZE" in os.environ or "TORCHELASTIC_RUN_ID" in os.environ


def current() -> Group:
    """The group of the session() this process is in (a single process outside one)."""
    return _active if _active is not None else Group()


def timeout_seconds() -> float:
    text = os.environ.get("CHARNN_DIST_TIMEOUT")
    if not text:
        return DEFAULT_TIMEOUT
    from charnn.config import parse_duration

    try:
        return parse_duration(text)
    except CharnnError:
        raise CharnnError(f"CHARNN_DIST_TIMEOUT={text!r}: give seconds or a duration such as 90s "
                          "or 5m", 2) from None


class Group:
    """This process's place in the run. Group() is a single process: world 1, rank 0, and every
    method below is then the identity (or the plain local computation), with no collective."""

    def __init__(self, rank: int = 0, world: int = 1, local_rank: int = 0, local_world: int = 1):
        self.rank, self.world = rank, world
        self.local_rank, self.local_world = local_rank, local_world
        self.hint = ""            # added to a CollectiveError, e.g. where the last checkpoint is
        self._control = None      # a gloo group for objects and the long wait on rank 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # --- setting up --------------------------------------------------------------------------

    def init(self) -> None:
        import torch
        import torch.distributed as dist

        cuda = torch.cuda.is_available()
        if not cuda and self.local_world > 1 and "OMP_NUM_THREADS" not in os.environ:
            # W ranks on one machine share its cores (torchrun sets OMP_NUM_THREADS itself when it
            # starts several; another launcher may not)
            torch.set_num_threads(max(1, available_cores() // self.local_world))
        if cuda and self.local_rank < torch.cuda.device_count():
            torch.cuda.set_device(self.local_rank)
        limit = datetime.timedelta(seconds=timeout_seconds())
        try:
            dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo", timeout=limit)
            self._control = dist.new_group(backend="gloo", timeout=max(
                limit, datetime.timedelta(seconds=PREPARE_TIMEOUT)))
        except (RuntimeError, ValueError) as e:
            raise CollectiveError(f"could not join the distributed run as rank {self.rank} of "
                                  f"{self.world}: {_reason(e)}") from None

    def device(self, device: torch.device) -> torch.device:
        """The device of this rank: on CUDA, the GPU of its local rank."""
        if not self.distributed:
            return device
        if device.type == "cuda":
            import torch

            if device.index is not None:
                raise CharnnError(f"--device {device}: under torchrun each process takes the GPU "
                                  "of its local rank; say --device cuda", 2)
            n = torch.cuda.device_count()
            if self.local_rank >= n:
                raise CharnnError(f"local rank {self.local_rank} has no GPU of its own (this machine "
                                  f"has {n}): start at most {n} processes per node")
            return torch.device("cuda", self.local_rank)
        if device.type != "cpu":
            raise CharnnError(f"data-parallel training runs on CPUs (gloo) or CUDA GPUs (nccl), "
                              f"not on {device.type}", 2)
        return device

    def check_batch(self, batch_size: int, resumed: bool = False) -> None:
        """The global batch must split evenly over the ranks (resumed: it is the run's own)."""
        if batch_size % self.world and resumed:
            fits = [w for w in range(2, batch_size + 1) if batch_size % w == 0]
            raise CharnnError(f"this run's batch of {batch_size} streams cannot be split evenly over "
                              f"{self.world} processes: resume it on "
                              f"{', '.join(map(str, fits[:6]))} or 1", 2)
        if batch_size % self.world:
            lo = max(self.world, batch_size - batch_size % self.world)
            raise CharnnError(f"--batch-size {batch_size} is the global batch and must split evenly "
                              f"over the {self.world} processes: try --batch-size {lo} or "
                              f"{lo + self.world}", 2)

    def rows(self, n: int) -> slice:
        """This rank's share of n streams: rows [r*n/W, (r+1)*n/W) (the whole of them for W = 1)."""
        return slice(self.rank * n // self.world, (self.rank + 1) * n // self.world)

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """DDP around the model when W > 1 (its gradients are averaged over the ranks in backward;
        it also copies rank 0's weights to the others). The bare model stays the one to save."""
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel as DDP

        dev = next(model.parameters()).device
        return DDP(model, device_ids=[dev.index] if dev.type == "cuda" else None)

    def seed(self, seed: int) -> None:
        """After the model is built (the same on every rank): give each rank other than 0 its own
        random stream, so that dropout masks differ between ranks as they do between rows."""
        if self.distributed and self.rank > 0:
            import torch

            torch.manual_seed(seed + 1_000_003 * self.rank)

    # --- agreeing ----------------------------------------------------------------------------

    def step_sync(self, deadline: Callable[[], bool], interrupted: Callable[[], bool]) -> StepSync:
        return StepSync(self, deadline, interrupted)

    def sum(self, *values: float) -> tuple[float, ...]:
        """Element-wise sum over the ranks (float64)."""
        if not self.distributed:
            return values
        import torch
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t)
        return tuple(t.tolist())

    def broadcast(self, value: T) -> T:
        """Rank 0's value, on every rank (any picklable object)."""
        if not self.distributed:
            return value
        import torch.distributed as dist

        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0, group=self._control)
        return box[0]

    def main_only(self, fn: Callable[[], T]) -> T:
        """Rank 0 runs fn (e.g. calibrating the model size); the others wait for it and get its
        result (which must be picklable), or stop with its error."""
        if not self.distributed:
            return fn()
        return self._lead(fn, share=True) if self.is_main else self._follow()

    def main_first(self, fn: Callable[[], T]) -> T:
        """Rank 0 runs fn first (downloads, encodes and caches the corpus...), then local rank 0
        of each other node (whose cache may be its own), then all the others, which find the work
        done. An error of rank 0 stops every rank."""
        if not self.distributed:
            return fn()
        import torch.distributed as dist

        if self.is_main:
            result = self._lead(fn, share=False)
            dist.barrier(group=self._control)
            return result
        self._follow()
        if self.local_rank == 0:
            result = self._own(fn)
        dist.barrier(group=self._control)     # the other nodes' first readers are done
        return result if self.local_rank == 0 else self._own(fn)

    @staticmethod
    def _own(fn: Callable[[], T]) -> T:
        try:
            return fn()
        except CharnnError as e:   # rank 0 succeeded where this rank failed: its own problem
            e.rank_specific = True
            raise

    @contextlib.contextmanager
    def main_holds(self, cm) -> Iterator[None]:
        """Enter the context manager `cm` (e.g. the run folder's lock) on rank 0 only; if that
        fails, every rank stops with its error."""
        if not self.distributed:
            with cm:
                yield
            return
        with contextlib.ExitStack() as stack:
            def enter() -> None:
                stack.enter_context(cm)

            self.main_only(enter)
            yield

    def _lead(self, fn: Callable[[], T], share: bool) -> T:
        """Rank 0: run fn and tell the others how it went (and, if share, what it returned)."""
        try:
            result = fn()
        except BaseException as e:
            with contextlib.suppress(Exception):   # if they are gone, rank 0's own error stands
                self.broadcast(("error", _describe(e)))
            raise
        self.broadcast(("ok", result if share else None))
        return result

    def _follow(self) -> Any:
        kind, value = self.broadcast(None)
        if kind == "error":
            raise MirroredError(*value)
        return value

    # --- checkpoints -------------------------------------------------------------------------

    def gather_rows(self, state: Optional[tuple[torch.Tensor, ...]]) -> Optional[tuple[torch.Tensor, ...]]:
        """Each rank's carried state (layers, B/W, H) -> the full (layers, B, H) in row order."""
        if not self.distributed or state is None:
            return state
        import torch
        import torch.distributed as dist

        out = []
        for s in state:
            parts = [torch.empty_like(s) for _ in range(self.world)]
            dist.all_gather(parts, s.detach().contiguous())
            out.append(torch.cat(parts, dim=1))
        return tuple(out)

    def gather_rng(self, rng: dict[str, Any]) -> dict[str, Any]:
        """The RNG states of every rank: rank 0's at the top level (what a single process
        restores), all of them under "ranks" (what the same world size restores)."""
        if not self.distributed:
            return rng
        import torch.distributed as dist

        states: list[Any] = [None] * self.world
        dist.all_gather_object(states, rng, group=self._control)
        return {**states[0], "ranks": states}

    def rng_for_rank(self, rng: dict[str, Any]) -> dict[str, Any]:
        """The RNG states this rank restores from a checkpoint's "rng" entry."""
        ranks = rng.get("ranks")
        if ranks and len(ranks) == self.world:
            return ranks[self.rank]
        if self.is_main:
            return {k: v for k, v in rng.items() if k != "ranks"}
        return {}          # another world size: this rank keeps its own seeded stream


class StepSync:
    """What every rank must agree on at each step, for one tiny all-reduce per step:
    [loss, gradient norm, non-finite flag, deadline flag, stop flag], summed.

    W = 1: deadline() and interrupted() ask now, reduce() reads the local values: nothing changes
    from a plain loop. W > 1: the flags are those every rank agreed on in the last step's
    all-reduce, so all ranks stop at the same step; a stop asked by rank 0's callback (or a signal
    to one rank) takes effect at the next step on all of them."""

    def __init__(self, group: Group, deadline: Callable[[], bool], interrupted: Callable[[], bool]):
        self.group = group
        self._deadline, self._interrupted = deadline, interrupted
        self._agreed_deadline = self._agreed_stop = self._asked = False

    def deadline(self) -> bool:
        return self._agreed_deadline if self.group.distributed else self._deadline()

    def interrupted(self) -> bool:
        return self._agreed_stop if self.group.distributed else self._interrupted()

    def reduce(self, loss: torch.Tensor, grad_norm: torch.Tensor) -> tuple[float, float]:
        """This step's (mean loss over all ranks, gradient norm); nan for the norm if any rank saw
        a non-finite gradient (so all skip the step together)."""
        if not self.group.distributed:
            return loss.item(), grad_norm.item()
        import torch
        import torch.distributed as dist

        dev = loss.device
        gn = grad_norm.detach().to(torch.float64)
        local = torch.stack([loss.detach().to(torch.float64), torch.nan_to_num(gn),
                             (~torch.isfinite(gn)).to(torch.float64),
                             torch.tensor(float(self._deadline()), dtype=torch.float64, device=dev),
                             torch.tensor(float(self._interrupted() or self._asked),
                                          dtype=torch.float64, device=dev)])
        dist.all_reduce(local)
        loss_sum, norm_sum, bad, deadline, stop = local.tolist()
        self._agreed_deadline, self._agreed_stop = deadline > 0, stop > 0
        W = self.group.world
        return loss_sum / W, (math.nan if bad > 0 else norm_sum / W)

    def stop_here(self) -> bool:
        """The callback asked to stop. W = 1: stop now. W > 1: tell the others at the next step's
        all-reduce, and stop together after it."""
        if not self.group.distributed:
            return True
        self._asked = True
        return False


def _describe(e: BaseException) -> tuple[str, int]:
    if isinstance(e, CharnnError):
        return str(e), e.code
    if isinstance(e, KeyboardInterrupt):
        return "rank 0 was interrupted", 130
    return f"rank 0 failed ({type(e).__name__}: {e})", 1


# ----------------------------------------------------------------------------------------------
# The session: init, error translation, teardown


@contextlib.contextmanager
def session() -> Iterator[Group]:
    """The process group of this process for the length of a command. Outside a launcher, a
    single-process Group() and nothing else. Inside one: init, and on the way out a barrier (so no
    rank leaves while rank 0 still writes) and destroy_process_group, always. A failed collective
    becomes a CollectiveError with a short reason."""
    global _active
    rank, world, local_rank, local_world = env_world()
    group = Group(rank, world, local_rank, local_world)
    if not group.distributed:
        _active = group
        try:
            yield group
        finally:
            _active = None
        return
    import torch.distributed as dist

    group.init()
    _active = group
    ok = False
    try:
        yield group
        ok = True
    except CharnnError:
        raise
    except Exception as e:
        if getattr(e, "exit_code", None) is not None:
            ok = True       # the command's own exit with a status (typer.Exit), alike on all ranks
            raise
        if not is_comm_failure(e):
            raise
        raise CollectiveError(_lost_contact(e, group)) from None
    finally:
        _active = None
        try:
            if ok:
                dist.barrier()
        except Exception as e:   # a rank died after the work was done: say so, the files are whole
            if is_comm_failure(e):
                raise CollectiveError(_lost_contact(e, group)) from None
            raise
        finally:
            with contextlib.suppress(Exception):
                dist.destroy_process_group()


def is_comm_failure(e: BaseException) -> bool:
    """A failed collective: torch's DistError, or a RuntimeError from gloo / nccl (DDP's backward
    reports a dead peer as a plain RuntimeError)."""
    import torch.distributed as dist

    if isinstance(e, getattr(dist, "DistError", ())):
        return True
    return isinstance(e, RuntimeError) and any(s in str(e) for s in _COMM_SIGNS)


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if text.startswith("[") and "] " in text:          # gloo: "[.../pair.cc:537] Read error ..."
        text = text.split("] ", 1)[1]
    text = text.split(" This is typically caused")[0]
    return text[:200].rstrip(". ")


def _lost_contact(e: BaseException, group: Group) -> str:
    msg = (f"the distributed run broke down: rank {group.rank} lost contact with the others "
           f"({_reason(e)}); a process died or hung (collectives wait at most "
           f"{timeout_seconds():g}s, CHARNN_DIST_TIMEOUT)")
    return msg + (f"; {group.hint}" if group.hint else "")


def error_line(e: BaseException, message: str) -> Optional[str]:
    """What `charnn` prints for the error `e` of this process, or None to print nothing. In a
    distributed run only rank 0 reports the errors that every rank raises alike (bad flags, a
    missing corpus, rank 0's own failures mirrored to the others); another rank reports only
    what is its own (a lost peer, a bug, a file only it cannot read), prefixed with its rank."""
    rank, world, _, _ = env_world()
    if world <= 1 or rank == 0:
        return message
    if isinstance(e, CharnnError) and not getattr(e, "rank_specific", False):
        return None
    return f"rank {rank}: {message}"
