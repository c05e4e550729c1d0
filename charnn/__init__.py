"""charnn: recurrent language models of text (LSTM, GRU, vanilla RNN), from Python as from
the command line.

    import charnn

    run = charnn.load("checkpoints/lee")          # a run folder, a checkpoint, or None: the newest
    print(run.sample("The ", length=200, temperature=0.8, seed=1))
    print(run.score("A sentence to score.")["bits_per_char"])

    summary = charnn.train("notes.txt", out="checkpoints/notes", max_steps=500, hidden=256)

Everything here is light to import: torch loads when a model does.
"""

from charnn.config import DataConfig, ModelConfig, SampleConfig, TrainConfig
from charnn.errors import CharnnError
from charnn.run import Run, load

__version__ = "0.1.0"

__all__ = ["CharnnError", "DataConfig", "ModelConfig", "Run", "SampleConfig", "TrainConfig", "__version__",
           "load", "train"]


def train(corpus=None, out=None, callback=None, **options):
    """Train a model, as `charnn train` does, and return its summary (a dict: steps, val loss
    in nats/char and bits/char, run_dir, ...).

    corpus: a text file, a directory (read recursively), a catalog name ("lee"), a list of these,
    or None for the built-in corpus. out: the run
    folder (default checkpoints/<corpus name>). options: any `charnn train` option by its
    field name, e.g. max_steps=500, time_budget="10m", hidden=256, cell="gru",
    tokenizer="bpe", docs="lines", init_from="checkpoints/lee" (fine-tuning) (charnn.ModelConfig,
    TrainConfig and DataConfig list them; with none of
    max_steps/epochs/time_budget the budget is 5 minutes). callback: called with each progress
    event (a dict with an "event" key: start, step, eval, save, warning, done, ...).
    """
    from pathlib import Path

    from charnn.training import session

    corpus = corpus if corpus is None or isinstance(corpus, (list, tuple)) else [corpus]
    request = session.Request(corpus=None if corpus is None else [str(c) for c in corpus], given=options,
                              out=Path(out) if out is not None else None)
    return session.run(request, callback)
