"""Memory flat in corpus size, encoding speed, and the cached second start.

Builds a ~1 GB corpus (tinyshakespeare repeated) in a scratch folder and measures, in one run:

  encoding     char tokenizer fit + encode of the 1 GB file through charnn.data.encode_corpus
               (UTF-8 check, sha256, vocabulary, ids written to the cache), MB/s
  peak RSS     of a real `charnn train` subprocess on the 1 MB file and on the 1 GB file, the
               latter both cold (encoding included) and warm (cached ids, memory-mapped); the
               target is 1 GB <= 1.2 x 1 MB
  second start seconds from spawning `charnn train` on the cached 1 GB corpus to its first
               progress line ("training ..."), i.e. ready to train; target < 2 s

Each training run is the same small model for the same short time budget (the size is fixed by
flags, so only the clock limits it), so the only difference is the corpus.

    .venv/bin/python benchmarks/memory.py                 # needs ~4 GB free in the scratch folder
    .venv/bin/python benchmarks/memory.py --size-gb 0.2 --scratch /tmp/x
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CORPUS = REPO.parent / "shared" / "corpora" / "tinyshakespeare.txt"
MODEL = ["--layers", "2", "--hidden", "256", "--embed-dim", "64", "--batch-size", "32",
         "--seq-len", "128", "--lr", "3e-3", "--warmup", "20", "--dropout", "0"]


def big_corpus(src: Path, dst: Path, size: int) -> Path:
    text = src.read_bytes()
    copies = -(-size // len(text))
    if dst.exists() and dst.stat().st_size == copies * len(text):
        return dst
    with open(dst, "wb") as f:
        for _ in range(copies):
            f.write(text)
    return dst


def train(corpus: Path, cache: Path, out: Path, budget: str) -> dict:
    """Run `charnn train`; return peak RSS (MB), seconds to the first progress line, exit code."""
    env = dict(os.environ, CHARNN_CACHE=str(cache),
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "charnn", "train", str(corpus), "--out", str(out), "--force",
           "--time-budget", budget, *MODEL]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, text=True)
    ready, tail = None, []
    for line in p.stderr:
        if ready is None and line.startswith(("training ", "resuming ")):
            ready = time.perf_counter() - t0
        tail = (tail + [line])[-5:]
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"charnn train failed ({p.returncode}): {''.join(tail)}")
    return {"rss_mb": usage.ru_maxrss / 1024, "ready_s": ready}   # ru_maxrss is in KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-gb", type=float, default=1.0)
    ap.add_argument("--budget", default="45s", help="time budget of each training run")
    ap.add_argument("--scratch", type=Path, default=Path("/tmp/charnn-memory-bench"))
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    a = ap.parse_args()
    a.scratch.mkdir(parents=True, exist_ok=True)
    small = CORPUS
    big = big_corpus(CORPUS, a.scratch / "big.txt", int(a.size_gb * 1e9))
    size_mb = big.stat().st_size / 1e6
    print(f"# memory {date.today()}: {platform.machine()}, {os.cpu_count()} cores; "
          f"{small.name} ({small.stat().st_size / 1e6:.2f} MB) vs {big.name} ({size_mb:,.0f} MB)")
    print(f"# command: .venv/bin/python benchmarks/memory.py {' '.join(sys.argv[1:])}".rstrip())

    # encoding speed, in process, into a fresh cache
    cache_enc = a.scratch / "cache-enc"
    shutil.rmtree(cache_enc, ignore_errors=True)
    os.environ["CHARNN_CACHE"] = str(cache_enc)
    from charnn.data import encode_corpus

    t0 = time.perf_counter()
    enc = encode_corpus(big, "char")
    dt = time.perf_counter() - t0
    print(f"encoding: {size_mb:,.0f} MB in {dt:.1f}s = {size_mb / dt:,.0f} MB/s (UTF-8 check, "
          f"sha256, fit, encode, write; target >= 100 MB/s); {len(enc.ids):,} ids")
    del enc

    cache = a.scratch / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    s = train(small, cache, a.scratch / "run-small", a.budget)
    cold = train(big, cache, a.scratch / "run-big", a.budget)
    warm = train(big, cache, a.scratch / "run-big", a.budget)
    for name, r in (("1 MB", s), (f"{size_mb:,.0f} MB cold", cold), (f"{size_mb:,.0f} MB warm", warm)):
        print(f"peak RSS {name:>14}: {r['rss_mb']:,.0f} MB ({r['rss_mb'] / s['rss_mb']:.2f}x the 1 MB "
              f"run; target <= 1.2x); ready to train after {r['ready_s']:.2f}s")
    print(f"second start on the cached {size_mb:,.0f} MB corpus: {warm['ready_s']:.2f}s to the first "
          f"progress line (target < 2 s)")
    if not a.keep:
        shutil.rmtree(a.scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
