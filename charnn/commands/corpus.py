"""charnn corpus list | get NAME: the catalog of corpora."""

from __future__ import annotations

import sys
from typing import Optional

import typer

corpus_app = typer.Typer(help="The corpus catalog: built-in corpora and verified downloads.",
                         no_args_is_help=True)


def register(app: typer.Typer) -> None:
    from charnn.commands.guard import guard

    corpus_app.command("list", help="List catalog corpora.\n\nExample: charnn corpus list --json")(guard(list_cmd))
    corpus_app.command("get", help="Make a corpus available locally (downloading and verifying it "
                       "if need be) and print its path.\n\nExample: charnn corpus get tinyshakespeare"
                       )(guard(get_cmd))
    app.add_typer(corpus_app, name="corpus")


def list_cmd(json_out: bool = typer.Option(False, "--json", help="Print the catalog as JSON lines.")):
    from charnn import corpora
    from charnn.commands.common import fmt_size, write_json

    for c in corpora.CATALOG.values():
        kind = "built-in" if c.builtin else "download"
        if json_out:
            write_json({"name": c.name, "kind": kind, "size": c.size, "available": corpora.is_available(c),
                        "description": c.description, "url": c.url, "sha256": c.sha256})
        else:
            mark = "yes" if corpora.is_available(c) else "no"
            sys.stdout.write(f"{c.name:<22} {kind:<9} {fmt_size(c.size):>8}  local: {mark:<3}  {c.description}\n")


def get_cmd(
    name: str = typer.Argument(..., help="Catalog name (see charnn corpus list)."),
    url: Optional[str] = typer.Option(None, help="Fetch from this mirror instead; the sha256 check still applies."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
):
    from charnn import corpora
    from charnn.commands.progress import DownloadBar

    with DownloadBar(quiet) as bar:
        path = corpora.get(name, url=url, progress=bar)
    sys.stdout.write(f"{path}\n")
