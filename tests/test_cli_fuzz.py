"""Hypothesis fuzz of every input the command line reads, and of its flags (issue 16).

Random and mutated history files (JSONL, EDN, Porcupine's etcd logs), repro.json,
nemesis schedules and run directories, and random flag values, through
``harness.cli.main.main`` in-process. The contract: the exit code is 0, 1 or 2, never a
traceback; and a malformed *input file* is a user mistake (one line naming it), not
an unexpected error. The expensive parts behind the checks (a simulation, a real
run, a fuzz campaign, a server) are stubbed out: what is fuzzed is how the input
and the flags are taken in. Bounded to a few hundred examples in all.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.cli.main import main

FUZZ = settings(max_examples=40, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
UNEXPECTED = "(the traceback: splitbrain --debug"

JSONL_SEED = "".join(json.dumps(e) + "\n" for e in [
    {"index": 0, "time": 0, "process": 0, "type": "invoke", "f": "write", "key": "k1",
     "value": 1},
    {"index": 1, "time": 10, "process": 0, "type": "ok", "f": "write", "key": "k1", "value": 1},
    {"index": 2, "time": 20, "process": "nemesis", "type": "info", "f": "start-partition",
     "value": "halves"},
    {"index": 3, "time": 30, "process": 1, "type": "invoke", "f": "cas", "key": "k1",
     "value": [1, 2]},
    {"index": 4, "time": 40, "process": 1, "type": "ok", "f": "cas", "key": "k1",
     "value": [1, 2]},
    {"index": 5, "time": 50, "process": 2, "type": "invoke", "f": "read", "key": "k1",
     "value": None},
    {"index": 6, "time": 60, "process": 2, "type": "ok", "f": "read", "key": "k1", "value": 2},
])
EDN_SEED = """; a Knossos-style history
[{:process 0, :type :invoke, :f :write, :value 1}
 {:process 0, :type :ok, :f :write, :value 1}
 {:process 1 :type :invoke
  :f :cas :value [1 2]}
 {:process :nemesis :type :info :f :start :value "partition {n1 n2}"}
 {:process 1, :type :ok, :f :cas, :value [1 2]} ; done
 {:process 2, :type :invoke, :f :read, :value nil}
 {:process 2, :type :ok, :f :read, :value 2}]
"""
EDN_LINES_SEED = """{:process 0, :type :invoke, :f :append, :key "0", :value "x 0 0 y"}
{:process 0, :type :ok, :f :append, :key "0", :value "x 0 0 y"}
{:process 1, :type :invoke, :f :get, :key "0", :value nil}
{:process 1, :type :ok, :f :get, :key "0", :value "x 0 0 y"}
"""
ETCD_SEED = """INFO  jepsen.util - 0\t:invoke\t:read\tnil
INFO  jepsen.util - 3\t:invoke\t:write\t4
INFO  jepsen.util - 0\t:ok\t:read\tnil
INFO  jepsen.util - 3\t:ok\t:write\t4
INFO  jepsen.util - 2\t:invoke\t:cas\t[4 1]
INFO  jepsen.util - 2\t:fail\t:cas\t[4 1]
"""
SCHEDULE_SEED = json.dumps([
    {"at": 0.5, "f": "partition", "value": {"shape": "halves"}, "seed": 3},
    {"at": 1.0, "f": "heal", "value": None},
    {"at": 1.2, "f": "kill", "value": "leader"},
    {"at": 1.5, "f": "start", "value": "all"},
    {"at": 1.6, "f": "loss", "value": {"p": 0.2, "links": [["n1", "n2"]]}},
    {"at": 1.8, "f": "clock", "value": {"targets": "one", "offset": 0.5}},
    {"at": 1.9, "when": {"event": "new-leader", "delay": 0.1}, "f": "pause", "value": "one"},
], indent=1)
REPRO_SEED = json.dumps({
    "name": "fuzz-seed", "backend": "sim", "seed": 7,
    "cluster": {"nodes": 3, "read_mode": "read-index", "bugs": [],
                "election_timeout": [0.3, 0.6], "latency": [0.0005, 0.002]},
    "workload": {"keys": 2, "mix": {"read": 5, "write": 3, "cas": 2}, "rate": 40.0,
                 "concurrency": 3, "time_limit": 2.0, "quiet": 1.0},
    "schedule": json.loads(SCHEDULE_SEED)[:4],
    "expect": {"valid": False, "history_sha256": "0" * 64},
}, indent=1)

NASTY_WORDS = ["nan", "inf", "-inf", "-1", "0", "1", "3", "0.5", "1e308", "-1e308",
               "1000000000", "", "abc", "-", "[]", "{}", "null", "1_0", "0x10", "\x00"]


@st.composite
def mutated(draw: st.DrawFn, seed: str) -> str:
    """``seed`` with a few random edits: cut, insert, duplicate, swap, truncate."""
    text = seed
    for _ in range(draw(st.integers(1, 4))):
        if not text:
            text = draw(st.text(max_size=40))
            continue
        at = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["cut", "insert", "dup", "swap", "truncate", "word"]))
        if kind == "cut":
            text = text[:at] + text[at + draw(st.integers(1, 30)):]
        elif kind == "insert":
            text = text[:at] + draw(st.text(max_size=12)) + text[at:]
        elif kind == "word":
            text = text[:at] + draw(st.sampled_from(
                ['"', "{", "}", "[", "]", "(", ")", ";", "#_", "#{", "\\", ":", ",", "\n",
                 "nil", "1e999", "NaN", "-0", '{"', "\ufeff", "\r\n"])) + text[at:]
        elif kind == "dup":
            lines = text.splitlines(keepends=True)
            index = draw(st.integers(0, len(lines) - 1))
            lines.insert(index, lines[index])
            text = "".join(lines)
        elif kind == "swap":
            lines = text.splitlines(keepends=True)
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
            text = "".join(lines)
        else:
            text = text[:at]
    return text


def history_texts() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=200),
        mutated(JSONL_SEED), mutated(EDN_SEED), mutated(EDN_LINES_SEED), mutated(ETCD_SEED),
    )


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse refusing a flag: its usage line and exit 2
        code = exc.code if isinstance(exc.code, int) else 2
    err = capsys.readouterr().err
    assert code in (0, 1, 2), (argv, code, err)
    assert "Traceback" not in err, (argv, err)
    return code, err


def expect_user_error_at_most(code: int, err: str, what: str) -> None:
    """A bad input file is the user's mistake: named in one line, never 'unexpected'."""
    assert UNEXPECTED not in err, f"{what}: {err}"
    if code == 2 and err:  # one line, after any notes (a torn last line, say)
        lines = [line for line in err.splitlines() if not line.startswith("note: ")]
        assert len(lines) <= 1, err


@FUZZ
@given(text=history_texts(),
       fmt=st.sampled_from(["auto", "auto", "jsonl", "edn", "porcupine-kv", "porcupine-etcd"]),
       model=st.sampled_from([None, "cas-register", "kv", "raft-kv", "etcd"]))
def test_history_files(tmp_path_factory: pytest.TempPathFactory,
                       capsys: pytest.CaptureFixture[str], text: str, fmt: str,
                       model: str | None) -> None:
    path = tmp_path_factory.mktemp("h") / "history"
    path.write_text(text, encoding="utf-8")
    argv = ["check", str(path), "--format", fmt, "--timeout", "2"]
    if model:
        argv += ["--model", model]
    code, err = run_cli(argv, capsys)
    expect_user_error_at_most(code, err, text)


@FUZZ
@given(data=st.binary(max_size=120))
def test_binary_history_files(tmp_path_factory: pytest.TempPathFactory,
                              capsys: pytest.CaptureFixture[str], data: bytes) -> None:
    path = tmp_path_factory.mktemp("h") / "history"
    path.write_bytes(data)
    code, err = run_cli(["check", str(path), "--timeout", "2"], capsys)
    expect_user_error_at_most(code, err, repr(data))


@pytest.fixture
def stubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The expensive parts after input handling: a simulation, a real run, a search."""
    import harness.cli.run
    import harness.cli.sim
    import harness.sim.fuzz
    from harness.sim.fuzz import FuzzOutcome

    monkeypatch.setattr(harness.cli.sim, "_replay_sim", lambda *args: 0)
    monkeypatch.setattr(harness.cli.sim, "_replay_real", lambda *args: 0)
    monkeypatch.setattr(harness.sim.fuzz, "fuzz",
                        lambda **kwargs: FuzzOutcome(examples=0, elapsed_s=0.0))

    def validate_only(args: Any) -> int:
        harness.cli.run.config_from_args(args)
        return 0

    monkeypatch.setattr(harness.cli.run, "handle_run", validate_only)


@FUZZ
@given(text=st.one_of(mutated(REPRO_SEED), st.text(max_size=80)))
def test_repro_files(tmp_path_factory: pytest.TempPathFactory,
                     capsys: pytest.CaptureFixture[str], stubbed: None, text: str) -> None:
    path = tmp_path_factory.mktemp("r") / "repro.json"
    path.write_text(text, encoding="utf-8")
    for real in ([], ["--real"]):
        code, err = run_cli(["replay", str(path), *real], capsys)
        expect_user_error_at_most(code, err, text)


def json_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12),
                        st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
                        st.sampled_from(["n1", "n2", "all", "leader", "halves", "kill"]))
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
        max_leaves=12)


@st.composite
def damaged_repros(draw: st.DrawFn) -> str:
    """A valid repro.json with one field (anywhere) replaced by a random JSON value."""
    data = json.loads(REPRO_SEED)
    paths: list[list[Any]] = []

    def walk(node: Any, at: list[Any]) -> None:
        paths.append(at)
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, [*at, key])
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, [*at, index])

    walk(data, [])
    where = draw(st.sampled_from(paths[1:]))
    target = data
    for step in where[:-1]:
        target = target[step]
    target[where[-1]] = draw(json_values())
    return json.dumps(data)


@FUZZ
@given(text=damaged_repros())
def test_repro_fields(tmp_path_factory: pytest.TempPathFactory,
                      capsys: pytest.CaptureFixture[str], stubbed: None, text: str) -> None:
    path = tmp_path_factory.mktemp("r") / "repro.json"
    path.write_text(text, encoding="utf-8")
    code, err = run_cli(["replay", str(path)], capsys)
    expect_user_error_at_most(code, err, text)


@FUZZ
@given(text=st.one_of(mutated(SCHEDULE_SEED), st.text(max_size=60),
                      st.lists(json_values(), max_size=4).map(json.dumps)),
       time_limit=st.sampled_from(["3", "0.5", "100"]))
def test_schedule_files(tmp_path_factory: pytest.TempPathFactory,
                        capsys: pytest.CaptureFixture[str], stubbed: None, text: str,
                        time_limit: str) -> None:
    root = tmp_path_factory.mktemp("s")
    path = root / "schedule.json"
    path.write_text(text, encoding="utf-8")
    code, err = run_cli(["run", "--nodes", "3", "--time-limit", time_limit,
                         "--nemesis-schedule", str(path), "--store", str(root / "store"),
                         "--no-display"], capsys)
    expect_user_error_at_most(code, err, text)


RUN_FILES = {
    "history.jsonl": history_texts(),
    "test.json": st.one_of(json_values().map(json.dumps), st.text(max_size=40),
                           st.just(json.dumps({"name": "t", "nodes": ["n1", "n2", "n3"],
                                               "model": "raft-kv"}))),
    "results.json": st.one_of(json_values().map(json.dumps), st.text(max_size=20)),
    "observations.jsonl": st.one_of(st.text(max_size=60),
                                    st.lists(json_values(), max_size=3).map(
                                        lambda rows: "".join(json.dumps(r) + "\n"
                                                             for r in rows))),
}


@FUZZ
@given(files=st.fixed_dictionaries(
    {"history.jsonl": RUN_FILES["history.jsonl"]},
    optional={name: strategy for name, strategy in RUN_FILES.items()
              if name != "history.jsonl"}))
def test_run_directories(tmp_path_factory: pytest.TempPathFactory,
                         capsys: pytest.CaptureFixture[str], files: dict[str, str]) -> None:
    run = tmp_path_factory.mktemp("run")
    for name, text in files.items():
        (run / name).write_text(text, encoding="utf-8")
    run_cli(["check", str(run), "--timeout", "2"], capsys)
    run_cli(["report", str(run)], capsys)


FLAGS: dict[str, list[str]] = {
    "check": ["--timeout", "--memory", "--init", "--format", "--model", "--report",
              "--edn-out"],
    "fuzz": ["--examples", "--search-seconds", "--seed", "--nodes", "--time-limit",
             "--max-faults", "--shrink-seconds", "--bug", "--read-mode"],
    "run": ["--nodes", "--time-limit", "--rate", "--concurrency", "--keys", "--ops-per-key",
            "--nemesis-interval", "--seed", "--test-count", "--quiet-period", "--op-timeout",
            "--mix", "--nemesis", "--net", "--read-mode", "--db"],
    "replay": ["--store"],
    "report": [],
    "serve": ["--port"],
}


@FUZZ
@given(command=st.sampled_from(sorted(FLAGS)), data=st.data())
def test_random_flag_values(tmp_path_factory: pytest.TempPathFactory,
                            capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch, stubbed: None, command: str,
                            data: st.DataObject) -> None:
    import reports.server

    async def no_server(store: Path, port: int, *, task_status: Any) -> None:
        raise OSError(98, "Address already in use")  # serve would run until Ctrl-C

    monkeypatch.setattr(reports.server, "serve", no_server)
    root = tmp_path_factory.mktemp("flags")
    history = root / "h.jsonl"
    history.write_text(JSONL_SEED)
    (root / "store").mkdir()
    (root / "repro.json").write_text(REPRO_SEED)
    positional = {"check": [str(history)], "replay": [str(root / "repro.json")],
                  "report": [str(root)], "serve": [], "fuzz": [], "run": []}[command]
    words = [*positional]
    for flag in data.draw(st.lists(st.sampled_from(FLAGS[command] or ["--x"]), max_size=3)):
        value = data.draw(st.one_of(st.sampled_from(NASTY_WORDS), st.text(max_size=6)))
        words.append(f"{flag}={value}")
    if command in ("fuzz", "run", "replay", "serve"):
        words += ["--store", str(root / "store")]
    if command == "run":
        words.append("--no-display")
    cwd = Path.cwd()
    os.chdir(root)  # nothing a flag names lands in the repository
    try:
        run_cli([command, *words], capsys)
    finally:
        os.chdir(cwd)
