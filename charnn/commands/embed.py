"""charnn embed: word2vec vectors with gensim. `charnn embed CORPUS -o VECTORS` builds (short
for `charnn embed build ...`); `similar`, `analogy`, `vector` and `eval` query any vectors file.

The group falls back to `build` when its first argument is not a subcommand name, so a corpus
named like a subcommand needs the explicit form: `charnn embed build similar -o x.kv`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperGroup

from charnn.errors import CharnnError

Opt = typer.Option
Arg = typer.Argument


class EmbedGroup(TyperGroup):
    """A group whose default command is `build`: `charnn embed lee -o x.kv` means
    `charnn embed build lee -o x.kv`. Help options and subcommand names keep their meaning."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["build", *args]
        return super().parse_args(ctx, args)


embed_app = typer.Typer(
    cls=EmbedGroup,
    no_args_is_help=True,
    subcommand_metavar="CORPUS -o VECTORS | COMMAND [ARGS]...",
    help="Word vectors with gensim's word2vec: build them from a corpus, then query, evaluate and "
    "export them.\n\n"
    "Build: charnn embed CORPUS -o VECTORS [OPTIONS], short for charnn embed build (see "
    "charnn embed build --help for the options). CORPUS is a text file, - for stdin, or a catalog "
    "name such as lee.\n\n"
    "Query: similar, analogy, vector and eval read charnn's .kv files and word2vec text or binary "
    "files made elsewhere (the format is detected); export converts between the formats.\n\n"
    "Examples: charnn embed lee -o lee.kv --sg --epochs 20 --min-count 3 ; "
    "charnn embed similar lee.kv government ; charnn embed analogy lee.kv man king woman ; "
    "charnn embed eval lee.kv",
)


def register(app: typer.Typer) -> None:
    from charnn.commands.guard import guard

    embed_app.command(
        "build",
        help="Train word2vec vectors on CORPUS (a text file, - for stdin, or a catalog name) and "
        "write them to VECTORS. Words come from charnn's word tokenizer; each line is a sentence. "
        "The tokenized corpus is cached, so a second build on the same text starts training at once.\n\n"
        "Example: charnn embed build corpus.txt -o corpus.kv --dim 200 --sg --epochs 10",
    )(guard(build_cmd))
    embed_app.command(
        "similar",
        help="Print the words nearest to WORD (cosine similarity), one 'word<TAB>similarity' per line; "
        "with several query words each line starts with the query. Words are read from stdin "
        "when none are given.\n\nExample: charnn embed similar lee.kv government --topn 5",
    )(guard(similar_cmd))
    embed_app.command(
        "analogy",
        help="A is to B as C is to ?: print the words nearest B - A + C, one 'word<TAB>similarity' "
        "per line. With no words, reads 'A B C' lines from stdin (each answer line then starts "
        "with its question).\n\nExample: charnn embed analogy vectors.bin man king woman",
    )(guard(analogy_cmd))
    embed_app.command(
        "vector",
        help="Print the vector of each WORD as 'word v1 v2 ...' (the word2vec text layout). Words "
        "are read from stdin when none are given.\n\nExample: charnn embed vector lee.kv police fire",
    )(guard(vector_cmd))
    embed_app.command(
        "export",
        help="Write VECTORS in another format, without retraining: charnn's native .kv, word2vec "
        "text or word2vec binary (the format comes from the -o suffix, as for build, or --format).\n\n"
        "Example: charnn embed export lee.kv -o lee.vec ; charnn embed export vectors.bin -o vectors.kv",
    )(guard(export_cmd))
    embed_app.command(
        "eval",
        help="Score the vectors on gensim's bundled test sets: analogies (questions-words.txt, "
        "accuracy) and word similarity (wordsim353, simlex999: Spearman correlation), each with "
        "its coverage (items whose words are all in the vocabulary).\n\nExample: charnn embed eval lee.kv --json",
    )(guard(eval_cmd))
    app.add_typer(embed_app, name="embed")


# ----------------------------------------------------------------------------------------------
# build


def build_cmd(
    corpus: str = Arg(..., help="Text file, - for stdin, or catalog name (e.g. lee)."),
    out: Path = Opt(..., "--out", "-o", help="Where to write the vectors."),
    fmt: str = Opt("auto", "--format", help="native (gensim KeyedVectors), word2vec-text or "
                   "word2vec-bin; auto picks from the -o suffix (.txt/.vec text, .bin binary, "
                   "else native; add .gz to compress)."),
    dim: int = Opt(100, help="Vector size."),
    window: int = Opt(5, help="Context words on each side of a word."),
    min_count: int = Opt(5, help="Ignore words rarer than this."),
    sg: bool = Opt(False, "--sg/--cbow", help="Skip-gram (better for rare words) or CBOW (faster)."),
    negative: int = Opt(5, help="Negative samples per word; 0 uses hierarchical softmax instead."),
    epochs: int = Opt(5, help="Passes over the corpus."),
    workers: Optional[int] = Opt(None, help="Training threads. [default: all cores]"),
    seed: int = Opt(1, help="Random seed (runs repeat exactly only with --workers 1)."),
    lowercase: bool = Opt(False, "--lowercase", help="Lowercase the text first."),
    max_vocab: Optional[int] = Opt(None, help="Keep at most this many of the most frequent words "
                                   "(raising the min count as needed). [default: no limit]"),
    encoding: str = Opt("utf-8", "--encoding", metavar="NAME", help="The corpus' text encoding (e.g. latin-1, "
                        "cp1252, utf-16)."),
    quiet: bool = Opt(False, "--quiet", "-q", help="No progress or summary on stderr."),
    json_out: bool = Opt(False, "--json", help="Print a JSON summary on stdout."),
):
    from charnn import corpora
    from charnn.commands.common import write_json
    from charnn.commands.progress import BuildReporter, DownloadBar
    from charnn.representations import word2vec as embed

    config = embed.EmbedConfig(dim=dim, window=window, min_count=min_count, sg=sg, negative=negative,
                               epochs=epochs, workers=workers, seed=seed, lowercase=lowercase,
                               max_vocab=max_vocab, encoding=encoding)
    config.validate()
    fmt = embed.format_for(out, fmt)
    # fail before training, not after it
    if out.is_dir():
        raise CharnnError(f"-o {out} is a directory; give a file name such as {out / 'vectors.kv'}", 2)
    if not out.parent.is_dir():
        raise CharnnError(f"-o {out}: folder {out.parent} does not exist")
    with DownloadBar(quiet) as bar:
        source = corpora.resolve(corpus, progress=bar)
    reporter = BuildReporter(quiet)
    try:
        kv, stats = embed.build(source, config, progress=reporter)
    finally:
        reporter.close()
    embed.save(kv, out, fmt)
    if not quiet:
        sys.stderr.write(
            f"wrote {stats.vocab:,} vectors of {config.dim} dimensions to {out} ({fmt}); corpus "
            f"{stats.corpus_words:,} words, {stats.distinct:,} distinct; trained in {stats.seconds:.1f}s "
            f"({stats.words_per_sec:,.0f} words/s)\n")
    if json_out:
        write_json({"vectors": str(out), "format": fmt, "dim": config.dim, "vocab": stats.vocab,
                    "distinct_words": stats.distinct, "corpus_words": stats.corpus_words,
                    "sentences": stats.sentences, "epochs": config.epochs,
                    "train_seconds": stats.seconds, "words_per_sec": stats.words_per_sec,
                    "corpus_cached": stats.cached})


# ----------------------------------------------------------------------------------------------
# queries


def _stdin_lines(what: str) -> list[str]:
    if sys.stdin is None or sys.stdin.isatty():
        raise CharnnError(f"give {what} as arguments or pipe them on stdin", 2)
    return [line for line in sys.stdin.read().splitlines() if line.strip()]


def _words(words: Optional[list[str]], what: str = "words") -> list[str]:
    if words:
        return list(words)
    got = [w for line in _stdin_lines(what) for w in line.split()]
    if not got:
        raise CharnnError(f"no {what} given (the arguments and stdin are empty)", 2)
    return got


def similar_cmd(
    vectors: Path = Arg(..., help="Vectors file: .kv, word2vec text or binary."),
    words: Optional[list[str]] = Arg(None, help="Query words. [default: read from stdin]"),
    topn: int = Opt(10, help="Neighbours per word."),
    json_out: bool = Opt(False, "--json", help="One JSON object per query word."),
):
    from charnn.commands.common import write_json
    from charnn.representations import word2vec as embed

    words = _words(words)
    kv = embed.load(vectors)
    embed.check_words(kv, words, str(vectors))
    results = [(w, embed.similar(kv, w, topn)) for w in words]  # all answered before printing
    for w, sims in results:
        if json_out:
            write_json({"word": w, "similar": [{"word": n, "similarity": s} for n, s in sims]})
            continue
        prefix = f"{w}\t" if len(words) > 1 else ""
        sys.stdout.write("".join(f"{prefix}{n}\t{s:.4f}\n" for n, s in sims))
    sys.stdout.flush()


def analogy_cmd(
    vectors: Path = Arg(..., help="Vectors file: .kv, word2vec text or binary."),
    words: Optional[list[str]] = Arg(None, help="A B C: A is to B as C is to ? "
                                     "[default: 'A B C' lines from stdin]"),
    topn: int = Opt(5, help="Answers per question, best first."),
    json_out: bool = Opt(False, "--json", help="One JSON object per question."),
):
    from charnn.commands.common import write_json
    from charnn.representations import word2vec as embed

    if words:
        if len(words) != 3:
            raise CharnnError(f"analogy takes three words, A B C (A is to B as C is to ?), not {len(words)}", 2)
        questions = [tuple(words)]
    else:
        questions = []
        for line in _stdin_lines("three words A B C"):
            q = line.split()
            if len(q) != 3:
                raise CharnnError(f"stdin line {line.strip()!r}: expected three words A B C", 2)
            questions.append(tuple(q))
    kv = embed.load(vectors)
    embed.check_words(kv, [w for q in questions for w in q], str(vectors))
    answers = [(q, embed.analogy(kv, *q, topn=topn)) for q in questions]
    for (a, b, c), best in answers:
        if json_out:
            write_json({"a": a, "b": b, "c": c,
                        "answers": [{"word": n, "similarity": s} for n, s in best]})
            continue
        prefix = f"{a} {b} {c}\t" if len(questions) > 1 or not words else ""   # stdin: always
        sys.stdout.write("".join(f"{prefix}{n}\t{s:.4f}\n" for n, s in best))
    sys.stdout.flush()


def vector_cmd(
    vectors: Path = Arg(..., help="Vectors file: .kv, word2vec text or binary."),
    words: Optional[list[str]] = Arg(None, help="Words. [default: read from stdin]"),
    json_out: bool = Opt(False, "--json", help="One JSON object per word."),
):
    from charnn.commands.common import write_json
    from charnn.representations import word2vec as embed

    words = _words(words)
    kv = embed.load(vectors)
    embed.check_words(kv, words, str(vectors))
    for w in words:
        row = kv[w]  # (dim,) float32; str() of a float32 is its shortest round-trip form
        if json_out:
            write_json({"word": w, "vector": [float(str(v)) for v in row]})
        else:
            sys.stdout.write(w + " " + " ".join(str(v) for v in row) + "\n")
    sys.stdout.flush()


def export_cmd(
    vectors: Path = Arg(..., help="Vectors file: .kv, word2vec text or binary (detected)."),
    out: Path = Opt(..., "--out", "-o", help="Where to write them."),
    fmt: str = Opt("auto", "--format", help="native, word2vec-text or word2vec-bin; auto picks from the "
                   "-o suffix (.txt/.vec text, .bin binary, else native; add .gz to compress)."),
    quiet: bool = Opt(False, "--quiet", "-q", help="No summary on stderr."),
):
    from charnn.representations import word2vec as embed

    fmt = embed.format_for(out, fmt)
    if out.is_dir():
        raise CharnnError(f"-o {out} is a directory; give a file name", 2)
    if out.resolve() == vectors.resolve():
        raise CharnnError(f"-o {out} is the input file: write to another name", 2)
    kv = embed.load(vectors)
    embed.save(kv, out, fmt)
    if not quiet:
        sys.stderr.write(f"wrote {len(kv):,} vectors of {kv.vector_size} dimensions to {out} ({fmt})\n")


def eval_cmd(
    vectors: Path = Arg(..., help="Vectors file: .kv, word2vec text or binary."),
    restrict: int = Opt(300_000, help="Search only the N most frequent words (as gensim and the "
                        "word2vec papers do)."),
    json_out: bool = Opt(False, "--json", help="Print the scores as JSON."),
):
    from charnn.commands.common import write_json
    from charnn.representations import word2vec as embed

    kv = embed.load(vectors)
    results = embed.evaluate(kv, restrict=restrict)
    if json_out:
        write_json({"vectors": str(vectors), "words": len(kv), "dim": kv.vector_size, "results": results})
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{vectors}: {len(kv):,} words, {kv.vector_size} dimensions")
    for col, justify in (("test", "left"), ("metric", "left"), ("score", "right"),
                         ("coverage", "right"), ("items", "right")):
        table.add_column(col, justify=justify)
    for r in results:
        score = "-" if r["score"] is None else f"{r['score']:.4f}"
        cov = f"{r['covered'] / r['total']:.1%}" if r["total"] else "-"
        table.add_row(r["test"], r["metric"], score, cov, f"{r['covered']:,} / {r['total']:,}")
    Console().print(table)
