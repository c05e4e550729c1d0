"""charnn: recurrent language models of text (LSTM, GRU, vanilla RNN), from Python as from
the command line.

    import charnn

    run = charnn.load("checkpoints/lee")          # a run folder, a checkpoint, or None: the newest
    print(run.sample("The ", length=200, temperature=0.8, seed=1))
    print(run.score("A sentence to score.")["bits_per_char"])

Everything here is light to import: torch loads when a model does.
"""

from charnn.config import ModelConfig, SampleConfig, TrainConfig
from charnn.errors import CharnnError
from charnn.run import Run, load

__version__ = "0.1.0"

__all__ = ["CharnnError", "ModelConfig", "Run", "SampleConfig", "TrainConfig", "__version__", "load"]
