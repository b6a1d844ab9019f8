"""Reports in a real browser: Debian's headless Chromium driven by Playwright.

Never downloads a browser: Playwright is pointed at /usr/bin/chromium. The
pages must show their key parts, log no console error, and leave screenshots
in test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from report_fixtures import make_run, planted_read

from reports.model import ANOMALY_PREFIXES, read_jsonl
from reports.render import render_run_report, update_store_index

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.is_file(),
                       reason="needs Debian's chromium at /usr/bin/chromium (apt install "
                              "chromium; scripts/setup.sh does it as root)"),
]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store")
    for kind in ("valid", "stale-read", "log-divergence"):
        render_run_report(make_run(root, kind, duration_s=4.0))
    update_store_index(root)
    return root


def _run(store: Path, kind: str) -> Path:
    return next(store.glob(f"raft-kv-{kind}/*"))


@pytest.fixture(autouse=True)
def _artifacts_dir() -> None:
    ARTIFACTS.mkdir(exist_ok=True)  # tests may run on any xdist worker, in any order


def open_page(browser, path: Path):
    """Open a file, collecting console errors and uncaught exceptions; returns (page, errors)."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text)
            if message.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # a self-contained page must never ask the network for anything
    page.route("http*://**", lambda route: (errors.append(f"network: {route.request.url}"),
                                            route.abort()))
    page.goto("about:blank")  # time the report, not the new tab's start-up
    started = time.monotonic()
    page.goto(path.as_uri(), wait_until="load")
    page.wait_for_function("window.splitbrainReport !== undefined || !document.getElementById"
                           "('report-data')")
    return page, errors, time.monotonic() - started


def test_stale_read_first_screen_shows_read_missed_write_and_partition(browser, store) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    run_dir = _run(store, "stale-read")
    page, errors, _ = open_page(browser, run_dir / "report.html")
    page.screenshot(path=str(ARTIFACTS / "report-stale-read-first-screen.png"))
    op = planted_read(run_dir)
    viewport_height = page.viewport_size["height"]
    for selector, text in (
        ("#card-failed", f"process {op['process']}: read {op['key']} → {op['value']}"),
        ("#card-missed", "The newer write it missed"),
        ("#card-fault", "partition n1 | n2 n3 n4 n5"),
        ("#failure svg.window", ""),
    ):
        element = page.locator(selector)
        assert element.is_visible(), selector
        assert text in element.inner_text() if text else True
        box = element.bounding_box()
        assert box is not None and box["y"] < viewport_height, f"{selector} below the fold"
    assert page.locator("#verdict").inner_text() == "INVALID"
    # the timeline drew bars, zooms to the failure, and explains an op on hover
    status = page.locator("#timeline-status")
    assert "bars drawn" in status.inner_text()
    page.locator('#timeline button[data-act="focus"]').click()
    # the redraw waits for the next animation frame: await it, do not race it
    sync_api.expect(status).not_to_have_text(re.compile(r"^showing 0\.000 s"))
    canvas = page.locator("#timeline-canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    first_lane = page.evaluate("(t => t.top + t.laneH / 2)(window.splitbrainReport.timeline)")
    found = False
    for fraction in [i / 40 for i in range(4, 40)]:  # find some bar under the pointer
        page.mouse.move(box["x"] + box["width"] * fraction, box["y"] + first_lane)
        if page.locator("#tooltip").is_visible():
            found = True
            break
    assert found and "invoked" in page.locator("#tooltip").inner_text()
    page.locator("#linearizability").screenshot(
        path=str(ARTIFACTS / "report-stale-read-linearizability.png"))
    page.locator("#messages").screenshot(path=str(ARTIFACTS / "report-stale-read-messages.png"))
    page.screenshot(path=str(ARTIFACTS / "report-stale-read-full.png"), full_page=True)
    assert errors == []


def test_log_divergence_and_valid_reports_render_cleanly(browser, store) -> None:
    page, errors, _ = open_page(browser, _run(store, "log-divergence") / "report.html")
    assert page.locator("#failure td.differs").count() == 1
    assert page.locator("#failure td.differs").is_visible()
    page.locator("#failure").screenshot(path=str(ARTIFACTS / "report-log-divergence.png"))
    assert errors == []
    page, errors, _ = open_page(browser, _run(store, "valid") / "report.html")
    assert page.locator("#verdict").inner_text() == "valid"
    assert page.locator("#failure").count() == 0
    assert page.locator("#latency-canvas").is_visible()
    assert "completed operations per second" in page.locator("#throughput-legend").inner_text()
    page.screenshot(path=str(ARTIFACTS / "report-valid.png"))
    assert errors == []


def test_store_index_links_to_reports(browser, store) -> None:
    page, errors, _ = open_page(browser, store / "index.html")
    rows = page.locator("#runs tbody tr")
    assert rows.count() == 3
    page.locator("#runs a", has_text="report").first.click()
    page.wait_for_load_state("load")
    assert page.url.endswith("/report.html")
    assert page.locator("#verdict").is_visible()
    assert errors == []


@pytest.mark.slow  # ~30 s to build and check the run; a timing target needs an idle machine
def test_sixty_second_five_node_report_loads_fast_and_small(browser, tmp_path: Path) -> None:
    """The issue's target: a 60 s, 5-node run report is <= 5 MB and opens in <= 2 s.

    benchmarks/report_size.py prints the same figures (and a 100,000-op history's).
    """
    run_dir = make_run(tmp_path, "stale-read", duration_s=60.0, nodes=5, concurrency=10,
                       rate=200.0)  # twice the harness's default rate
    report = render_run_report(run_dir)
    size_mb = report.stat().st_size / 1e6
    assert size_mb <= 5.0, size_mb
    _, errors, seconds = open_page(browser, report)
    assert errors == []
    assert seconds <= 2.0, seconds


def test_real_stale_leader_read_run_report_first_screen(browser, tmp_path: Path) -> None:
    """A real ``splitbrain run --bug stale-leader-read`` report names a proven anomaly
    on its first screen, with the op, the newer value's card and the fault card."""
    from harness.cli.main import main as cli_main

    schedule = tmp_path / "isolate-leader.json"
    steps = []
    for start in (1.0, 4.0):  # isolate the leader and pause it: it serves a stale read after
        steps += [{"at": start, "f": "partition", "value": {"shape": "isolate-leader"}},
                  {"at": start + 0.05, "f": "pause", "value": "leader"},
                  {"at": start + 1.6, "f": "resume", "value": "all"},
                  {"at": start + 2.2, "f": "heal", "value": None}]
    schedule.write_text(json.dumps(steps))
    store = tmp_path / "store"
    # A real cluster's timing decides whether a client meets the deposed leader in
    # its window (about 3 runs in 4 do), so up to three seeds before giving up.
    for seed in ("7", "8", "9"):
        code = cli_main([
            "run", "--nodes", "5", "--time-limit", "6.5", "--nemesis-schedule", str(schedule),
            "--bug", "stale-leader-read", "--keys", "2", "--rate", "200", "--concurrency",
            "6", "--mix", "read=6,write=4", "--store", str(store), "--seed", seed,
            "--no-display", "--quiet-period", "1"])
        if code == 1:
            break
    run_dir = (store / "latest").resolve()
    if code != 1:
        pytest.skip(f"three runs did not expose the bug (last exit {code}); detection "
                    "itself is tested in test_run_detection.py")
    assert (store / "index.html").is_file()  # the run's report refreshed the store index
    page, errors, _ = open_page(browser, run_dir / "report.html")
    page.screenshot(path=str(ARTIFACTS / "report-real-stale-leader-read.png"))
    failure = page.locator("#failure")
    assert page.locator("#verdict").inner_text() == "INVALID"
    headline = failure.locator(".headline").inner_text()
    viewport_height = page.viewport_size["height"]
    # What the run guarantees, not its exact story (crafted histories pin the wording,
    # tests/test_reports_explain.py): a proven anomaly, shown on the first screen, that
    # involves a node the schedule cut off as leader (a deposed leader answers the
    # stale reads). Which proof applies, and whether the read met the partition or
    # came just after the heal, is the cluster's timing.
    assert headline.startswith(ANOMALY_PREFIXES), headline
    for selector in ("#card-failed", "#failure .card:nth-child(2)", "#card-fault"):
        box = page.locator(selector).bounding_box()
        assert box is not None and box["y"] < viewport_height, selector
    assert isolated_leaders(run_dir) & nodes_named(headline), headline
    assert errors == []


def isolated_leaders(run_dir: Path) -> set[str]:
    """The nodes the run's partitions cut off as leader (recorded by the nemesis)."""
    return {event["value"]["leader"] for event in read_jsonl(run_dir / "history.jsonl")
            if event.get("process") == "nemesis" and event.get("f") == "start-partition"
            and isinstance(event.get("value"), dict) and event["value"].get("leader")}


def nodes_named(headline: str) -> set[str]:
    """Nodes a headline places an operation on ("… on n3 …")."""
    return set(re.findall(r"\bon (n\d+)\b", headline))
