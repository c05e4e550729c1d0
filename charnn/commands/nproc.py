"""`charnn train --nproc N` and torchrun: how the train command joins or starts a distributed
run. The process group itself lives in charnn.training.distributed; the launcher in charnn.training.launch."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Optional

import typer

from charnn.errors import CharnnError


def in_session(fn):
    """Run the command inside charnn.training.distributed.session(): under torchrun it joins the process
    group (and always leaves it); in a plain process it is a single-process group."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from charnn.training import distributed

        if kwargs.get("nproc") is not None and distributed.launched():
            # before joining: --nproc under torchrun would start processes from processes
            raise CharnnError("--nproc starts its own processes: under torchrun leave it out "
                              "(torchrun's --nproc-per-node sets their number)", 2)
        with distributed.session():
            return fn(*args, **kwargs)

    return wrapper


def launch(ctx: typer.Context, nproc: int, corpus: Optional[list[str]], out: Optional[Path],
           resume: Optional[Path], batch_size: Optional[int], quiet: bool,
           started: float) -> Optional[int]:
    """`--nproc N`: start this same command on N ranks through torch.distributed.run and return
    their exit status. What only this process can do happens here first: reading stdin, and
    downloading a catalog corpus (once, with one progress bar)."""
    from charnn import corpora
    from charnn.commands.progress import DownloadBar
    from charnn.training import distributed
    from charnn.training import launch as launcher

    if nproc < 1:
        raise CharnnError("--nproc must be at least 1", 2)
    if nproc == 1:
        return None
    if batch_size is not None:
        distributed.Group(0, nproc).check_batch(batch_size)
    replace: dict[str, Optional[str] | list[str]] = {}
    if corpus == ["-"]:
        from charnn.data import spool_stdin

        replace["corpus"] = [str(spool_stdin())]     # the ranks cannot all read one stdin
        if out is None and resume is None:
            replace["out"] = str(Path("checkpoints") / "stdin")
    elif corpus or resume is None:
        with DownloadBar(quiet) as bar:       # catalog names are downloaded once, here
            for arg in corpus or [corpora.DEFAULT_CORPUS]:
                if not Path(arg).exists():
                    corpora.resolve(arg, progress=bar)
    os.environ["CHARNN_LAUNCHED_AT"] = repr(started)     # the ranks inherit it
    return launcher.launch(nproc, ["train", *command_line(ctx, replace, drop=("nproc",))])


def command_line(ctx: typer.Context, replace: dict[str, Optional[str]], drop=()) -> list[str]:
    """The options and arguments given to this command, as a command line: what the user typed
    (defaults stay defaults), with `replace`d values and without the `drop`ped options."""
    given = ("COMMANDLINE", "ENVIRONMENT")      # click's ParameterSource names
    opts: list[str] = []
    args: list[str] = []
    for p in ctx.command.params:
        if p.name in drop:
            continue
        if p.name in replace:
            value = replace[p.name]
        elif getattr(ctx.get_parameter_source(p.name), "name", None) in given:
            value = ctx.params[p.name]
        else:
            continue
        if p.param_type_name == "argument":
            for text in map(str, value if isinstance(value, (list, tuple)) else [value]):
                args.append(os.path.join(".", text) if text.startswith("-") and text != "-" else text)
            continue
        name = next((o for o in p.opts if o.startswith("--")), p.opts[0])
        if p.is_flag:
            if p.secondary_opts:
                opts.append(name if value else p.secondary_opts[0])
            elif value:
                opts.append(name)
        else:
            opts += [name, str(value)]
    return args + opts
