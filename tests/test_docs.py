"""The docs cannot drift from the commands: every command and option that `--help` lists is
documented under docs/ (or in the README), and every option the docs mention exists; the
README's Python example runs as written. (sqlite-utils keeps its CLI reference honest this way.)"""

from __future__ import annotations

import re

import typer

from tests.conftest import REPO

# Programs other than charnn whose command lines the docs show (their options are theirs)
FOREIGN_PROGRAMS = re.compile(r"^\s*(\$\s*)?(torchrun|pip|curl|llm|python|jq|apt-get|ruff|bash)\b|benchmarks/")
# Options written alone in the docs for another program (torchrun's static rendezvous)
FOREIGN = {"--nproc-per-node", "--node-rank", "--master-addr", "--master-port", "--shutdown-timeout"}


def commands() -> dict:
    """Every command by its path ("train", "embed similar", ...)."""
    from charnn.cli import app

    out: dict = {}

    def walk(cmd, path: str) -> None:     # Typer's click commands (Typer vendors click)
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk(sub, f"{path} {name}".strip())
        else:
            out[path] = cmd

    walk(typer.main.get_command(app), "")
    return out


def cli_options() -> dict[str, set[str]]:
    """command path -> its long options (both halves of --x/--no-x)."""
    opts = {}
    for path, cmd in commands().items():
        names = set()
        for p in cmd.params:
            if p.param_type_name == "option":
                names |= {o for o in (*p.opts, *p.secondary_opts) if o.startswith("--")}
        opts[path] = names - {"--help"}
    return opts


def doc_text() -> str:
    pages = sorted((REPO / "docs").glob("*.md")) + [REPO / "README.md"]
    return "\n".join(p.read_text(encoding="utf-8") for p in pages)


def code_spans(text: str) -> str:
    """The text inside `inline code` and ``` fenced blocks: where options are written."""
    fenced = re.findall(r"```.*?\n(.*?)```", text, flags=re.S)
    rest = re.sub(r"```.*?```", "", text, flags=re.S)
    return "\n".join(fenced + re.findall(r"`([^`\n]+)`", rest))


def test_every_command_is_documented():
    text = doc_text()
    missing = [p for p in commands() if f"charnn {p}" not in text]
    assert not missing, f"commands with no documentation under docs/: {missing}"


def test_every_option_is_documented():
    documented = set(re.findall(r"(?<![\w-])--[a-z0-9][a-z0-9-]*", code_spans(doc_text())))
    missing = {f"charnn {p} {o}" for p, names in cli_options().items() for o in names if o not in documented}
    assert not missing, f"options --help lists that docs/ never mentions: {sorted(missing)}"


def charnn_parts(spans: str) -> str:
    """Of each line of code, what charnn reads: after `charnn` where the line runs it (a
    torchrun line), nothing where another program's line stands alone."""
    out = []
    for line in re.sub(r"\\\n\s*", " ", spans).splitlines():     # a command continued with \ is one line
        if " charnn " in f" {line} ":
            out.append(line[line.rindex("charnn"):])
        elif not FOREIGN_PROGRAMS.search(line):
            out.append(line)
    return "\n".join(out)


def test_every_documented_option_exists():
    known = set().union(*cli_options().values()) | {"--help", "--install-completion", "--show-completion"}
    documented = set(re.findall(r"(?<![\w-])--[a-z0-9][a-z0-9-]*", charnn_parts(code_spans(doc_text()))))
    unknown = documented - known - FOREIGN
    assert not unknown, f"options the docs mention that no command has: {sorted(unknown)}"


def test_docs_links_point_at_files():
    for page in [REPO / "README.md", *(REPO / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"


def test_readme_python_example_runs(tmp_path, monkeypatch):
    """The README's 'From Python' example, exactly as written (a tiny step count keeps it quick:
    the example's numbers are replaced by smaller ones, nothing else)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    code = re.search(r"## From Python.*?```python\n(.*?)```", readme, flags=re.S).group(1)
    small = code.replace("max_steps=200", "max_steps=20").replace("hidden=128", "hidden=32")
    assert small != code, "the README example changed: update this test's substitutions"
    namespace: dict = {}
    exec(compile(small, "README.md", "exec"), namespace)
    run = namespace["run"]
    assert run.path.parent.name == "api" and namespace["summary"]["steps"] == 20


def test_the_public_api_is_what_help_shows():
    import charnn

    assert set(charnn.__all__) >= {"load", "train", "Run", "ModelConfig", "TrainConfig", "CharnnError"}
    for name in charnn.__all__:
        assert getattr(charnn, name) is not None and (name.startswith("__") or getattr(charnn, name).__doc__)
