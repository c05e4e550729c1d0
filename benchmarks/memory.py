"""Memory flat in corpus size, encoding speed, and the cached second start.

Builds a ~1 GB corpus (tinyshakespeare repeated) in a scratch folder and measures, in one run:

  encoding     char tokenizer fit + encode of the 1 GB file through charnn.data.encode_corpus
               (UTF-8 check, sha256, vocabulary, ids written to the cache), MB/s
  peak RSS     of a real `charnn train` subprocess on the 1 MB file and on the 1 GB file, the
               latter both cold (encoding included) and warm (cached ids, memory-mapped); the
               target is 1 GB <= 1.2 x 1 MB
  second start seconds from spawning `charnn train` on the cached 1 GB corpus to its first
               progress line ("training ..."), i.e. ready to train; target < 2 s
  read-through a `charnn train` that reads --read-share of the big corpus (a small model, large
               batches, so it gets through hundreds of MB in minutes), its memory sampled from
               /proc every half second: anonymous memory (what the process owns) must stay flat;
               file-backed pages (the memory-mapped ids the kernel may drop) grow with what is read
  scripts      char encoding speed on ~100 MB of text in other scripts beside ASCII: accented
               Latin, Cyrillic, CJK (tinyshakespeare with its letters mapped to each script)

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


def rss(pid: int) -> dict[str, float] | None:
    """RssAnon and RssFile of a process, MB, from /proc (None once it has ended)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    kb = {k: float(v.split()[0]) for k, v in (line.split(":", 1) for line in lines) if k in ("RssAnon", "RssFile")}
    return {k: v / 1024 for k, v in kb.items()} if kb else None


def read_through(corpus: Path, cache: Path, out: Path, share: float) -> list[tuple[float, dict]]:
    """Train a small model through `share` of the corpus; memory samples (fraction read, MB)."""
    B, T = 512, 128
    tokens = corpus.stat().st_size * 0.9            # the training split, about one token per byte
    steps = max(10, int(share * tokens / (B * T)))
    env = dict(os.environ, CHARNN_CACHE=str(cache),
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "charnn", "train", str(corpus), "--out", str(out), "--force", "--quiet",
           "--layers", "1", "--hidden", "32", "--embed-dim", "16", "--batch-size", str(B), "--seq-len", str(T),
           "--max-steps", str(steps), "--eval-every", str(steps * 2)]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples = []
    while p.poll() is None:
        m = rss(p.pid)
        done = _steps_done(out / "metrics.jsonl")
        if m and m.get("RssAnon"):          # (an exiting process reports 0)
            samples.append((done / steps, m))
        time.sleep(0.5)
    if p.returncode != 0:
        raise SystemExit(f"read-through run failed: {p.stderr.read()[-1000:]}")
    return samples


def _steps_done(metrics: Path) -> int:
    try:
        last = metrics.read_text().strip().splitlines()[-1]
        return int(__import__("json").loads(last).get("step", 0))
    except (OSError, IndexError, ValueError):
        return 0


SCRIPTS = {   # a-z mapped onto 26 letters of another script (upper case alike, where it has one)
    "accented Latin": "àbçdéfghîjklmñöpqrštûvwxÿž",
    "Cyrillic": "".join(chr(0x430 + i) for i in range(26)),           # а б в г ...
    "CJK": "".join(chr(0x4E00 + 97 * i) for i in range(26)),          # 26 common-block ideographs
}


def script_speeds(scratch: Path, size: int) -> list[tuple[str, float, float]]:
    """(script, MB/s, M chars/s) of encode_corpus on ~size bytes of text in each script."""
    from charnn.data import encode_corpus

    base = CORPUS.read_text(encoding="utf-8")
    out = []
    for name, letters in [("ASCII", None), *SCRIPTS.items()]:
        text = base if letters is None else base.translate(str.maketrans(
            "abcdefghijklmnopqrstuvwxyz" + "abcdefghijklmnopqrstuvwxyz".upper(), letters + letters.upper()))
        path = scratch / f"script-{len(out)}.txt"
        raw = text.encode("utf-8")
        with open(path, "wb") as f:
            for _ in range(max(1, size // len(raw))):
                f.write(raw)
        os.environ["CHARNN_CACHE"] = str(scratch / f"cache-script-{len(out)}")
        t0 = time.perf_counter()
        n = len(encode_corpus(path, "char").ids)
        dt = time.perf_counter() - t0
        out.append((name, path.stat().st_size / 1e6 / dt, n / 1e6 / dt))
        path.unlink()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-gb", type=float, default=1.0)
    ap.add_argument("--budget", default="45s", help="time budget of each training run")
    ap.add_argument("--scratch", type=Path, default=Path("/tmp/charnn-memory-bench"))
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    ap.add_argument("--read-share", type=float, default=0.3, help="share of the big corpus the read-through reads")
    ap.add_argument("--script-mb", type=float, default=100, help="MB of text per script for the encoding speeds")
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
    samples = read_through(big, cache, a.scratch / "run-read", a.read_share)
    print(f"read-through of {a.read_share:.0%} of the {size_mb:,.0f} MB corpus (1x32 LSTM, B=512, T=128): "
          "memory against the share of it read")
    for q in (0.1, 0.25, 0.5, 0.75, 1.0):
        frac, m = min(samples, key=lambda s_: abs(s_[0] - q))
        print(f"  {frac * a.read_share:5.1%} read: anonymous {m['RssAnon']:7,.0f} MB, file-backed {m['RssFile']:7,.0f} MB")
    later = [(f, m["RssAnon"]) for f, m in samples if f >= 0.25]
    if later:
        print(f"  anonymous memory from a quarter of the way to the end: {later[0][1]:,.0f} -> "
              f"{later[-1][1]:,.0f} MB ({later[-1][1] - later[0][1]:+,.0f} MB while "
              f"{(later[-1][0] - later[0][0]) * a.read_share:.0%} of the corpus was read; flat means ~0)")
    print(f"char encoding by script (~{a.script_mb:.0f} MB each, fit + encode + write):")
    for name, mbs, mcs in script_speeds(a.scratch, int(a.script_mb * 1e6)):
        print(f"  {name:<15} {mbs:7,.0f} MB/s  {mcs:7,.1f} M chars/s")
    if not a.keep:
        shutil.rmtree(a.scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
