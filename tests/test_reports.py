"""Reports: the facts they derive, the self-contained page, the store index and the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from report_fixtures import make_run, planted_read

from harness.cli.main import main
from reports import model
from reports.render import render_history_report, render_run_report, update_store_index

NS = 1_000_000_000
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "porcupine"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    store = tmp_path_factory.mktemp("store")
    return {kind: make_run(store, kind, duration_s=4.0)
            for kind in ("valid", "stale-read", "log-divergence")}


def _ev(time: int, process, kind: str, f: str, **more) -> dict:
    return {"time": time, "process": process, "type": kind, "f": f, **more}


# ---------------------------------------------------------------- facts


def test_pairs_invocations_with_completions_per_process() -> None:
    history = model.build_history([
        _ev(0, 0, "invoke", "write", key="a", value=1),
        _ev(1, 1, "invoke", "read", key="a"),
        _ev(2, 0, "ok", "write", key="a", value=1),
        _ev(3, 1, "info", "read", key="a", error="timeout"),
        _ev(4, 2, "invoke", "cas", key="a", value=[1, 2]),
    ])
    write, read, cas = history.ops
    assert (write.result, write.start, write.end) == ("ok", 0, 2)
    assert (read.result, read.error, read.end) == ("info", "timeout", 3)
    assert cas.result == "pending" and cas.end is None
    assert "never returned" in cas.describe()


def test_fault_intervals_pair_starts_with_stops_per_node() -> None:
    nemesis = [
        _ev(10, "nemesis", "info", "start-partition",
            value={"grudge": {"n1": ["n2", "n3"], "n2": ["n1"], "n3": ["n1"]}}),
        _ev(20, "nemesis", "info", "kill", value=["n2"]),
        _ev(25, "nemesis", "info", "kill", value=["n3"]),
        _ev(30, "nemesis", "info", "start", value=["n2"]),
        _ev(40, "nemesis", "info", "stop-partition", value=None),
        _ev(50, "nemesis", "info", "pause", value=["n1"]),
    ]
    faults = model.fault_intervals(nemesis, end=100)
    spans = {(f.kind, f.start): f.end for f in faults}
    assert spans == {("partition", 10): 40, ("kill", 20): 30, ("kill", 25): None,
                     ("pause", 50): None}
    assert faults[0].label == "partition n1 | n2 n3"
    assert faults[0].overlaps(39, 45) and not faults[0].overlaps(41, 45)


def test_partition_that_is_not_clean_groups_is_listed_link_by_link() -> None:
    bridge = {"n1": ["n3"], "n2": [], "n3": ["n1"]}  # n2 talks to both: no clean groups
    label = model.describe_fault("partition", {"grudge": bridge, "description": "bridge"})
    assert label == "partition: n1 hears nothing from n3; n3 hears nothing from n1 (bridge)"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1000), st.floats(0.001, 1e4)), max_size=3000),
       st.integers(1, 200))
def test_downsample_keeps_extremes_and_bounds_size(points, buckets) -> None:
    kept = model.downsample(sorted(points), buckets)
    assert len(kept) <= max(2 * buckets, len(points))
    assert set(kept) <= set(points)
    if points:
        assert max(p[1] for p in kept) == max(p[1] for p in points)
        assert min(p[1] for p in kept) == min(p[1] for p in points)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(
    ["start-partition", "stop-partition", "kill", "start", "pause", "resume", "start-loss",
     "stop-loss", "bump-clock", "reset-clock"]), st.sampled_from(["n1", "n2"])), max_size=40))
def test_fault_intervals_are_ordered_and_inside_the_run(events) -> None:
    nemesis = [_ev(t, "nemesis", "info", f, value=[node]) for t, f, node in sorted(events)]
    for fault in model.fault_intervals(nemesis, end=10_000):
        assert 0 <= fault.start <= (fault.end if fault.end is not None else 10_000) <= 10_000


def _ops(*spec) -> model.History:
    """History from (process, f, value, start, end, result, out) tuples on key "k"."""
    events = []
    for process, f, value, start, end, result, out in spec:
        events.append(_ev(start, process, "invoke", f, key="k", value=value))
        events.append(_ev(end, process, result, f, key="k", value=out if f == "read" else value))
    return model.build_history(sorted(events, key=lambda e: e["time"]))


def test_fault_labels_starting_together_get_their_own_rows() -> None:
    from reports.svg import Marked, window_svg

    history = _ops((0, "write", 1, 0, 10, "ok", None))
    faults = [model.Fault("partition", 2, 8, "partition n1 | n2 n3"),
              model.Fault("pause", 2, 6, "pause n1 (the leader)")]
    svg = str(window_svg([Marked(history.ops[0], "failed")], faults, (0, 12)))
    rows = re.findall(r'class="fault-label" x="[\d.]+" y="([\d.]+)"', svg)
    assert len(rows) == 2 and rows[0] != rows[1]


def test_linearization_points_respect_order_and_intervals(runs) -> None:
    history = model.build_history(model.read_jsonl(runs["stale-read"] / "history.jsonl"))
    result = json.loads((runs["stale-read"] / "results.json").read_text())
    evidence = model.lin_evidence(history, result["checkers"]["linearizable"])
    assert evidence is not None and evidence.failed is not None and evidence.prefix
    points = [step.point for step in evidence.prefix]
    assert points == sorted(points)
    for step in evidence.prefix:
        assert step.op.start <= step.point
        if step.op.result == "ok":
            assert step.point <= step.op.end


def test_stale_read_is_explained_with_the_write_it_missed(runs) -> None:
    history = model.build_history(model.read_jsonl(runs["stale-read"] / "history.jsonl"))
    result = json.loads((runs["stale-read"] / "results.json").read_text())
    evidence = model.lin_evidence(history, result["checkers"]["linearizable"])
    focus = model.explain_lin_failure(history, evidence)
    planted = planted_read(runs["stale-read"])
    failed = focus.failed
    assert (failed.process, failed.key, failed.out, failed.start) == (
        planted["process"], planted["key"], planted["value"], planted["start"])
    assert focus.missed is not None and focus.missed.end < failed.start
    assert model.writes_value(focus.missed) != failed.out
    assert [f.kind for f in focus.faults] == ["partition"]
    assert focus.headline.startswith("Stale read")


def test_log_view_highlights_the_diverging_entry(runs) -> None:
    rows = model.read_jsonl(runs["log-divergence"] / "observations.jsonl")
    view = model.log_view(rows)
    assert view is not None and view.diverging_index is not None
    assert view.differing == {("n3", view.diverging_index)}
    assert view.diverging_index in view.indices


# ---------------------------------------------------------------- pages


def _text(html: str) -> str:
    """The page's visible text, roughly: tags out, whitespace squeezed."""
    body = re.sub(r"<script.*?</script>|<style.*?</style>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body))


def assert_self_contained(html: str) -> None:
    assert not re.search(r"""<(script|link|img|iframe)[^>]+(src|href)=["']?(https?:)?//""", html)
    assert "@import" not in html and "url(http" not in html


def test_stale_read_report_names_op_missed_write_and_partition_first(runs) -> None:
    path = render_run_report(runs["stale-read"])
    html = path.read_text()
    assert_self_contained(html)
    failure = _text(html.split('id="failure"', 1)[1].split('id="verdicts"', 1)[0])
    op = planted_read(runs["stale-read"])
    assert f"process {op['process']}: read {op['key']} → {op['value']}" in failure
    assert "The newer write it missed" in failure and "acknowledged" in failure
    assert "partition n1 | n2 n3 n4 n5" in failure
    assert html.index('id="failure"') < html.index('id="timeline"')  # first screen
    assert 'class="op role-failed"' in html and 'class="op role-missed"' in html
    assert "Longest linearizable prefix" in html and "cannot be placed" in html
    assert 'class="sequence"' in html and "[drop]" in html  # messages around the anomaly
    assert "became leader term=3" in html  # node log lines of that moment
    assert "splitbrain run --nodes 5" in html and "--bug stale-leader-read" in html


def test_valid_report_has_no_failure_section(runs) -> None:
    html = render_run_report(runs["valid"]).read_text()
    assert_self_contained(html)
    assert 'id="failure"' not in html
    assert '<span class="badge" id="verdict">valid</span>' in html
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', html, re.S).group(1))
    ops = json.loads((runs["valid"] / "results.json").read_text())["checkers"]
    assert len(data["timeline"]["ops"]["id"]) >= ops["linearizable"]["ops"]
    assert [f["kind"] for f in data["faults"]] == ["partition", "kill"]


def test_log_divergence_report_shows_logs_side_by_side(runs) -> None:
    html = render_run_report(runs["log-divergence"]).read_text()
    failure = html.split('id="failure"', 1)[1].split('id="verdicts"', 1)[0]
    assert "log-agreement" in failure and "committed as different entries" in failure
    assert failure.count('class="differs') == 1 and 'class="diverging"' in failure


def test_interrupted_run_renders_with_what_it_has(tmp_path: Path) -> None:
    """A run killed mid-write: torn last history line, no results, no side files."""
    run_dir = tmp_path / "store" / "t" / "20260101T000000Z"
    run_dir.mkdir(parents=True)
    lines = [json.dumps(_ev(0, 0, "invoke", "write", key="a", value=1)),
             json.dumps(_ev(5, 0, "ok", "write", key="a", value=1)),
             '{"time": 9, "process": 1, "type": "inv']
    (run_dir / "history.jsonl").write_text("\n".join(lines))
    html = render_run_report(run_dir).read_text()
    assert '<span class="badge" id="verdict">unknown</span>' in html
    assert "results.json missing" in html and "1 operations" in html


def test_history_report_of_a_run_history_is_the_full_run_report(runs, tmp_path) -> None:
    result = json.loads((runs["stale-read"] / "results.json").read_text())
    out = render_history_report(runs["stale-read"] / "history.jsonl", result,
                                tmp_path / "check.html", title="check")
    html = out.read_text()
    assert 'id="messages"' in html and 'id="stderr"' in html and "--bug stale-leader-read" in html


def test_history_report_from_a_porcupine_file(tmp_path: Path) -> None:
    source = CORPUS / "etcd" / "etcd_000.log"
    if not source.is_file():
        pytest.skip(f"corpus not found at {CORPUS}")
    from checker.history import load_history
    from checker.linearizable import check_history

    history = load_history(source)
    result = check_history(history, timeout=30)
    out = render_history_report(history, {"valid": result["valid"],
                                          "checkers": {"linearizable": result}},
                                tmp_path / "etcd.html", title="etcd_000")
    html = out.read_text()
    assert_self_contained(html)
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', html, re.S).group(1))
    assert len(data["timeline"]["ops"]["id"]) == len(history.ops)
    if result["valid"] is False:
        assert 'id="failure"' in html and "Longest linearizable prefix" in html


def test_store_index_lists_runs_with_verdicts_and_links(runs) -> None:
    store = runs["valid"].parent.parent
    for run_dir in runs.values():
        render_run_report(run_dir)
    index = update_store_index(store).read_text()
    for kind, run_dir in runs.items():
        assert f"raft-kv-{kind}" in index
        assert (run_dir.relative_to(store) / "report.html").as_posix() in index
    assert index.count(">INVALID<") == 2 and index.count(">valid<") == 1
    assert "<td>partition, kill</td>" not in index and "<td>kill, partition</td>" in index


def test_cli_report_renders_and_refuses_bad_input(runs, tmp_path: Path, capsys) -> None:
    (runs["valid"] / "report.html").unlink(missing_ok=True)
    assert main(["report", str(runs["valid"])]) == 0
    assert (runs["valid"] / "report.html").is_file()
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert main(["report", str(tmp_path)]) == 2
    assert "no history.jsonl" in capsys.readouterr().err


def test_large_history_renders_compactly(tmp_path: Path) -> None:
    events = []
    for i in range(20_000):
        t = i * 3_000_000
        events.append(_ev(t, i % 10, "invoke", "write", key=f"k{i % 5}", value=i))
        events.append(_ev(t + 2_000_000, i % 10, "ok", "write", key=f"k{i % 5}", value=i))
    out = render_history_report(events, None, tmp_path / "big.html", title="big")
    size = out.stat().st_size
    assert size < 1_200_000, size  # ~50 bytes an op, plots downsampled
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', out.read_text(),
                                re.S).group(1))
    assert sum(len(s["t"]) for s in data["latency"]) <= 2 * 600
