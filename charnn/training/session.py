"""From a request (`charnn train`'s options, or charnn.train()'s arguments) to a trained run:
the configs, the corpus, the run folder, the data, the inputs, the plan for a time budget,
then the Trainer. The command only parses and renders; everything it used to decide lives here.

    request = Request(corpus="notes.txt", given={"hidden": 256, "max_steps": 500})
    summary = run(request, callback=print)      # events as dicts; the summary at the end

Under torchrun every rank runs this: rank 0 reads, downloads, encodes and calibrates first and
the others follow (charnn.training.distributed); rank 0 alone holds the run folder's lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from charnn import checkpoint as ckpt_io
from charnn import corpora
from charnn.config import AT_START, MAY_CHANGE, DataConfig, ModelConfig, TrainConfig, cli_fields, parse_duration
from charnn.errors import CharnnError

Callback = Callable[[dict[str, Any]], Optional[bool]]
DEFAULT_BUDGET = 300.0      # seconds, when no limit is given
STOP_FLAGS = ("epochs", "max_steps", "time_budget")


@dataclass
class Request:
    """What to train. `given`: options by config field name (ModelConfig, TrainConfig,
    DataConfig); a missing or None one is left to the defaults (or to the time-budget planner).
    time_budget may be seconds or text such as "10m"."""

    corpus: str | list[str] | None = None      # a file, a directory, -, a catalog name; or several
    given: dict[str, Any] = field(default_factory=dict)
    out: Path | None = None
    resume: Path | None = None
    force: bool = False
    dry_run: bool = False


def run(request: Request, callback: Callback | None = None, started: float | None = None,
        download: Callable[[int, int | None], None] | None = None, group=None) -> dict[str, Any]:
    """Prepare and train. Returns the Trainer's summary, or for a dry run what would be
    trained: {"model", "train", "why", "plan"}. started: time.time() at the command's start
    (the budget counts from it). download: a (done, total) progress callback for downloads."""
    from charnn.training.distributed import Group

    with contextlib.ExitStack() as stack:     # holds the run folder's lock, once it is known
        session = Session(request, callback, started or time.time(), download, group or Group(), stack)
        return session.run()


def given_by_config(given: dict[str, Any]) -> dict[type, dict[str, Any]]:
    """Split options by the config they belong to; an unknown name is an error."""
    out: dict[type, dict[str, Any]] = {ModelConfig: {}, TrainConfig: {}, DataConfig: {}}
    owner = {f.name: cls for cls in out for f in cli_fields(cls)}
    for name, value in given.items():
        if name not in owner:
            raise CharnnError(f"unknown training option {name!r}", 2)
        if value is not None:
            out[owner[name]][name] = value
    if isinstance(out[TrainConfig].get("time_budget"), str):
        out[TrainConfig]["time_budget"] = parse_duration(out[TrainConfig]["time_budget"])
    return out


class Session:
    """One `charnn train`, step by step (run() reads top to bottom)."""

    def __init__(self, request: Request, callback: Callback | None, started: float, download, group,
                 stack: contextlib.ExitStack):
        self.req, self.started, self.download = request, started, download
        self.group, self.stack = group, stack
        self._callback = callback if group.is_main else None
        parts = given_by_config(request.given)
        self.model_given, self.train_given, self.data_given = parts[ModelConfig], parts[TrainConfig], parts[DataConfig]
        ModelConfig(vocab_size=1, **self.model_given)    # a bad --cell is said before anything is read
        self.resumed: dict[str, Any] | None = None
        self.source = None        # finetune.Source, with --init-from
        self.plan = None          # autosize.Plan, when the budget chose the model

    def emit(self, event: dict[str, Any]) -> None:
        if self._callback is not None:
            self._callback(event)

    def run(self) -> dict[str, Any]:
        if self.req.resume is not None:
            self.configs_for_resume()
        else:
            self.configs_for_new_run()
        self.group.check_batch(self.train_cfg.batch_size, resumed=self.resumed is not None)
        self.resolve_corpus()
        self.claim_run_dir()
        self.prepare_data()
        inputs = self.setup_inputs()
        if self.resumed is None:
            self.model_cfg = self.choose_model(inputs.model_options)
        if self.req.dry_run:
            return self.dry_run_result()
        if self.req.force and self.resumed is None:
            # afresh: the old run's files go, so none of them is mistaken for this run's
            self.group.main_only(lambda: clear_run(self.run_dir))
        return self.train(inputs.init_model)

    def train(self, init_model) -> dict[str, Any]:
        """The Trainer, watched; restarted once with a new plan if the speed the run gets is far
        from the plan's early on (charnn.training.watch)."""
        from charnn.training.trainer import train

        replan = self.replan_at if self.plan is not None and self.plan.tokens_per_sec else None
        while True:
            summary = train(self.model_cfg, self.train_cfg, self.data, self.run_dir, callback=self._callback,
                            resume=self.resumed, started=self.started, init_model=init_model,
                            group=self.group, watch=self.make_watch(replan))
            if summary.get("replan") is None:
                return summary
            self.restart_with(summary)
            replan = None

    def make_watch(self, replan):
        """The speed watch: threads adapt on a CPU in one process; re-planning needs a plan."""
        import torch

        from charnn.machine import pick_device, thread_choices
        from charnn.training.watch import ThroughputWatch

        cpu = self.group.device(pick_device(self.train_cfg.device)).type == "cpu"
        threads = thread_choices() if cpu and not self.group.distributed else []
        planned = self.plan.tokens_per_sec if self.plan is not None else None
        return ThroughputWatch(planned, threads, replan, current_threads=torch.get_num_threads())

    def replan_at(self, tokens_per_sec: float):
        """The watch's question: the plan for the time left at the speed the run gets now."""
        import torch

        from charnn.training import autosize

        left = self.train_cfg.time_budget - (time.time() - self.started)
        return autosize.replan(self.shape, (self.model_cfg.layers, self.model_cfg.hidden), tokens_per_sec,
                               torch.get_num_threads(), left, len(self.data.train_ids))

    def restart_with(self, summary: dict[str, Any]) -> None:
        from charnn.training import autosize

        ev = summary["replan"]
        old, p, rate = self.model_cfg, autosize.Plan(**ev["plan"]), ev["tokens_per_sec"]
        left = self.train_cfg.time_budget - (time.time() - self.started)
        self.emit({"event": "message", "text": (
            f"re-planning: {old.layers}x{old.hidden} trains at {rate:,.0f} tokens/s here now, far from the "
            f"{ev['planned_tokens_per_sec']:,.0f} it was planned for (the machine got "
            f"{'busier' if rate < ev['planned_tokens_per_sec'] else 'quieter'}); restarting with "
            f"{p.layers}x{p.hidden} for the {left:.0f}s left")})
        self.emit({"event": "plan", "text": autosize.describe(p), "plan": ev["plan"]})
        self.plan = p
        self.model_cfg = dataclasses.replace(old, layers=p.layers, hidden=p.hidden, embed_dim=p.embed_dim,
                                             dropout=p.dropout)
        self.train_cfg = dataclasses.replace(self.train_cfg, warmup=p.warmup, lr=p.lr)
        self.group.main_only(lambda: clear_run(self.run_dir))

    # ------------------------------------------------------------------------------------------
    # configs

    def configs_for_new_run(self) -> None:
        stops = {k: v for k, v in self.train_given.items() if k in STOP_FLAGS}
        self.train_cfg = TrainConfig(**self.train_given, **({} if stops else {"time_budget": DEFAULT_BUDGET}))
        self.data_cfg = DataConfig(**self.data_given)
        self.run_dir = self.req.out
        if self.train_cfg.init_from is not None:
            from charnn.training import finetune

            # rank 0 reads the source first (a checkpoint on a slow disk is read once at a time)
            self.source = self.group.main_first(lambda: finetune.load_source(self.train_cfg.init_from))
            finetune.check_flags(self.source, self.model_given, self.data_given)
            self.data_cfg = finetune.data_options(self.source, self.data_cfg)

    def configs_for_resume(self) -> None:
        """A resumed run keeps its model, tokenizer and data layout; only the limits, the
        evaluation interval and the device may change (options marked MAY_CHANGE)."""
        req, resume = self.req, Path(self.req.resume)
        if req.force:
            raise CharnnError("--force starts a run afresh; it cannot go with --resume", 2)
        if req.out is not None and Path(req.out).resolve() != resume.resolve():
            raise CharnnError(f"--out {req.out} differs from --resume {resume}: a resumed run stays in its folder", 2)
        if not resume.is_dir():
            raise CharnnError(f"--resume {resume}: not a charnn run folder"
                              f"{'' if resume.exists() else ' (no such folder)'}")
        self.run_dir = resume
        if not req.dry_run:   # lock first: a run in progress is named, and the checkpoint read is final
            self.stack.enter_context(self.group.main_holds(ckpt_io.RunLock(resume)))   # one writer: rank 0
        path = ckpt_io.checkpoint_in(resume, prefer=ckpt_io.LATEST)
        self.resumed = ckpt = self.group.main_first(lambda: ckpt_io.load(path))
        ckpt_io.check_resumable(ckpt, path)
        ckpt_io.build_model(ckpt)     # the weights fit the model and are finite
        self.model_cfg, old = ckpt_io.configs(ckpt)
        self.data_cfg = ckpt_io.data_config(ckpt)
        given = {**self.model_given, **self.train_given, **self.data_given}
        check_resume_flags(ckpt, self.model_cfg, old, given)
        changes = {k: v for k, v in self.train_given.items()
                   if _resume_rule(TrainConfig, k) == MAY_CHANGE}
        if any(k in changes for k in STOP_FLAGS):    # new limits replace the old ones
            changes = {**dict.fromkeys(STOP_FLAGS), **changes}
        self.train_cfg = dataclasses.replace(old, **changes)
        step = int(ckpt["progress"]["step"])
        if self.train_cfg.max_steps is not None and self.train_cfg.max_steps <= step:
            raise CharnnError(f"--max-steps {self.train_cfg.max_steps}: the run in {resume} is already "
                              f"at step {step}; give a larger --max-steps (or --time-budget) to "
                              "train on", 2)

    # ------------------------------------------------------------------------------------------
    # corpus, run folder, data, inputs

    def resolve_corpus(self) -> None:
        """The corpus arguments -> the files to read (charnn.corpora.resolve_all)."""
        args = [self.req.corpus] if isinstance(self.req.corpus, str) else list(self.req.corpus or [])
        if self.resumed is not None:
            kept = self.resumed.get("corpus", {})
            args = args or kept.get("args") or ([kept["path"]] if kept.get("path") else [])
            if not args:
                raise CharnnError("give the corpus to resume on: charnn train CORPUS --resume DIR", 2)
        elif not args:
            args = [corpora.DEFAULT_CORPUS]
            self.emit({"event": "message", "text": f"no corpus given: training on the built-in '{args[0]}' corpus"})
        self.corpus_args = args
        resolve = lambda: corpora.resolve_all(args, self.data_cfg.glob, progress=self.download)
        # rank 0 downloads (or spools stdin) first; the others find the file, or take rank 0's spool
        found = self.group.main_only(resolve) if args == ["-"] else self.group.main_first(resolve)
        self.files, self.path = found.files, found.files[0]
        if len(found.files) > 1 or found.skipped:
            self.emit({"event": "message", "text": describe_files(found)})

    def claim_run_dir(self) -> None:
        if self.resumed is None:
            self.run_dir = self.run_dir or Path("checkpoints") / run_name(self.corpus_args[0], self.path)
            if not self.req.dry_run:   # one writer per folder (rank 0), from here until training ends
                self.stack.enter_context(self.group.main_holds(ckpt_io.RunLock(self.run_dir)))

            def check_fresh():
                if (self.run_dir / ckpt_io.LATEST).exists() and not (self.req.force or self.req.dry_run):
                    raise CharnnError(f"{self.run_dir} already holds a run: continue it with --resume "
                                      f"{self.run_dir}, pick another --out, or start afresh with --force")

            self.group.main_only(check_fresh)
        self.group.hint = (f"the last checkpoint in {self.run_dir} is intact: continue with "
                           f"charnn train --resume {self.run_dir}")

    def prepare_data(self) -> None:
        from charnn.data import CorpusText
        from charnn.tokenizers import tokenizer_from_dict
        from charnn.training.dataset import prepare_data

        tok = None
        corpus = CorpusText(tuple(self.files), self.data_cfg.docs, self.data_cfg.encoding)
        if self.resumed is not None:
            tok = tokenizer_from_dict(self.resumed["tokenizer"])
            digest = self.resumed.get("corpus", {}).get("digest")
            if digest and corpus.digest() != digest:
                raise CharnnError(f"{corpus.name} is not the corpus this run was trained on (its content changed)")
        elif self.source is not None:
            from charnn.training.finetune import tokenizer_for

            tok = self.group.main_first(lambda: tokenizer_for(self.source, corpus.source(), corpus.docs))
        cfg, val_frac = self.data_cfg, self.train_cfg.val_frac
        # rank 0 encodes the corpus into the cache, then the others read it from there
        self.data = self.group.main_first(lambda: prepare_data(corpus, cfg.tokenizer, val_frac,
                                                               cfg.fit_options(), tokenizer=tok))
        if self.group.distributed:
            # the ranks must see one vocabulary (a cache that nodes do not share is refitted per node)
            tok0 = self.group.broadcast(self.data.tokenizer.to_dict())
            if tok0 != self.data.tokenizer.to_dict():
                self.data = prepare_data(corpus, cfg.tokenizer, val_frac, cfg.fit_options(),
                                         tokenizer=tokenizer_from_dict(tok0))
        self.data.config = cfg.to_dict()
        self.data.source["args"] = [str(a) for a in self.corpus_args]
        if self.source is not None:
            self.emit({"event": "message", "text": describe_init(self.source, self.data.tokenizer)})

    def setup_inputs(self):
        from charnn.representations.inputs import setup_input

        cfg, m = self.data_cfg, self.model_given
        if self.data.docs and "bow" in (m.get("input"), self.source and self.source.model_cfg.input):
            raise CharnnError("--docs and --input bow both cut the text into documents: choose one "
                              "(--input bow reads documents between --doc-sep)", 2)
        # fine-tuning sets up the inputs as resuming does: the source's model and bag of words
        inp = setup_input(self.data, m.get("input"), cfg.vectors, m.get("embed_dim"),
                          bool(m.get("freeze_embeddings")), cfg.doc_sep, cfg.max_vocab, cfg.min_count,
                          self.resumed if self.source is None else self.source.ckpt, self.train_cfg.seed)
        if self.source is not None:
            from charnn.training.finetune import initializer, model_options

            inp.model_options = model_options(self.source, self.model_given)
            inp.init_model = initializer(self.source)
        for text in inp.messages:
            if text.startswith("warning: "):
                self.emit({"event": "warning", "message": text[len("warning: "):]})
            else:
                self.emit({"event": "message", "text": text})
        return inp

    # ------------------------------------------------------------------------------------------
    # the model, chosen by flags or by the time budget

    def choose_model(self, input_options: dict[str, Any]) -> ModelConfig:
        # e.g. word2vec sets embed_dim from the vectors; --init-from sets the whole architecture
        mc = {**self.model_given, **input_options}
        cfg = self.train_cfg
        if cfg.time_budget is not None and cfg.max_steps is None and cfg.epochs is None:
            mc = self.plan_for_budget(mc)
        return ModelConfig(vocab_size=self.data.tokenizer.vocab_size, **mc)

    def plan_for_budget(self, mc: dict[str, Any]) -> dict[str, Any]:
        """Only the clock limits the run: choose the size and schedule that learn most in it."""
        from charnn.machine import pick_device
        from charnn.training import autosize

        fixed = {**{k: v for k, v in mc.items() if k in ("layers", "hidden", "embed_dim", "dropout",
                                                          "weight_drop", "attention")},
                 **{k: v for k, v in self.train_given.items()
                    if k in ("batch_size", "seq_len", "lr", "warmup", "ar", "tar")}}
        remaining = self.train_cfg.time_budget - (time.time() - self.started)
        device = self.group.device(pick_device(self.train_cfg.device))
        self.shape = autosize.shape_for(self.data.tokenizer.vocab_size, device, fixed, mc.get("cell", "lstm"))
        # rank 0 calibrates (the others would only compete with it for the machine)
        self.plan = plan = self.group.main_only(lambda: autosize.plan(
            remaining, len(self.data.train_ids), self.data.tokenizer.vocab_size, device, fixed,
            mc.get("cell", "lstm"), amp=self.train_cfg.amp))
        if plan.threads and not self.group.distributed:
            import torch

            torch.set_num_threads(plan.threads)      # what trained fastest in the calibration
        if not self.req.dry_run:
            self.emit({"event": "plan", "text": autosize.describe(plan), "plan": plan.to_dict()})
        self.train_cfg = dataclasses.replace(self.train_cfg, batch_size=plan.batch_size, seq_len=plan.seq_len,
                                             lr=plan.lr, warmup=plan.warmup, ar=plan.ar, tar=plan.tar)
        self.group.check_batch(self.train_cfg.batch_size)
        return {**mc, "layers": plan.layers, "hidden": plan.hidden, "embed_dim": plan.embed_dim,
                "dropout": plan.dropout, "weight_drop": plan.weight_drop}

    def dry_run_result(self) -> dict[str, Any]:
        if self.resumed is not None:
            why = [f"resuming {self.run_dir} from step {self.resumed['progress']['step']}"]
        elif self.plan is not None and self.source is not None:
            why = [f"fine-tuning {self.source.path}: its architecture is kept", *self.plan.reasons]
        elif self.plan is not None:
            why = list(self.plan.reasons)
        else:
            why = ["fixed limits (--max-steps/--epochs): the defaults and flags as given"]
        return {"model": self.model_cfg.to_dict(), "train": self.train_cfg.to_dict(),
                "data": self.data_cfg.to_dict(), "run_dir": str(self.run_dir), "why": why,
                "plan": self.plan.to_dict() if self.plan is not None else None}


def check_resume_flags(ckpt: dict, model_cfg: ModelConfig, train_cfg: TrainConfig, given: dict) -> None:
    """A resumed run keeps its model, tokenizer and data layout: a flag given with --resume
    must repeat the run's value (so a command retyped with --resume added works), never
    silently change nothing."""
    run = {**ckpt_io.data_config(ckpt).to_dict(), **train_cfg.to_dict(), **model_cfg.to_dict()}
    if "encoding" in given:
        given = {**given, "encoding": DataConfig(encoding=given["encoding"]).encoding}
    may_change = [f"--{f.name.replace('_', '-')}" for cls in (ModelConfig, TrainConfig, DataConfig)
                  for f in cli_fields(cls) if f.metadata["resume"] == MAY_CHANGE]
    for name, value in given.items():
        rule = next(_resume_rule(cls, name) for cls in (ModelConfig, TrainConfig, DataConfig)
                    if _resume_rule(cls, name) is not None)
        flag = "--" + name.replace("_", "-")
        if rule == AT_START:
            raise CharnnError(f"{flag} only applies when a run starts; a resumed run keeps its "
                              "vocabulary and inputs (leave it out)", 2)
        if rule != MAY_CHANGE and run.get(name) != value:
            raise CharnnError(
                f"{flag} {value} differs from the run's {run.get(name)}: a resumed run keeps its "
                f"model, tokenizer and data layout (leave {flag} out; only {', '.join(may_change)} "
                "may change)", 2)


def _resume_rule(cls, name: str) -> str | None:
    return next((f.metadata["resume"] for f in cli_fields(cls) if f.name == name), None)


def clear_run(run_dir: Path) -> None:
    for name in (ckpt_io.LATEST, ckpt_io.BEST, "metrics.jsonl"):
        (run_dir / name).unlink(missing_ok=True)


def run_name(arg: str, path: Path) -> str:
    """The run folder's name under checkpoints/: the catalog name, 'stdin', the directory's
    name, or the file's stem (of the first corpus argument)."""
    if arg == "-":
        return "stdin"
    if arg in corpora.CATALOG and not Path(arg).exists():
        return arg
    stem = (Path(arg).resolve().name if Path(arg).is_dir() else path.stem).lstrip(".")
    return stem or "run"    # never "..": the run folder stays under checkpoints/


def describe_files(found) -> str:
    """What a corpus of many files came to, for stderr."""
    skipped = found.skipped
    shown = ", ".join(str(p) for p in skipped[:3]) + (", ..." if len(skipped) > 3 else "")
    return (f"reading {len(found.files):,} file{'s' * (len(found.files) != 1)}"
            + (f"; skipped {len(skipped):,} that are not text ({shown})" if skipped else ""))


def describe_init(source, tok) -> str:
    """The start of a fine-tuned run, for stderr: where from, and how the vocabulary grew."""
    old, new = source.model_cfg.vocab_size, tok.vocab_size
    grown = f"; vocabulary {old:,} -> {new:,} (the new ids after the old)" if new > old else ""
    return f"fine-tuning from {source.path} ({source.model_cfg.layers} x {source.model_cfg.hidden} " \
           f"{source.model_cfg.cell.upper()}, step {source.ckpt.get('progress', {}).get('step', '?')}){grown}"
