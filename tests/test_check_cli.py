"""``splitbrain check``: exit codes, output, bad input, run directories, options."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from checker_helpers import CORPUS

from checker.history import HistoryWriter, load_history
from checker.logorder import check_log_order, load_observations
from checker.runner import model_from_config, run_all
from harness.cli.main import main


def check(*args: str) -> int:
    return main(["check", *args])


def write_history(path: Path, events: list[dict[str, Any]]) -> Path:
    with HistoryWriter(path) as writer:
        for time, event in enumerate(events):
            writer.write({"time": time * 1000, **event})
    return path


def ev(process: Any, type_: str, f: str, value: Any = None, key: str = "k1") -> dict[str, Any]:
    return {"process": process, "type": type_, "f": f, "key": key, "value": value}


GOOD = [ev(0, "invoke", "write", 1), ev(0, "ok", "write", 1),
        {"process": "nemesis", "type": "info", "f": "start-partition", "value": "halves"},
        ev(1, "invoke", "cas", [1, 2]), ev(1, "ok", "cas", [1, 2]),
        ev(2, "invoke", "read"), ev(2, "ok", "read", 2)]
BAD = [*GOOD, ev(3, "invoke", "read"), ev(3, "ok", "read", 1)]


def test_exit_codes_and_text_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check(str(write_history(tmp_path / "good.jsonl", GOOD))) == 0
    assert capsys.readouterr().out.startswith("linearizable: valid")
    assert check(str(write_history(tmp_path / "bad.jsonl", BAD))) == 1
    out = capsys.readouterr().out
    assert "INVALID" in out and "cannot linearize op 3" in out
    assert "longest linearizable prefix: 3 operation(s)" in out


def test_json_output_has_the_result_shape(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert check(str(write_history(tmp_path / "bad.jsonl", BAD)), "--json") == 1
    result = json.loads(capsys.readouterr().out)
    assert result["valid"] is False and result["model"] == "raft-kv"
    assert result["partitions"] == 1 and result["ops"] == 4
    assert result["evidence"]["op"]["id"] == 3


def test_model_and_init_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "h.edn"
    path.write_text("{:process 0 :type :invoke :f :cas :value [0 1]}\n"
                    "{:process 0 :type :ok :f :cas :value [0 1]}\n")
    assert check(str(path), "--model", "cas-register", "--init", "0") == 0
    assert check(str(path), "--model", "cas-register", "--init", "3") == 1
    assert check(str(path)) == 1  # cas-register by default, starting from nil
    capsys.readouterr()
    assert check(str(path), "--init", "{oops") == 2
    assert "--init is not valid JSON" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        check(str(path), "--model", "nope")
    assert exc.value.code == 2


def test_timeout_gives_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    assert check(str(CORPUS / "etcd" / "etcd_099.log"), "--timeout", "0.000001") == 2
    out = capsys.readouterr().out
    assert out.startswith("linearizable: unknown") and "budget" in out
    assert check(str(CORPUS / "etcd" / "etcd_099.log"), "--timeout", "0") == 2
    assert "--timeout must be a number > 0" in capsys.readouterr().err


@pytest.mark.parametrize(("name", "text", "where", "fmt"), [
    ("bad.jsonl", '{"process": 0, "type": "invoke", "f": "read"}\n{"process": 0,\n', ":2:",
     "auto"),
    ("bad.edn", "{:process 0 :type :invoke :f :read}\n{:process 0 :type :ok :f :read\n",
     ":2:", "auto"),
    ("bad.log", "INFO  jepsen.util - 1\t:invoke\t:read\tnil\nINFO  jepsen.util - 1\t:ok\n",
     ":2:", "auto"),
    ("bad.txt", "{:process 0, :type :ok, :f :get, :key \"1\", :value \"\"}\n", ":1:",
     "porcupine-kv"),
    ("binary.jsonl", None, ":1:", "jsonl"),
    ("badcas.jsonl", '{"process": 0, "type": "invoke", "f": "cas", "key": "k", "value": 3}\n'
     '{"process": 0, "type": "ok", "f": "cas", "key": "k", "value": 3}\n', "cas needs", "auto"),
])
def test_malformed_input_is_a_clean_error(tmp_path: Path, name: str, text: str | None,
                                          where: str, fmt: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / name
    if text is None:
        path.write_bytes(b"\xff\xfe{garbage\n")
    else:
        path.write_text(text, encoding="utf-8")
    assert check(str(path), "--format", fmt) == 2
    err = capsys.readouterr().err
    assert err.startswith("splitbrain: error: ")
    assert where in err
    if where.startswith(":"):
        assert f"{path}{where}" in err


def test_malformed_input_from_the_real_entry_point_has_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"process": 0, "type": "invoke", "f": "read"}\n{"process": 0,\n')
    proc = subprocess.run([sys.executable, "-m", "harness", "check", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"splitbrain: error: {path}:2: not valid JSON")


def test_missing_path_and_plain_directory(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert check(str(tmp_path / "nothing.jsonl")) == 2
    assert "no such file" in capsys.readouterr().err
    assert check(str(tmp_path)) == 2
    assert "not a run directory" in capsys.readouterr().err


def make_run(tmp_path: Path, events: list[dict[str, Any]], config: dict | None = None) -> Path:
    run = tmp_path / "store" / "t" / "20260101T000000Z"
    run.mkdir(parents=True)
    write_history(run / "history.jsonl", events)
    (run / "test.json").write_text(json.dumps(config or {"workload": {"name": "register"}}))
    return run


def test_run_directory_is_rechecked_and_nothing_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run(tmp_path, BAD)
    before = sorted(p.name for p in run.iterdir())
    assert check(str(run)) == 1
    out = capsys.readouterr().out
    assert out.startswith("INVALID") and "linearizable: INVALID" in out
    assert sorted(p.name for p in run.iterdir()) == before
    result = run_all(run)
    assert result["valid"] is False
    assert set(result["checkers"]) == {"linearizable"}
    assert result["checkers"]["linearizable"]["model"] == "raft-kv"
    assert check(str(run), "--write-results") == 1
    written = json.loads((run / "results.json").read_text())
    assert written["checkers"]["linearizable"]["valid"] is False


def test_run_directory_uses_model_from_test_json(tmp_path: Path) -> None:
    assert model_from_config({}) == ("raft-kv", None)
    assert model_from_config({"checker": {"model": "cas-register", "init": 0}}) == (
        "cas-register", 0)
    events = [ev(0, "invoke", "cas", [0, 1]), ev(0, "ok", "cas", [0, 1])]
    run = make_run(tmp_path, events, {"model": "cas-register", "init": 0})
    assert run_all(run)["valid"] is True
    assert run_all(run, initial=7)["valid"] is False
    assert run_all(run, model="raft-kv")["valid"] is False  # raft-kv starts from null


def test_run_directory_with_observations_runs_log_order(tmp_path: Path) -> None:
    run = make_run(tmp_path, GOOD)
    records = [
        {"time": 1, "node": "n1", "kind": "log", "commit": 1, "snapshot_index": 0,
         "snapshot_term": 0, "entries": [{"index": 1, "term": 1, "client": None, "seq": None,
                                          "digest": "a"}]},
        {"time": 2, "node": "n2", "kind": "log", "commit": 1, "snapshot_index": 0,
         "snapshot_term": 0, "entries": [{"index": 1, "term": 1, "client": None, "seq": None,
                                          "digest": "b"}]},
    ]
    (run / "observations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    result = run_all(run)
    assert set(result["checkers"]) == {"linearizable", "log-order", "node-complaints"}
    # Nothing could complain in these crafted observations (no pushes, no test.json
    # saying what was watched): unknown, and advisory so it does not decide the verdict.
    assert result["checkers"]["node-complaints"]["valid"] == "unknown"
    assert "node-complaints" in result["advisory"]
    direct = check_log_order(load_observations(run / "observations.jsonl"),
                             load_history(run / "history.jsonl"))
    assert result["checkers"]["log-order"]["valid"] == direct["valid"]
    assert result["checkers"]["linearizable"]["valid"] is True


def test_edn_export(tmp_path: Path) -> None:
    source = write_history(tmp_path / "good.jsonl", GOOD)
    out = tmp_path / "out.edn"
    assert check(str(source), "--edn-out", str(out)) == 0
    assert check(str(out), "--model", "raft-kv") == 0
    again = load_history(out)
    assert [(o.f, o.key, o.value, o.output) for o in again.ops] == [
        (o.f, o.key, o.value, o.output) for o in load_history(source).ops]


def test_report_hook(tmp_path: Path) -> None:
    source = write_history(tmp_path / "bad.jsonl", BAD)
    assert check(str(source), "--report", str(tmp_path / "r.html")) == 1
    assert (tmp_path / "r.html").read_text().lstrip().lower().startswith("<!doctype html")


def test_recheck_of_a_run_whose_faults_failed_is_unknown_not_valid(tmp_path: Path) -> None:
    """A run records faults that could not be applied in test.json; re-checking it must
    not turn the run's `unknown` into `valid` (it did: only the run itself demoted it)."""
    failed = ["partition (schedule at 0.5 s): --net none has no link faults"]
    run = make_run(tmp_path, GOOD, {"workload": {"name": "register"}, "fault_errors": failed})
    result = run_all(run)
    assert result["valid"] == "unknown" and result["fault_errors"] == failed
    assert "could not be applied" in result["reason"]
    assert check(str(run)) == 2
    bad = make_run(tmp_path / "bad", BAD, {"workload": {"name": "register"},
                                           "fault_errors": failed})
    assert check(str(bad)) == 1  # a violation found anyway stays a violation


def test_text_output_names_the_anomaly_as_the_report_does(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`check` printed only the search's culprit ("cannot linearize … write 1") for a read
    of a value nobody wrote; it now ends with the report's headline, for a file and for
    a run directory re-checked without its results.json."""
    events = [ev(0, "invoke", "write", 1), ev(0, "ok", "write", 1),
              ev(1, "invoke", "read"), ev(1, "ok", "read", 2)]
    assert check(str(write_history(tmp_path / "never.jsonl", events))) == 1
    out = capsys.readouterr().out
    assert "evidence: Value never written: process 1 read k1 → 2" in out
    run = make_run(tmp_path, events)
    assert check(str(run)) == 1
    assert "evidence: Value never written: process 1 read k1 → 2" in capsys.readouterr().out
    assert check(str(write_history(tmp_path / "good.jsonl", GOOD))) == 0
    assert "evidence:" not in capsys.readouterr().out
