"""Report size and load time: a synthetic 60 s 5-node run, and a 100,000-op history.

    .venv/bin/python benchmarks/report_size.py [--rate 100]

Prints, per case: operations, render seconds, file size (MB) and the time
headless Chromium (/usr/bin/chromium, via Playwright) takes to load the page
and run its scripts. Targets (issue #5): the 60 s run <= 5 MB and <= 2 s.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from report_fixtures import make_run  # noqa: E402

from reports.render import render_history_report, render_run_report  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync"]


def big_history(ops: int, processes: int = 20, seed: int = 1) -> list[dict]:
    """A register history with ``ops`` operations, ~1 % of them timing out."""
    rng = random.Random(seed)
    events = []
    clock = [0] * processes
    process_of = list(range(processes))
    for i in range(ops):
        thread = i % processes
        start = clock[thread] + rng.randrange(1_000_000)
        latency = int(rng.lognormvariate(1.5, 0.6) * 1_000_000)
        f = rng.choice(["read", "write", "cas"])
        key = f"k{rng.randrange(8)}"
        value = None if f == "read" else (i if f == "write" else [i - 1, i])
        kind = "info" if rng.random() < 0.01 else rng.choice(["ok", "ok", "ok", "fail"])
        process = process_of[thread]
        events.append({"time": start, "process": process, "type": "invoke", "f": f,
                       "key": key, "value": value, "node": f"n{thread % 5 + 1}"})
        events.append({"time": start + latency, "process": process, "type": kind, "f": f,
                       "key": key, "value": i if f == "read" else value})
        if kind == "info":
            process_of[thread] += processes
        clock[thread] = start + latency
    events.sort(key=lambda e: e["time"])
    return events


def load_seconds(path: Path) -> float | None:
    if not CHROMIUM.is_file():
        return None
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto("about:blank")  # warm the browser up: measure the page, not the launch
        started = time.monotonic()
        page.goto(path.as_uri(), wait_until="load")
        page.wait_for_function("window.splitbrainReport !== undefined")
        seconds = time.monotonic() - started
        browser.close()
        return seconds


def report(name: str, ops: int, render_s: float, path: Path) -> None:
    seconds = load_seconds(path)
    load = "no chromium" if seconds is None else f"{seconds:.2f} s"
    print(f"{name:32} {ops:>8} ops  render {render_s:5.2f} s  "
          f"size {path.stat().st_size / 1e6:5.2f} MB  chromium load {load}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0,
                        help="client ops/s of the 60 s run (the harness default is 100)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = make_run(Path(tmp), "stale-read", duration_s=60.0, nodes=5, concurrency=10,
                           rate=args.rate)
        ops = sum(1 for line in (run_dir / "history.jsonl").open() if '"invoke"' in line)
        started = time.monotonic()
        path = render_run_report(run_dir)
        report(f"60 s, 5 nodes, {args.rate:g} ops/s", ops, time.monotonic() - started, path)

        run_dir = make_run(Path(tmp) / "fast", "stale-read", duration_s=60.0, nodes=5,
                           concurrency=10)
        ops = sum(1 for line in (run_dir / "history.jsonl").open() if '"invoke"' in line)
        started = time.monotonic()
        path = render_run_report(run_dir)
        report("60 s, 5 nodes, unthrottled", ops, time.monotonic() - started, path)

        events = big_history(100_000)
        started = time.monotonic()
        path = render_history_report(events, None, Path(tmp) / "big.html", "100k ops")
        report("bare history", 100_000, time.monotonic() - started, path)


if __name__ == "__main__":
    main()
