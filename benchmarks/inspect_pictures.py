"""The pictures of docs/inspect.md (and the README's section), made again from trained runs:

    inspect_page.png       the `charnn inspect activations --find --html` page, screenshot in
                           headless chromium, opened on the unit that tracks the text best, one
                           character pointed at (its guesses and loss showing); the page itself
                           is kept beside it as inspect_page.html (gitignored: ~12 MB)
    find_units.txt         the --find report (and gate saturation) of that run, as printed
    saturation.png         its gate saturation scatter (LSTM/GRU runs)
    inspect_gradients.png  `charnn inspect gradients` over the gradient runs (--compare), and
    gradients.txt          its table: where each curve falls below 1e-3 of its k = 1 value
    info_loss.png          `charnn info RUN... --plot` over the loss runs

Every picture comes from the charnn command a user would type, run in this process through
charnn's own command-line entry (so torch is imported once); the commands are printed as they
run. For the docs, with runs of 5-10 minutes each:

    .venv/bin/python benchmarks/inspect_pictures.py --out docs/pictures \\
        --page-run checkpoints/lstm --gradient-runs checkpoints/rnn checkpoints/gru checkpoints/lstm \\
        --loss-runs checkpoints/rnn checkpoints/gru checkpoints/lstm

Needs matplotlib (pip install 'charnn[plot]'), and chromium with chromedriver for the page
(apt-get install chromium chromium-driver); without a browser the page screenshot is skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))       # this checkout's charnn


def charnn(*args: str, out: Path | None = None) -> str:
    """Run `charnn ARGS` (this checkout's); returns its stdout (also saved to `out`), stderr passes."""
    from charnn.cli import app

    print("$ charnn " + " ".join(_quote(a) for a in args), file=sys.stderr)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = app(list(args), prog_name="charnn", standalone_mode=False)
    if code:
        sys.exit(f"charnn {args[0]} failed (exit {code})")
    if out is not None:
        out.write_text(buf.getvalue(), encoding="utf-8")
    return buf.getvalue()


def _quote(a: str) -> str:
    return a if a and all(c.isalnum() or c in "-_./:=" for c in a) else repr(a)


def page_and_report(args, out: Path) -> None:
    text = ["--file", args.text_file] if args.text_file else []
    page = out / "inspect_page.html"
    cell = json.loads(charnn("info", args.page_run, "--json"))["model"]["cell"]
    plot = ["--plot", str(out / "saturation.png")] if cell != "rnn" else []     # a plain RNN has no gates
    charnn("inspect", "activations", args.page_run, *text, "--length", str(args.length), "--find",
           "--html", str(page), *plot, out=out / "find_units.txt")
    screenshot(page, out / "inspect_page.png", args.width, args.height)


def screenshot(page: Path, png: Path, width: int, height: int) -> None:
    """Open the page in headless chromium, point at a character a third into the text, save the view."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common.action_chains import ActionChains
    except ImportError:
        print("skipping the page screenshot: pip install selenium", file=sys.stderr)
        return
    binary = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        print("skipping the page screenshot: apt-get install chromium chromium-driver", file=sys.stderr)
        return
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              f"--window-size={width},{height}", "--hide-scrollbars", "--force-device-scale-factor=1"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    try:
        driver.get(page.resolve().as_uri())
        # one script finds the characters on screen (a WebDriver call per span would take seconds)
        index = driver.execute_script(
            "const s = [...document.querySelectorAll('#text .tok')].filter(e => /\\w/.test(e.textContent) &&"
            " e.getBoundingClientRect().bottom < arguments[0]);"
            "return s.length ? +s[Math.floor(s.length / 3)].dataset.i : 0;", height * 0.6)
        target = driver.find_elements("css selector", "#text .tok")[index]
        ActionChains(driver).move_to_element(target).click().perform()     # pinned: its guesses stay shown
        time.sleep(0.2)
        driver.save_screenshot(str(png))
    finally:
        driver.quit()
    print(f"wrote {png}", file=sys.stderr)


def gradients(args, out: Path) -> None:
    first, *rest = args.gradient_runs
    text = ["--file", args.text_file] if args.text_file else []
    compare = [a for r in rest for a in ("--compare", r)]
    charnn("inspect", "gradients", first, *text, *compare, "--lag", str(args.lag), "--positions", str(args.positions),
           "--plot", str(out / "inspect_gradients.png"), out=out / "gradients.txt")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "pictures", help="folder for the pictures")
    ap.add_argument("--page-run", help="the run shown in the page screenshot and the --find report")
    ap.add_argument("--text-file", help="text to look at [default: each run's validation text]")
    ap.add_argument("--length", type=int, default=1500, help="characters of text on the page")
    ap.add_argument("--gradient-runs", nargs="+", default=[], help="runs for the gradient chart (e.g. rnn gru lstm)")
    ap.add_argument("--lag", type=int, default=200, help="K for the gradient chart")
    ap.add_argument("--positions", type=int, default=32, help="positions averaged in the gradient chart")
    ap.add_argument("--loss-runs", nargs="+", default=[], help="runs for the loss chart")
    ap.add_argument("--width", type=int, default=1280, help="screenshot width")
    ap.add_argument("--height", type=int, default=820, help="screenshot height")
    args = ap.parse_args()
    if not (args.page_run or args.gradient_runs or args.loss_runs):
        ap.error("name at least one of --page-run, --gradient-runs, --loss-runs")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.page_run:
        page_and_report(args, args.out)
    if args.gradient_runs:
        gradients(args, args.out)
    if args.loss_runs:
        charnn("info", *args.loss_runs, "--plot", str(args.out / "info_loss.png"))
    for p in sorted(args.out.iterdir()):
        print(f"{p}  {p.stat().st_size:,} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
