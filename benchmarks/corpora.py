"""Two more corpora for the quality benchmarks (issue 17: not tuned to one text), built
deterministically on a fresh machine from what the package registries ship, no other network:

  python-stdlib  source code: the top-level modules of the running Python's standard library
                 (Lib/*.py, not the packages below it), sorted by file name and concatenated
                 as they are. Python 3.11.7 gives 168 files, 4,698,388 bytes. Another Python
                 version gives another text: the sha256 printed says which one you have.
  fortunes-de    German prose: the Debian package fortunes-de 0.35-1 (`apt-get download`),
                 its fortune files under usr/share/games/fortunes/de sorted by name (not the
                 .dat indexes, the .u8 links or `asciiart`), the `%` lines that separate the
                 fortunes made blank lines.
  fortunes-ru    Russian (Cyrillic) prose, the same way from fortunes-ru 1.52-3.1.

    .venv/bin/python benchmarks/corpora.py --out /tmp/corpora            # all three
    .venv/bin/python benchmarks/corpora.py --out /tmp/corpora python-stdlib
    .venv/bin/python benchmarks/corpora.py --out /tmp/corpora fortunes-de --deb fortunes-de_0.35-1_all.deb

apt-get download needs `apt-get update` once on a fresh machine. Each corpus is written as
OUT/NAME.txt (UTF-8) and its size and sha256 printed; the expected digests are in EXPECTED
(a mismatch is reported, not fatal: a Debian mirror may have moved on to a newer version).
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

DEBS = {"fortunes-de": ("fortunes-de", "0.35-1", "usr/share/games/fortunes/de"),
        "fortunes-ru": ("fortunes-ru", "1.52-3.1", "usr/share/games/fortunes/ru")}
SKIP = {"asciiart"}            # pictures made of characters, not language
# sha256 of the text each recipe gave on the development machine (Python 3.11.7, Debian's
# fortunes-de 0.35-1 and fortunes-ru 1.52-3.1), filled in from benchmarks/results/corpora.txt
EXPECTED = {
    "python-stdlib": "2e31e854ce7c5a39d3549a94420e7ba4b51281ef0f32fc8b6ddd601eff6d7d42",   # 4,698,280 chars
    "fortunes-de": "97f238fc379f8a7dcf05061bd06fb659afa7deb4caadb53e0eafb27bd4c6e1f7",     # 2,896,705 chars
    "fortunes-ru": "32ac334b2ff8015e77186dd1d410f2ead9b84b0bfe0c381af530fc7288d9bfb6",     # 2,007,607 chars
}


def python_stdlib() -> str:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(root.glob("*.py"), key=lambda p: p.name)
    parts = []
    for p in files:
        text = p.read_text(encoding="utf-8")
        parts.append(text if text.endswith("\n") else text + "\n")
    return "".join(parts)


def fortunes(name: str, deb: Path | None = None) -> str:
    package, version, folder = DEBS[name]
    with tempfile.TemporaryDirectory() as tmp:
        if deb is None:
            subprocess.run(["apt-get", "download", f"{package}={version}"], cwd=tmp, check=True,
                           stdout=subprocess.DEVNULL)
            deb = next(Path(tmp).glob(f"{package}_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(Path(tmp) / "x")], check=True)
        files = sorted((p for p in (Path(tmp) / "x" / folder).iterdir()
                        if p.is_file() and not p.is_symlink() and p.suffix != ".dat" and p.name not in SKIP),
                       key=lambda p: p.name)
        parts = []
        for p in files:
            lines = p.read_text(encoding="utf-8").splitlines()
            parts.append("\n".join("" if line == "%" else line for line in lines).rstrip("\n") + "\n\n")
        return "".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", default=["python-stdlib", "fortunes-de", "fortunes-ru"])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--deb", type=Path, help="use this .deb instead of apt-get download (one fortunes name)")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    for name in a.names:
        if name == "python-stdlib":
            text, source = python_stdlib(), f"Python {sys.version.split()[0]} stdlib top-level modules"
        elif name in DEBS:
            text, source = fortunes(name, a.deb), f"Debian {DEBS[name][0]} {DEBS[name][1]}"
        else:
            raise SystemExit(f"unknown corpus {name!r}: python-stdlib, {', '.join(DEBS)}")
        data = text.encode("utf-8")
        digest = hashlib.sha256(data).hexdigest()
        (a.out / f"{name}.txt").write_bytes(data)
        check = "" if name not in EXPECTED else ("  (as expected)" if EXPECTED[name] == digest
                                                 else f"  (expected {EXPECTED[name]}: a different source version)")
        print(f"{name:<14} {len(text):>10,} chars {len(data):>10,} bytes  sha256 {digest}  {source}{check}")


if __name__ == "__main__":
    main()
