"""The command line under hostile or careless use (issue 16): streams, empty and torn
histories, unwritable outputs, nonsense numbers, unexpected errors.

Every case ends in a verdict the input supports, or one line on stderr and exit 2:
never a traceback, never exit 1 for something that is not an invalid history.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from checker.history import HistoryWriter, load_history
from harness.cli.main import main
from reports import model as report_model

REPO = Path(__file__).resolve().parents[1]


def ev(process: Any, type_: str, f: str, value: Any = None, key: str = "k1") -> dict[str, Any]:
    return {"process": process, "type": type_, "f": f, "key": key, "value": value}


#: Invalid as a file: an acknowledged write of 1 to k1, then a read of k1 returning 2.
BAD = [ev(0, "invoke", "write", 1), ev(0, "ok", "write", 1),
       ev(0, "invoke", "read"), ev(0, "ok", "read", 2)]
GOOD = [ev(0, "invoke", "write", 1), ev(0, "ok", "write", 1),
        ev(1, "invoke", "read"), ev(1, "ok", "read", 1)]


def jsonl(events: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(e) + "\n" for e in events)


def write_history(path: Path, events: list[dict[str, Any]]) -> Path:
    with HistoryWriter(path) as writer:
        for time, event in enumerate(events):
            writer.write({"time": time * 1000, **event})
    return path


def make_run_dir(root: Path, events: list[dict[str, Any]]) -> Path:
    run = root / "run"
    run.mkdir()
    write_history(run / "history.jsonl", events)
    (run / "test.json").write_text(json.dumps({"name": "hostile", "nodes": 3}) + "\n")
    return run


def one_line_error(err: str) -> str:
    """The single stderr line of a refused command (and that there was only one)."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# ---------------------------------------------------------------------------
# 1, 2: streams are read once; an empty history checks nothing


def test_stdin_dash_is_read_once(monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(jsonl(BAD).encode())))
    assert main(["check", "-"]) == 1
    assert "INVALID" in capsys.readouterr().out


def test_dev_stdin_pipe_gives_the_same_verdict_as_the_file() -> None:
    for name in ("/dev/stdin", "-"):
        done = subprocess.run([sys.executable, "-m", "harness", "check", name],
                              input=jsonl(BAD), capture_output=True, text=True, cwd=REPO,
                              timeout=120)
        assert done.returncode == 1, (name, done.stdout, done.stderr)
        assert "INVALID" in done.stdout and "Traceback" not in done.stderr


def test_fifo_is_read_once(tmp_path: Path) -> None:
    """``check <(cat bad.jsonl)``: a pipe that can be read only once (opening it a
    second time would wait for a writer forever, hence the timeout)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    checker = subprocess.Popen([sys.executable, "-m", "harness", "check", str(fifo)],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        with fifo.open("w") as pipe:  # blocks until the checker opened its end
            pipe.write(jsonl(BAD))
        out, err = checker.communicate(timeout=120)
    finally:
        if checker.poll() is None:
            checker.kill()
            checker.wait()
    assert checker.returncode == 1, (out, err)
    assert "INVALID" in out


@pytest.mark.parametrize("content", ["", "\n\n", '{"process": "nemesis", "type": "info", '
                                                   '"f": "start-partition", "value": null}\n'])
def test_a_history_without_operations_checks_nothing(tmp_path: Path, content: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    for name in (str(path), os.devnull):
        assert main(["check", name]) == 2
        err = one_line_error(capsys.readouterr().err)
        assert "nothing was checked" in err


def test_a_run_directory_without_operations_is_not_valid(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run_dir(tmp_path, [])
    assert main(["check", str(run)]) == 2
    assert "checked nothing" in capsys.readouterr().err


def _verdict_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.strip().endswith(("valid", "VALID"))]


@pytest.mark.parametrize("as_run", [True, False])
def test_a_vacuous_check_never_prints_or_writes_valid(
        tmp_path: Path, as_run: bool, capsys: pytest.CaptureFixture[str]) -> None:
    """Exit 2 alone is not enough: the text, --json and results.json said "valid"
    (a run directory with no operation, a file of only reads of unknown outcome)."""
    events = [] if as_run else [ev(0, "invoke", "read"), ev(0, "info", "read")]
    if as_run:
        target = make_run_dir(tmp_path, events)
        extra = ["--write-results"]
    else:
        target = write_history(tmp_path / "h.jsonl", events)
        extra = []
    assert main(["check", str(target), *extra]) == 2
    captured = capsys.readouterr()
    assert "checked nothing" in one_line_error(captured.err)
    assert captured.out.splitlines()[0].strip() == "unknown" or \
        captured.out.splitlines()[0].endswith(": unknown")
    assert not _verdict_lines(captured.out), captured.out
    assert main(["check", str(target), "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["valid"] == "unknown"
    if as_run:
        assert json.loads((target / "results.json").read_text())["valid"] == "unknown"


# ---------------------------------------------------------------------------
# 3, 8: outputs that cannot be written are refused before the check, in one line


def test_report_to_a_directory_is_refused_and_leaves_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run_dir(tmp_path, GOOD)
    some_dir = tmp_path / "some_dir"
    some_dir.mkdir()
    for target in (f"{some_dir}/", str(some_dir)):
        assert main(["check", str(run), "--report", target]) == 2
        assert "is a directory" in one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "some_dir.tmp").exists()
    assert list(some_dir.iterdir()) == []


def test_an_output_directory_gets_a_file_name_of_its_kind(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--edn-out DIR suggested DIR/report.html: an EDN history in an HTML name."""
    run = make_run_dir(tmp_path, GOOD)
    for option, name in (("--report", "report.html"), ("--edn-out", "history.edn")):
        assert main(["check", str(run), option, str(tmp_path)]) == 2
        assert one_line_error(capsys.readouterr().err).endswith(str(tmp_path / name))


def test_report_into_a_missing_directory_creates_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    history = write_history(tmp_path / "h.jsonl", GOOD)
    missing = tmp_path / "nonexistent"
    assert main(["check", str(history), "--report", str(missing / "x.html")]) == 2
    assert "no such directory" in one_line_error(capsys.readouterr().err)
    assert not missing.exists()


def test_unwritable_edn_out_and_results_are_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run_dir(tmp_path, GOOD)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert main(["check", str(run), "--edn-out", str(a_file / "h.edn")]) == 2
    assert "not a directory" in one_line_error(capsys.readouterr().err)
    (run / "results.json").mkdir()  # the filesystem will refuse the write
    assert main(["check", str(run), "--write-results"]) == 2
    assert "results.json" in one_line_error(capsys.readouterr().err)


def test_report_on_a_run_dir_that_refuses_the_write(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run_dir(tmp_path, GOOD)
    (run / "report.html.tmp").mkdir()  # writing the report's temporary file fails
    assert main(["report", str(run)]) == 2
    assert "cannot write the report" in one_line_error(capsys.readouterr().err)
    assert not (run / "report.html").exists()


def test_write_failure_during_rendering_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Disk full while the report is written: no traceback, no temporary file left."""
    history = write_history(tmp_path / "h.jsonl", GOOD)
    real_write_text = Path.write_text

    def full_disk(self: Path, *args: Any, **kwargs: Any) -> int:
        if self.name.endswith(".tmp"):
            real_write_text(self, "partial")
            raise OSError(28, "No space left on device")
        return real_write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_disk)
    out = tmp_path / "r.html"
    assert main(["check", str(history), "--report", str(out)]) == 2
    assert "No space left on device" in one_line_error(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.jsonl"]


def test_report_on_a_garbage_history_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run_dir(tmp_path, [])
    for garbage in (b"garbage", b"\x00\xff\xfe binary", b"not json\nat all\n", b"{torn"):
        (run / "history.jsonl").write_bytes(garbage)
        assert main(["report", str(run)]) == 2, garbage
        one_line_error(capsys.readouterr().err)
        assert not (run / "report.html").exists()


# ---------------------------------------------------------------------------
# 3, 6: numbers


@pytest.mark.parametrize("argv", [
    ["--timeout", "nan"], ["--timeout", "inf"], ["--timeout", "-1"],
    ["--memory", "nan"], ["--memory", "0"],
])
def test_check_refuses_nonsense_numbers(tmp_path: Path, argv: list[str],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    history = write_history(tmp_path / "h.jsonl", GOOD)
    assert main(["check", str(history), *argv]) == 2
    assert argv[0] in one_line_error(capsys.readouterr().err)


# ---------------------------------------------------------------------------
# 3: unexpected errors


def test_an_unexpected_error_is_one_line_and_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.cli.check

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the checker fell over\nsecond line")

    monkeypatch.setattr(harness.cli.check, "check_history", broken)
    history = str(write_history(tmp_path / "h.jsonl", GOOD))
    monkeypatch.delenv("SPLITBRAIN_DEBUG", raising=False)
    assert main(["check", history]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert "RuntimeError: the checker fell over" in line and "--debug" in line
    # asked for, the traceback comes (flag before or after the subcommand, or env)
    for argv in (["--debug", "check", history], ["check", history, "--debug"]):
        assert main(argv) == 2
        assert "Traceback" in capsys.readouterr().err
    monkeypatch.setenv("SPLITBRAIN_DEBUG", "1")
    assert main(["check", history]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_help_documents_debug(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--debug" in out and "SPLITBRAIN_DEBUG" in out


# ---------------------------------------------------------------------------
# 7: one reader, one rule for a torn last line


def test_torn_last_line_check_and_report_agree(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run_dir(tmp_path, GOOD)
    history = run / "history.jsonl"
    whole = history.read_text()
    history.write_text(whole + '{"index": 4, "process": 2, "type": "inv')  # crash mid-write
    assert main(["check", str(run)]) == 0
    err = capsys.readouterr().err
    assert "history.jsonl:5: the last line is torn" in err
    assert main(["check", str(run), "--json"]) == 0
    assert "torn" in json.loads(capsys.readouterr().out)["notes"][0]
    assert main(["report", str(run)]) == 0
    assert (run / "report.html").is_file()
    # both read the same four complete events
    assert len(report_model.read_jsonl(history)) == 4
    assert len(load_history(history).events()) == 4


def test_torn_last_observation_check_and_report_agree(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same rule for observations.jsonl: check refused the run ('not valid JSON')
    that report rendered, as a full disk leaves it; a complete bad line still refuses."""
    run = make_run_dir(tmp_path, GOOD)
    observations = run / "observations.jsonl"
    role = {"time": 1, "node": "n1", "kind": "role", "term": 1, "role": "leader",
            "leader": "n1"}
    whole = json.dumps(role) + "\n"
    observations.write_text(whole)
    complete = main(["check", str(run), "--json"])
    expected = json.loads(capsys.readouterr().out)["valid"]
    observations.write_text(whole + '{"time": 2, "node": "n1", "ki')
    assert main(["check", str(run)]) == complete
    err = capsys.readouterr().err
    assert "observations.jsonl:2: the last line is torn" in err and "error" not in err
    assert main(["check", str(run), "--json"]) == complete
    assert json.loads(capsys.readouterr().out)["valid"] == expected
    assert main(["check", str(run), "--json"]) == complete
    assert any("observations.jsonl:2" in n for n in json.loads(capsys.readouterr().out)["notes"])
    assert main(["report", str(run)]) == 0
    observations.write_text(whole + "garbage\n")
    assert main(["check", str(run)]) == 2
    assert "observations.jsonl:2: not valid JSON" in one_line_error(capsys.readouterr().err)


# ---------------------------------------------------------------------------
# 9: messages say what is wrong, where


def test_jsonl_of_a_json_array_names_the_line(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text("[1,2,3]\n")
    assert main(["check", str(path)]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert f"{path}:1: " in line and "JSON object" in line and "EDN" not in line


# ---------------------------------------------------------------------------
# 10: any EDN layout

EDN_EVENTS = [
    "{:process 0, :type :invoke, :f :write, :value 1}",
    "{:process 0, :type :ok, :f :write, :value 1}",
    "{:process 1, :type :invoke, :f :read, :value nil}",
    "{:process 1, :type :ok, :f :read, :value 1}",
]


def edn_ops(path: Path) -> list[dict[str, Any]]:
    return [op.to_dict() for op in load_history(path).ops]


@pytest.mark.parametrize("layout", [
    # a top-level vector spread over lines, with comments
    "; a Knossos history\n[\n" + "\n".join(EDN_EVENTS) + "\n]\n",
    # a list, elements separated by commas and comments
    "(" + ",\n ; note\n".join(EDN_EVENTS) + ")",
    # maps spread over lines
    "\n".join(e.replace(", ", "\n  ") for e in EDN_EVENTS) + "\n",
    # several maps on one line (the library alone keeps only the first), trailing comments
    " ".join(EDN_EVENTS[:2]) + " ; two\n" + "\n".join(EDN_EVENTS[2:]) + " ; end\n",
    # a discarded form makes the reader hand the whole text to the library
    "#_ {:process 9}\n" + "\n".join(EDN_EVENTS) + "\n",
    # Jepsen's and Knossos's record literals: the tagged map is the event
    "\n".join("#jepsen.history.Op" + e for e in EDN_EVENTS) + "\n",
    "[" + "\n".join("#knossos.op.Op" + e for e in EDN_EVENTS) + "]\n",
])
def test_every_edn_layout_reads_the_same(tmp_path: Path, layout: str) -> None:
    plain = tmp_path / "plain.edn"
    plain.write_text("\n".join(EDN_EVENTS) + "\n")
    other = tmp_path / "other.edn"
    other.write_text(layout)
    expected = edn_ops(plain)
    assert len(expected) == 2
    assert edn_ops(other) == expected


@pytest.mark.parametrize(("text", "line", "message"), [
    ("[\n{:process 0 :type :invoke :f :read}\n 3\n]", 3, "must be an EDN map, got 3"),
    ("[\n{:process 0 :type :invoke :f :read}\n{:process 0\n :type :ok :f :read]\n]", 4,
     "unexpected ']'"),
    ("[\n{:process 0 :type :invoke :f :read}\n", 1, "never closed"),
    ("{:process 0 :type :invoke :f :read}\n{:process 0\n :value \"x}\n", 3,
     "string that never ends"),
    ("[{:process 0 :type :invoke :f :read}] [{:process 1}]", 1, "after the history's vector"),
    ("{:process 0 :type :invoke :f :read}\n\n{:process 0 :type}\n", 3, "not valid EDN"),
    ("{:process 0 :type :invoke :f :read}\n{:process 0 :type :ok :f :read :value [1 2}\n", 2,
     "not valid EDN"),
])
def test_edn_errors_name_their_line(tmp_path: Path, text: str, line: int, message: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.edn"
    path.write_text(text)
    assert main(["check", str(path)]) == 2
    err = one_line_error(capsys.readouterr().err)
    assert f"bad.edn:{line}: " in err and message in err


# ---------------------------------------------------------------------------
# 3, 6, 9: fuzz, replay and run refuse nonsense in one line


@pytest.mark.parametrize(("argv", "blamed"), [
    (["--max-faults", "-1"], "--max-faults"),
    (["--shrink-seconds", "nan"], "--shrink-seconds"),
    (["--shrink-seconds=-inf"], "--shrink-seconds"),
    (["--time-limit", "nan"], "--time-limit"),  # was blamed on a schedule entry
    (["--time-limit", "inf"], "--time-limit"),
    (["--search-seconds", "nan"], "--search-seconds"),
])
def test_fuzz_refuses_nonsense_numbers(tmp_path: Path, argv: list[str], blamed: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fuzz", *argv, "--examples", "1", "--store", str(tmp_path), "--quiet"]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert blamed in line and "schedule" not in line
    assert not any(tmp_path.iterdir())


def repro(tmp_path: Path, **changes: Any) -> Path:
    data: dict[str, Any] = {"name": "hostile", "seed": 1, "cluster": {"nodes": 3},
                            "workload": {"time_limit": 3.0}, "schedule": []}
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        target = data
        for parent in parents:
            target = target[parent]
        target[last] = value
    path = tmp_path / "repro.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(("changes", "message"), [
    ({"schedule": "oops"}, "'schedule' must be a list"),
    ({"schedule": [{"at": "soon", "f": "kill", "value": "one"}]}, "at must be a number"),
    ({"cluster__nodes": 1_000_000_000}, "cluster.nodes must be between 1 and 9"),
    ({"cluster__nodes": "3"}, "cluster.nodes must be an integer"),
    ({"workload__concurrency": 10**9}, "workload.concurrency must be between"),
    ({"workload__time_limit": "3"}, "workload.time_limit must be a number"),
    ({"workload__mix": {"read": "x"}}, "workload.mix must be a number"),
    ({"cluster__latency": [1]}, "cluster.latency must be a pair"),
    ({"cluster__pre_vote": 1}, "cluster.pre_vote must be true or false"),
    ({"seed": "one"}, "'seed' must be an integer"),
    ({"workload": []}, "'workload' must be a JSON object"),
    ({"expect": "oops"}, "'expect' must be a JSON object"),
    # entries the run never reaches (a 3 s test): refused, not idled on or never ended
    ({"schedule": [{"at": 100, "f": "kill", "value": "one"}]}, "after the workload's time"),
    ({"schedule": [{"at": 1e308, "f": "kill", "value": "one"}]}, "after the workload's time"),
])
def test_replay_refuses_a_damaged_repro_in_one_line(
        tmp_path: Path, changes: dict[str, Any], message: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = repro(tmp_path, **changes)
    store = tmp_path / "store"
    assert main(["replay", str(path), "--store", str(store)]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert message in line, line
    assert "not supported between" not in line
    assert not store.exists()


def test_replay_of_a_directory_uses_its_repro(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["replay", str(empty)]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert "directory without a repro.json" in line and "no such file" not in line
    repro(tmp_path, schedule="oops")  # tmp_path/repro.json: read, and refused for its content
    assert main(["replay", str(tmp_path)]) == 2
    assert "'schedule' must be a list" in one_line_error(capsys.readouterr().err)


@pytest.mark.parametrize("at", [100, 1e308])
def test_run_refuses_schedule_entries_after_the_time_limit(
        tmp_path: Path, at: float, capsys: pytest.CaptureFixture[str]) -> None:
    schedule = tmp_path / "s.json"
    schedule.write_text(json.dumps([{"at": 1, "f": "kill", "value": "one"},
                                    {"at": at, "f": "kill", "value": "one"}]))
    store = tmp_path / "store"
    assert main(["run", "--nodes", "3", "--time-limit", "3", "--nemesis-schedule",
                 str(schedule), "--store", str(store), "--no-display"]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert "after --time-limit (3 s)" in line and f"{at:g}" in line
    assert not store.exists()


@pytest.mark.parametrize("process", [[1], {"a": 1}])
def test_an_unhashable_process_is_bad_input_not_an_internal_error(
        tmp_path: Path, process: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """A list as process id was "TypeError: unhashable type" (an internal error)."""
    path = tmp_path / "h.jsonl"
    path.write_text(jsonl([ev(process, "invoke", "write", 1), ev(process, "ok", "write", 1)]))
    assert main(["check", str(path)]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert "h.jsonl:1: process must be" in line and "TypeError" not in line


def _catches_sigterm(pid: int) -> bool:
    """Whether the process has installed a SIGTERM handler (its /proc status says)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (15 - 1)))
    return False


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_sigterm_stops_check_with_exit_2_not_the_signals_death() -> None:
    """`check` killed by SIGTERM exited 143 (-15), outside the 0/1/2 contract."""
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-m", "harness", "check", "-"], cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not _catches_sigterm(proc.pid):  # the handler is in: now it must be used
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)  # check is blocked reading the open stdin
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2
    assert one_line_error(err) == "splitbrain: interrupted"


@pytest.mark.skipif(not hasattr(os, "statvfs"), reason="needs statvfs")
@pytest.mark.parametrize(("flags", "said"), [(os.ST_RDONLY, "read-only file system"),
                                             (0, "permission denied")])
def test_an_unwritable_output_says_whether_the_mount_is_read_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags: int, said: str) -> None:
    """A run directory on a read-only mount was refused as 'permission denied'
    (as root, chmod is no test of this: root writes anyway; a real read-only mount is)."""
    from harness.cli.main import check_output_path
    from splitbrain_common.errors import UserError

    class Stat:
        f_flag = flags

    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    monkeypatch.setattr(os, "statvfs", lambda path: Stat())
    with pytest.raises(UserError, match=said):
        check_output_path(str(tmp_path / "results.json"), "--write-results")
