"""The playground screenshot for the docs: starts `charnn serve RUN` on a free loopback port,
opens the page in headless chromium, types a prime, generates with a fixed seed, and saves the
page as a PNG, so the picture can be made again from any run.

    python benchmarks/serve_pictures.py checkpoints/shakespeare [--out docs/playground.png]
        [--prime "ROMEO:"] [--length 600] [--temp 0.8] [--seed 1] [--width 1200 --height 900]

Needs chromium and chromedriver (Debian: apt-get install chromium chromium-driver) and selenium
(pip install -e '.[dev]').
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="run folder or checkpoint to serve")
    ap.add_argument("--out", default=str(REPO / "docs" / "playground.png"))
    ap.add_argument("--prime", default="ROMEO:\n")
    ap.add_argument("--length", type=int, default=600)
    ap.add_argument("--temp", type=float, default=0.8)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--width", type=int, default=1200)
    ap.add_argument("--height", type=int, default=900)
    args = ap.parse_args()

    server, url = start_server(args.run)
    try:
        driver = browser(args.width, args.height)
        try:
            shoot(driver, url, args)
        finally:
            driver.quit()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    print(args.out)


def start_server(run: str) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "charnn", "serve", run, "--port", "0"], env=env,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 120
    for line in proc.stderr:
        m = re.search(r"on (http://127\.0\.0\.1:\d+) ", line)
        if m:
            return proc, m.group(1)
        sys.stderr.write(line)
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise SystemExit("charnn serve did not start")


def browser(width: int, height: int):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from tests.browser import find_browser

    binary, driver = find_browser()
    if binary is None or driver is None:
        raise SystemExit("no chromium/chromedriver: apt-get install chromium chromium-driver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--hide-scrollbars", "--force-device-scale-factor=1"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=opts)


def shoot(driver, url: str, args: argparse.Namespace) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url + "/")
    wait = WebDriverWait(driver, 60)
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#model option"))
    for element, value in (("prime", args.prime), ("length", args.length), ("temperature", args.temp),
                           ("seed", args.seed)):
        field = driver.find_element(By.ID, element)
        field.clear()
        field.send_keys(str(value))
    driver.find_element(By.ID, "generate").click()
    wait.until(lambda d: "characters in" in d.find_element(By.ID, "status").text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(args.out)


if __name__ == "__main__":
    main()
