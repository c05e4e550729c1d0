"""The shape of the code, held by tests: layers point down (the library never imports the CLI
framework, Rich or the commands), and functions stay short."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "charnn"
UI = ("typer", "rich", "click", "charnn.commands", "charnn.cli")
MAX_LINES = 80


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def imported(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_the_library_never_imports_the_command_layer():
    library = [p for p in modules() if "commands" not in p.relative_to(PACKAGE).parts and p.name != "cli.py"
               and p.name != "__main__.py"]
    assert len(library) > 20
    bad = {str(p.relative_to(REPO)): sorted(n for n in imported(p) if n.split(".")[0] in UI or n.startswith(UI))
           for p in library}
    assert not {k: v for k, v in bad.items() if v}, bad


def test_functions_are_short():
    """No function over MAX_LINES lines, unless its def line says why (`# long: ...`)."""
    long = []
    for p in modules():
        source = p.read_text(encoding="utf-8")
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_LINES and "# long:" not in lines[node.lineno - 1]:
                    long.append(f"{p.relative_to(REPO)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, long


def test_one_atomic_writer():
    """Files are written through charnn.atomic: nothing else renames temporary files into place."""
    offenders = [str(p.relative_to(REPO)) for p in modules() if p.name != "atomic.py"
                 and any(s in p.read_text(encoding="utf-8") for s in ("os.replace(", "mkstemp(", "os.rename("))]
    assert not offenders, offenders
