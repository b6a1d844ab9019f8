"""``splitbrain check FILE --model list-append|rw-register``: our JSONL and Jepsen EDN."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli.main import main

# T0 appends x 1 and reads y empty; T1 appends y 1 and reads x empty; T2 reads both:
# write skew (G2-item), one EDN map a line as Jepsen writes it.
SKEW_EDN = """\
{:type :invoke, :f :txn, :value [[:append :x 1] [:r :y nil]], :process 0, :time 1, :index 0}
{:type :invoke, :f :txn, :value [[:append :y 1] [:r :x nil]], :process 1, :time 2, :index 1}
{:type :ok, :f :txn, :value [[:append :x 1] [:r :y []]], :process 0, :time 3, :index 2}
{:type :ok, :f :txn, :value [[:append :y 1] [:r :x []]], :process 1, :time 4, :index 3}
{:type :invoke, :f :txn, :value [[:r :x nil] [:r :y nil]], :process 0, :time 5, :index 4}
{:type :ok, :f :txn, :value [[:r :x [1]] [:r :y [1]]], :process 0, :time 6, :index 5}
"""


def test_edn_lines_write_skew_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "skew.edn"
    path.write_text(SKEW_EDN, encoding="utf-8")
    assert main(["check", str(path), "--model", "list-append"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("transactional: INVALID")
    assert "G2-item: 1 found" in out and "rw:" in out


def test_edn_vector_layout_and_json_output(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The same history as one EDN vector over several lines, commas and all."""
    path = tmp_path / "skew.edn"
    path.write_text("[\n" + SKEW_EDN.replace("}\n", "},\n") + "]\n", encoding="utf-8")
    assert main(["check", str(path), "--model", "list-append", "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["anomaly_types"] == ["G2-item"]
    assert [s["key"] for s in result["anomalies"]["G2-item"][0]["steps"]] in (["x", "y"],
                                                                              ["y", "x"])


def test_jsonl_register_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = [
        {"process": 0, "type": "invoke", "f": "txn", "value": [["w", "x", 1]]},
        {"process": 0, "type": "ok", "f": "txn", "value": [["w", "x", 1]]},
        {"process": 1, "type": "invoke", "f": "txn", "value": [["r", "x", None]]},
        {"process": 1, "type": "ok", "f": "txn", "value": [["r", "x", 1]]},
    ]
    path = tmp_path / "history.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    assert main(["check", str(path), "--model", "rw-register"]) == 0
    assert capsys.readouterr().out.startswith("transactional: valid")
    # a stale read after the write completed: not strict-serializable
    events[3]["value"] = [["r", "x", None]]
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    assert main(["check", str(path), "--model", "rw-register"]) == 1
    assert "G-single-realtime" in capsys.readouterr().out


def test_run_directory_with_a_txn_model(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    events = [
        {"process": 0, "type": "invoke", "f": "txn", "value": [["append", "k", 1]]},
        {"process": 0, "type": "ok", "f": "txn", "value": [["append", "k", 1]]},
    ]
    (tmp_path / "history.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events),
                                            encoding="utf-8")
    (tmp_path / "test.json").write_text(json.dumps({"model": "list-append"}), encoding="utf-8")
    assert main(["check", str(tmp_path)]) == 0
    assert "transactional: valid" in capsys.readouterr().out


def test_a_history_the_model_cannot_read_is_unknown(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "h.edn"
    path.write_text(SKEW_EDN, encoding="utf-8")
    assert main(["check", str(path), "--model", "rw-register"]) == 2
    out = capsys.readouterr().out
    assert out.startswith("transactional: unknown") and "not a rw-register history" in out


def test_report_names_the_transactional_checker(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "skew.edn"
    path.write_text(SKEW_EDN, encoding="utf-8")
    out = tmp_path / "report.html"
    assert main(["check", str(path), "--model", "list-append", "--report", str(out)]) == 1
    html = out.read_text(encoding="utf-8")
    assert "transactional" in html and "G2-item: cycle T" in html
    assert "The dependency cycle" in html and ">rw x</text>" in html  # the drawing


def test_edn_maps_over_several_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Pretty-printed EDN (a map spread over lines, as fipp writes Jepsen histories)."""
    path = tmp_path / "pretty.edn"
    pretty = SKEW_EDN.replace(", :process", ",\n :process").replace(", :f", ",\n :f")
    assert pretty.count("\n") > SKEW_EDN.count("\n")
    path.write_text(pretty, encoding="utf-8")
    assert main(["check", str(path), "--model", "list-append", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["anomaly_types"] == ["G2-item"]
