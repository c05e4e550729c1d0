"""Training speed of `charnn embed` against bare gensim, same corpus, same parameters, one run.

    python benchmarks/embed_speed.py [CORPUS] [--dim 100 --epochs 5 --workers N --repeat 3]

CORPUS is anything `charnn embed` takes (a path or a catalog name; default: tinyshakespeare).
Both sides train on the same tokenized sentence-per-line file (charnn's preprocessing of the
corpus: bare gensim has no tokenizer of its own to give it the same words):

  charnn     charnn.representations.word2vec.build(corpus, config): cache lookup, vocabulary, corpus_file training
  gensim     Word2Vec(corpus_file=that file, same parameters): its own vocabulary scan + training
  gensim-it  Word2Vec(LineSentence(that file), ...): gensim's usual streaming-iterable mode

words/s = corpus words x epochs / seconds (best of --repeat, runs interleaved so machine noise
hits both sides alike), for the whole call and for the training part alone (charnn's whole call
skips gensim's vocabulary scan: it reuses the word counts cached with the tokenized corpus).
The first, cold preprocessing pass is timed separately. charnn should reach >= 90% of bare
gensim (corpus_file). Not a test: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    cache = tempfile.mkdtemp(prefix="charnn-embed-bench-")
    try:
        bench(cache)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def bench(cache: str) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", nargs="?", default="tinyshakespeare")
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--window", type=int, default=5)
    ap.add_argument("--min-count", type=int, default=5)
    ap.add_argument("--sg", action="store_true", help="skip-gram (default CBOW)")
    ap.add_argument("--negative", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--workers", type=int, default=None, help="default: all cores")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-iterable", action="store_true", help="skip the LineSentence baseline")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    # a private cache, so the cold preprocessing figure is really cold
    os.environ["CHARNN_CACHE"] = cache
    from gensim.models import Word2Vec
    from gensim.models.word2vec import LineSentence

    from charnn import corpora
    from charnn.machine import available_cores
    from charnn.representations import word2vec as embed

    source = corpora.resolve(args.corpus)
    config = embed.EmbedConfig(dim=args.dim, window=args.window, min_count=args.min_count, sg=args.sg,
                               negative=args.negative, epochs=args.epochs, workers=args.workers)
    workers = config.workers or available_cores()
    params = dict(vector_size=config.dim, window=config.window, min_count=config.min_count,
                  sg=int(config.sg), negative=config.negative, hs=int(config.negative == 0),
                  epochs=config.epochs, workers=workers, seed=config.seed)

    t = time.perf_counter()
    prepared = embed.prepare_corpus(source, config.lowercase)
    prep_s = time.perf_counter() - t
    total = prepared.words * config.epochs
    print(f"corpus {source}: {source.stat().st_size:,} bytes, {prepared.words:,} words, "
          f"{len(prepared.counts):,} distinct; tokenized in {prep_s:.2f}s (cold, once); "
          f"dim {config.dim}, {'skip-gram' if config.sg else 'CBOW'}, {config.epochs} epochs, "
          f"{workers} workers", file=sys.stderr)

    def run_charnn():
        kv, stats = embed.build(source, config)
        assert stats.cached
        return len(kv), stats.seconds

    def run_gensim():
        # what Word2Vec(corpus_file=..., **params) does, with the training part timed alone
        model = Word2Vec(**params)
        model.build_vocab(corpus_file=str(prepared.path))
        t = time.perf_counter()
        model.train(corpus_file=str(prepared.path), total_examples=model.corpus_count,
                    total_words=model.corpus_total_words, epochs=model.epochs)
        return len(model.wv), time.perf_counter() - t

    def run_gensim_iterable():
        model = Word2Vec(**params)
        sentences = LineSentence(str(prepared.path))
        model.build_vocab(sentences)
        t = time.perf_counter()
        model.train(sentences, total_examples=model.corpus_count, epochs=model.epochs)
        return len(model.wv), time.perf_counter() - t

    sides = {"charnn": run_charnn, "gensim": run_gensim}
    if not args.no_iterable:
        sides["gensim-it"] = run_gensim_iterable
    best = {name: float("inf") for name in sides}        # whole call
    best_train = {name: float("inf") for name in sides}  # training alone
    vocab = {}
    for r in range(args.repeat):
        for name, fn in sides.items():
            t = time.perf_counter()
            vocab[name], train_s = fn()
            wall = time.perf_counter() - t
            best[name], best_train[name] = min(best[name], wall), min(best_train[name], train_s)
            print(f"  run {r + 1}: {name:<9} {wall:7.2f}s (training {train_s:.2f}s)", file=sys.stderr)
    if len(set(vocab.values())) != 1:
        sys.exit(f"vocabularies differ, so the runs are not comparable: {vocab}")

    rate = {name: total / s for name, s in best.items()}
    train_rate = {name: total / s for name, s in best_train.items()}
    ratio = rate["charnn"] / rate["gensim"]
    train_ratio = train_rate["charnn"] / train_rate["gensim"]
    result = {"corpus": str(source), "corpus_words": prepared.words, "vocab": vocab["charnn"],
              "epochs": config.epochs, "dim": config.dim, "workers": workers, "sg": config.sg,
              "prep_seconds_cold": prep_s, "prep_bytes_per_sec": source.stat().st_size / prep_s,
              "seconds": best, "train_seconds": best_train, "words_per_sec": rate,
              "train_words_per_sec": train_rate, "ratio_charnn_vs_gensim": ratio,
              "train_ratio_charnn_vs_gensim": train_ratio}
    if args.json:
        print(json.dumps(result))
        return
    print(f"{'':<10} {'whole call':>26}   {'training alone':>26}")
    for name in sides:
        print(f"{name:<10} {best[name]:8.2f}s {rate[name]:>12,.0f} words/s   "
              f"{best_train[name]:8.2f}s {train_rate[name]:>12,.0f} words/s")
    print(f"charnn / bare gensim (corpus_file): {ratio:.1%} whole call, {train_ratio:.1%} training "
          f"alone ({'meets' if min(ratio, train_ratio) >= 0.9 else 'BELOW'} the 90% target)")
    print(f"tokenizing (cold, once per corpus): {prep_s:.2f}s, "
          f"{source.stat().st_size / prep_s / 1e6:.1f} MB/s")


if __name__ == "__main__":
    main()
