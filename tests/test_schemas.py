"""The run files keep the contract of docs/DESIGN.md, checked against docs/schemas/.

Real artifacts, not hand-made examples: one short real run (3 raft_impl
processes behind the proxy network, ~10 s) and one simulated run, both under a
schedule that uses every fault, a short Maelstrom run (the example node, the
harness's router) and a short transactional run (``list-append``), are
validated line by line with the ``jsonschema`` library. The schemas must also
refuse lines that break the contract (mutations of those real lines), and
their vocabularies (fault names, partition shapes, read modes, observation
kinds, the history ``f`` of every fault) must be the code's own, so a new
fault or kind cannot land without its contract. Last, DESIGN.md itself: every
module, file, link, node flag and section it is cited by must exist.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from harness.run.run import RunConfig, run_test
from harness.sim.config import SimClusterConfig, SimTest, SimWorkload
from harness.sim.run import simulate

SCHEMAS = Path(__file__).resolve().parent.parent / "docs" / "schemas"

#: Every fault of nemesis/faults.py, each value shape, a composite label and a trigger.
SCHEDULE: list[dict[str, Any]] = [
    {"at": 0.2, "f": "partition", "value": {"shape": "halves"}, "seed": 1},
    {"at": 0.5, "f": "heal", "value": None},
    {"at": 0.6, "f": "kill", "value": "one", "seed": 2},
    {"at": 0.8, "f": "start", "value": "all"},
    {"at": 0.9, "f": "pause", "value": "minority", "seed": 3},
    {"at": 1.1, "f": "resume", "value": "all"},
    {"at": 1.2, "f": "loss", "value": {"p": 0.05, "links": None}},
    {"at": 1.2, "f": "delay", "value": {"mean": 0.002, "jitter": 0.001,
                                        "links": [["n1", "n2"]]}},
    {"at": 1.2, "f": "duplicate", "value": {"p": 0.05, "links": None}},
    {"at": 1.2, "f": "reorder", "value": {"p": 0.05, "links": None}},
    {"at": 1.3, "f": "clock", "value": {"targets": "one", "offset": 0.1, "rate": 1.0}},
    {"at": 1.4, "f": "clock", "value": {"targets": ["n1"],
                                        "strobe": {"delta": 0.05, "period": 0.05,
                                                   "duration": 0.2}}},
    {"at": 1.8, "f": "clock", "value": {"reset": True}},
    {"at": 1.9, "f": "loss", "value": {"p": 0.0, "links": None}},
    {"at": 1.9, "f": "delay", "value": {"mean": 0.0, "jitter": 0.0, "links": None}},
    {"at": 1.9, "f": "duplicate", "value": {"p": 0.0, "links": None}},
    {"at": 1.9, "f": "reorder", "value": {"p": 0.0, "links": None}},
    {"at": 2.0, "f": "lose-unfsynced", "value": ["n3"]},
    {"at": 2.2, "f": "start", "value": "all"},
    {"at": 2.3, "f": "partition", "value": {"grudge": {"n1": ["n2"]}}},
    {"at": 2.5, "f": "heal", "value": None},
    {"at": 2.6, "f": "partition", "value": {"shape": "deaf-one", "node": "n2"},
     "compose": "one-way"},
    {"at": 2.6, "f": "kill", "value": "leader",
     "when": {"event": "new-leader", "delay": 0.0, "within": 0.3}},
    {"at": 3.0, "f": "heal", "value": None, "compose": "one-way"},
    {"at": 3.1, "f": "start", "value": "all"},
    {"at": 3.2, "f": "partition", "value": {"shape": "isolate-leader"}},
    {"at": 3.2, "f": "pause", "value": "trigger",
     "when": {"event": "step-down", "delay": 0.0, "within": 0.25}},
    {"at": 3.5, "f": "heal", "value": None},
    {"at": 3.5, "f": "resume", "value": "all"},
]

#: History ``f`` of the nemesis events both runs must contain (the schedule above).
EXPECTED_NEMESIS_F = {
    "start-partition", "stop-partition", "kill", "start", "pause", "resume",
    "lose-unfsynced", "start-loss", "stop-loss", "start-delay", "stop-delay",
    "start-duplicate", "stop-duplicate", "start-reorder", "stop-reorder", "bump-clock",
    "start-clock-strobe", "reset-clock",
}


def load_schema(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.fixture(scope="module")
def validators() -> dict[str, jsonschema.Draft202012Validator]:
    return {name: load_schema(name) for name in ("history-line", "test", "observation")}


def jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            yield number, json.loads(line)


def problems(validator: jsonschema.Draft202012Validator, document: Any) -> list[str]:
    return [f"{'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
            for error in validator.iter_errors(document)]


def undocumented_test_keys(test: dict[str, Any]) -> list[str]:
    """Top-level keys of a test.json that section 8 of DESIGN.md does not name."""
    text = (SCHEMAS.parent / "DESIGN.md").read_text(encoding="utf-8")
    section = text[text.index("## 8. `test.json`"):text.index("## 9. ")]
    return sorted(key for key in test if f"`{key}`" not in section)


def assert_run_matches(run_dir: Path, validators: dict[str, Any]) -> list[dict[str, Any]]:
    """Every line of history.jsonl and observations.jsonl, and test.json, validate, and
    DESIGN.md names every key of test.json."""
    bad: list[str] = []
    history = []
    for name, schema in (("history.jsonl", "history-line"),
                         ("observations.jsonl", "observation")):
        for number, line in jsonl(run_dir / name):
            if name == "history.jsonl":
                history.append(line)
            bad += [f"{name}:{number}: {p}" for p in problems(validators[schema], line)]
    test = json.loads((run_dir / "test.json").read_text(encoding="utf-8"))
    bad += [f"test.json: {p}" for p in problems(validators["test"], test)]
    bad += [f"test.json: key {key!r} is not in docs/DESIGN.md section 8"
            for key in undocumented_test_keys(test)]
    assert not bad, "\n".join(bad[:20])
    return history


@pytest.fixture(scope="module")
def sim_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("schemas") / "sim"
    test = SimTest(cluster=SimClusterConfig(nodes=3, trace_messages=True),
                   workload=SimWorkload(time_limit=4.0), schedule=tuple(SCHEDULE), seed=3,
                   name="schemas")
    simulate(test, run_dir, check=False)
    return run_dir


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("schemas-real")
    schedule = root / "schedule.json"
    schedule.write_text(json.dumps(SCHEDULE), encoding="utf-8")
    outcome = run_test(RunConfig(
        nodes=3, time_limit=4.0, rate=60, concurrency=4, keys=3, seed=11,
        nemesis_schedule=str(schedule), store=str(root / "store"), quiet_period=0.5,
        snapshot_threshold=30, run_checkers=False, render_report=False,
    ))
    assert outcome.error is None, outcome.error
    return outcome.run_dir


def test_a_maelstrom_run_writes_what_the_schemas_describe(tmp_path: Path, validators) -> None:
    """Another backend, another network (the harness's router): the same contract."""
    root = Path(__file__).resolve().parent.parent
    outcome = run_test(RunConfig(
        db="maelstrom", bin=f"{sys.executable} {root / 'examples' / 'maelstrom' / 'lin_kv.py'}",
        net="router", nodes=3, time_limit=2.0, rate=60, concurrency=3, keys=2, seed=4,
        nemesis=["partition", "loss"], nemesis_interval=1.0, store=str(tmp_path),
        quiet_period=0.3, run_checkers=False, render_report=False,
    ))
    assert outcome.error is None, outcome.error
    history = assert_run_matches(outcome.run_dir, validators)
    assert {line["f"] for line in history if line["process"] == "nemesis"} >= {
        "start-partition", "heal-all"}
    assert (outcome.run_dir / "messages.jsonl").stat().st_size > 0


def test_a_transactional_run_writes_what_the_schemas_describe(tmp_path: Path,
                                                              validators) -> None:
    """``--workload list-append``: txn lines (micro-ops, no key) and its test.json."""
    outcome = run_test(RunConfig(
        workload_name="list-append", nodes=3, time_limit=2.0, rate=60, concurrency=3,
        keys=3, seed=6, store=str(tmp_path), quiet_period=0.3, run_checkers=False,
        render_report=False,
    ))
    assert outcome.error is None, outcome.error
    history = assert_run_matches(outcome.run_dir, validators)
    ops = [line for line in history if line["process"] != "nemesis"]
    assert ops and all(line["f"] == "txn" and "key" not in line for line in ops)
    assert any(line["type"] == "ok" for line in ops)


def test_a_simulated_transactional_run_writes_what_the_schemas_describe(
        tmp_path: Path, validators) -> None:
    """``fuzz --workload rw-register``: the same txn lines and keys as a real run's."""
    simulate(SimTest(workload=SimWorkload(time_limit=2.0, name="rw-register"),
                     schedule=tuple(SCHEDULE[:2]), seed=4), tmp_path, check=False)
    history = assert_run_matches(tmp_path, validators)
    ops = [line for line in history if line["process"] != "nemesis"]
    assert ops and all(line["f"] == "txn" and "key" not in line for line in ops)
    assert any(line["type"] == "ok" for line in ops)


def test_schemas_are_valid_json_schemas() -> None:
    for path in sorted(SCHEMAS.glob("*.schema.json")):
        load_schema(path.name.removesuffix(".schema.json"))


def test_a_real_run_writes_what_the_schemas_describe(real_run: Path, validators) -> None:
    history = assert_run_matches(real_run, validators)
    fs = {line["f"] for line in history if line["process"] == "nemesis"}
    assert fs >= EXPECTED_NEMESIS_F | {"heal-all"}, sorted(EXPECTED_NEMESIS_F - fs)
    assert any(line.get("compose") == "one-way" for line in history)
    assert {line["f"] for line in history if line["process"] != "nemesis"} == {
        "read", "write", "cas"}
    assert any("read" in line for line in history), "no read named its read path"
    kinds = {line["kind"] for _, line in jsonl(real_run / "observations.jsonl")}
    assert kinds >= {"status", "log", "role", "digest", "crash", "restart", "lose-unfsynced",
                     "healed", "committed", "snapshot"}, sorted(kinds)


def test_a_simulated_run_writes_what_the_schemas_describe(sim_run: Path, validators) -> None:
    history = assert_run_matches(sim_run, validators)
    fs = {line["f"] for line in history if line["process"] == "nemesis"}
    assert fs >= EXPECTED_NEMESIS_F, sorted(EXPECTED_NEMESIS_F - fs)


def test_a_simulated_test_json_records_the_schedule_as_given(tmp_path: Path,
                                                             validators) -> None:
    """The short trigger form and omitted defaults stay as written in a simulated run."""
    schedule = [{"at": 0.5, "f": "kill", "value": "leader", "when": "new-leader"},
                {"at": 1.0, "f": "loss", "value": {"p": 0.1}},
                {"at": 1.5, "f": "heal", "value": {}},
                {"at": 2.0, "f": "start", "value": "all"}]
    simulate(SimTest(workload=SimWorkload(time_limit=2.5), schedule=tuple(schedule),
                     name="short-forms"), tmp_path / "run", check=False)
    test = json.loads((tmp_path / "run" / "test.json").read_text())
    assert test["schedule"][0]["when"] == "new-leader"
    assert_run_matches(tmp_path / "run", validators)


@pytest.mark.parametrize(("db", "read_mode"), [("raft_impl", "mixed"), ("etcd", "read-index"),
                                                ("pysyncobj", "log"), ("maelstrom", "mixed")])
def test_test_json_of_every_backend_before_its_run(db: str, read_mode: str, validators) -> None:
    """What a run of each database writes first (the facts come at its end, as above)."""
    from harness.run.cluster import node_names
    from harness.run.run import DEFAULT_SNAPSHOT_THRESHOLD, build_schedule, describe_test

    maelstrom = db == "maelstrom"
    config = RunConfig(db=db, nodes=3, read_mode=read_mode, nemesis=["partition", "kill"],
                       seed=5, time_limit=10.0, net="router" if maelstrom else "proxy",
                       bin="python3 examples/maelstrom/lin_kv.py" if maelstrom else None)
    expected = DEFAULT_SNAPSHOT_THRESHOLD if db == "raft_impl" else None
    assert config.resolved_snapshot_threshold() == expected
    test = json.loads(json.dumps(describe_test(config, build_schedule(config, node_names(3)))))
    assert not problems(validators["test"], test)
    assert test["db"] == db and test["nodes"] == ["n1", "n2", "n3"]


def _mutations() -> list[tuple[str, str, tuple[str, dict[str, Any]], Any]]:
    """(schema, what, mutate(document) -> None) of changes that break the contract."""

    def first(source: str, **match: Any) -> tuple[str, dict[str, Any]]:
        return source, match

    return [
        ("history-line", "unknown event type", first("client", type="invoke"),
         lambda e: e.update(type="done")),
        ("history-line", "negative time", first("client", type="invoke"),
         lambda e: e.update(time=-1)),
        ("history-line", "invoke without its session", first("client", type="invoke"),
         lambda e: e.pop("client")),
        ("history-line", "cas value not [expected, new]", first("client", f="cas"),
         lambda e: e.update(value=5)),
        ("history-line", "a read asking for an unknown path", first("client", f="read"),
         lambda e: e.update(read="quorum")),
        ("history-line", "unknown nemesis f", first("nemesis", f="kill"),
         lambda e: e.update(f="kill-all")),
        ("history-line", "nemesis event of type invoke", first("nemesis", f="kill"),
         lambda e: e.update(type="invoke")),
        ("history-line", "kill without the nodes it killed", first("nemesis", f="kill"),
         lambda e: e["value"].pop("nodes")),
        ("history-line", "unknown partition shape", first("nemesis", f="start-partition"),
         lambda e: e["value"].update(shape="triangle")),
        ("history-line", "a start-loss that is off", first("nemesis", f="start-loss"),
         lambda e: e["value"].update(p=0)),
        ("test", "schedule entry with an unknown fault", first("test"),
         lambda t: t["schedule"].append({"at": 1, "f": "meteor", "value": None})),
        ("test", "cluster size as a list", first("test"),
         lambda t: t["cluster"].update(nodes=["n1", "n2", "n3"])),
        ("test", "no schedule", first("test"),
         lambda t: t.pop("nemesis_schedule")),
        ("observation", "unknown kind", first("observation", kind="status"),
         lambda o: o.update(kind="gossip")),
        ("observation", "log without entries", first("observation", kind="log"),
         lambda o: o.pop("entries")),
        ("observation", "log entry without digest", first("observation", kind="log"),
         lambda o: o["entries"][0].pop("digest")),
        ("observation", "a role Raft does not have", first("observation", kind="role"),
         lambda o: o.update(role="king")),
        ("observation", "a node mark without its node", first("observation", kind="crash"),
         lambda o: o.pop("node")),
    ]


def _pick(run_dir: Path, where: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    kind, match = where
    if kind == "test":
        return json.loads((run_dir / "test.json").read_text())
    name = "observations.jsonl" if kind == "observation" else "history.jsonl"
    for _, line in jsonl(run_dir / name):
        if kind == "client" and line["process"] == "nemesis":
            continue
        if kind == "nemesis" and line["process"] != "nemesis":
            continue
        if all(line.get(k) == v for k, v in match.items()) and (
                kind != "observation" or match.get("kind") != "log" or line["entries"]):
            return line
    raise AssertionError(f"the simulated run has no {kind} line like {match}")


@pytest.mark.parametrize(("schema", "what", "where", "mutate"), _mutations(),
                         ids=[m[1] for m in _mutations()])
def test_the_schemas_refuse_what_breaks_the_contract(sim_run: Path, validators, schema: str,
                                                     what: str, where, mutate) -> None:
    document = _pick(sim_run, where)
    assert not problems(validators[schema], document), "the unmutated line must pass"
    broken = copy.deepcopy(document)
    mutate(broken)
    assert problems(validators[schema], broken), f"{what} was accepted: {broken}"


def _enum(validator: jsonschema.Draft202012Validator, *path: str) -> set[Any]:
    node: Any = validator.schema
    for step in path:
        node = node[step]
    return set(node["enum"])


def test_schema_vocabularies_are_the_codes() -> None:
    """Fault names, shapes, triggers, read modes, history f names and observation kinds.

    When this fails, the code grew (or lost) a word of the contract: add it to the
    schema named in the message and to docs/DESIGN.md.
    """
    from checker.logorder.records import KINDS
    from harness.net import BACKENDS
    from nemesis.faults import ALL_SHAPES, FAULTS, TARGET_WORDS, TRIGGERS, history_f
    from raft_impl.core import CANDIDATE, FOLLOWER, LEADER, PRE_CANDIDATE, READ_MODES

    test, history, observation = (load_schema(n) for n in ("test", "history-line",
                                                           "observation"))
    # Every f a schedule entry can be recorded under, plus the executor's own two.
    values: dict[str, list[Any]] = {
        "partition": [{"shape": "halves"}], "heal": [None],
        "kill": ["one"], "start": ["all"], "pause": ["one"], "resume": ["all"],
        "lose-unfsynced": ["one"],
        "loss": [{"p": 0.5}, {"p": 0.0}], "duplicate": [{"p": 0.5}, {"p": 0.0}],
        "reorder": [{"p": 0.5}, {"p": 0.0}],
        "delay": [{"mean": 0.1, "jitter": 0.0}, {"mean": 0.0, "jitter": 0.0}],
        "clock": [{"reset": True}, {"targets": "one", "offset": 1.0},
                  {"targets": "one", "strobe": {}}],
    }
    assert set(values) == set(FAULTS), "a new fault: add its history f names below"
    recorded = {history_f({"f": f, "value": v}) for f, vs in values.items() for v in vs}
    expected = [
        (test, ("$defs", "scheduleEntry", "properties", "f"), set(FAULTS), "FAULTS"),
        (test, ("$defs", "trigger"), set(TRIGGERS), "TRIGGERS"),
        (test, ("$defs", "readMode"), set(READ_MODES), "READ_MODES"),
        (test, ("$defs", "real", "properties", "net"), {*BACKENDS, "none"},
         "harness.net.BACKENDS and none"),
        (test, ("$defs", "shape"), set(ALL_SHAPES), "ALL_SHAPES"),
        (test, ("$defs", "target", "anyOf", 0), set(TARGET_WORDS), "TARGET_WORDS"),
        (history, ("$defs", "shape"), set(ALL_SHAPES), "ALL_SHAPES"),
        (history, ("$defs", "target", "anyOf", 0), set(TARGET_WORDS), "TARGET_WORDS"),
        (history, ("$defs", "clientEvent", "properties", "read"), set(READ_MODES),
         "READ_MODES"),
        (history, ("$defs", "nemesisEvent", "properties", "f"),
         recorded | {"stop-clock-strobe", "heal-all"}, "nemesis.faults.history_f"),
        (observation, ("properties", "kind"), set(KINDS), "checker.logorder.records.KINDS"),
        (observation, ("$defs", "role"), {FOLLOWER, PRE_CANDIDATE, CANDIDATE, LEADER},
         "raft_impl.core roles"),
    ]
    for validator, path, code, name in expected:
        schema = _enum(validator, *path)
        assert schema == code, (
            f"{validator.schema['$id'].rsplit('/', 1)[-1]} {'/'.join(map(str, path))}: "
            f"only in the schema {sorted(schema - code)}, only in {name} "
            f"{sorted(code - schema)}; update the schema and docs/DESIGN.md")


def test_design_doc_names_only_what_exists() -> None:
    """Every module, object, file and link docs/DESIGN.md names is there, so a rename or
    a move cannot leave the contract pointing at nothing."""
    import importlib
    import re

    root = SCHEMAS.parent.parent
    text = (root / "docs" / "DESIGN.md").read_text(encoding="utf-8")
    missing = []
    for token in sorted(set(re.findall(r"`([^`\s]+)`", text))):
        name = token.split(":")[0]
        packages = "splitbrain_common|raft_impl|harness|nemesis|checker|reports"
        if re.fullmatch(rf"({packages})(\.\w+)+", name):
            parts = name.split(".")
            for cut in range(len(parts), 0, -1):
                try:
                    found: Any = importlib.import_module(".".join(parts[:cut]))
                    break
                except ImportError:
                    continue
            for attribute in parts[cut:]:
                found = getattr(found, attribute, None)
            if found is None:
                missing.append(token)
        elif re.fullmatch(rf"({packages}|docs|tests)/[\w./-]*",
                          name):
            path = root / name.rstrip("/")
            defined = token.partition(":")[2]  # `module.py:name`: name is defined there
            if not path.exists() or (defined and not re.search(
                    rf"^\s*(async def|def|class) {defined}\b|^{defined}\b.*=",
                    path.read_text(encoding="utf-8"), re.M)):
                missing.append(token)
    headings = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
                for h in re.findall(r"^#+ (.*)$", text, re.M)}
    for target in re.findall(r"\]\(([^)]+)\)", text):
        path, _, anchor = target.partition("#")
        if not path:
            if anchor not in headings:
                missing.append(target)
        elif not (root / "docs" / path).exists():
            missing.append(target)
    assert not missing, missing


def test_design_doc_lists_every_node_option() -> None:
    """Section 2 shows the node's whole command line: the flags of its own parser."""
    import re

    from raft_impl.__main__ import build_parser

    text = (SCHEMAS.parent / "DESIGN.md").read_text(encoding="utf-8")
    section = text[text.index("## 2. The node process"):text.index("## 3. Wire protocol")]
    documented = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", section))
    flags = {flag for action in build_parser()._actions for flag in action.option_strings
             if flag.startswith("--") and flag != "--help"}
    assert flags <= documented, f"not in docs/DESIGN.md section 2: {sorted(flags - documented)}"


def test_references_to_design_doc_name_its_sections() -> None:
    """Code and docs cite DESIGN.md by section title ("Store layout") or number (3.5):
    each must still be a heading of the page."""
    import re

    root = SCHEMAS.parent.parent
    text = (root / "docs" / "DESIGN.md").read_text(encoding="utf-8")
    titles = [re.sub(r"^[\d.]+ ", "", h).replace("`", "").strip()
              for h in re.findall(r"^#+ (.*)$", text, re.M)]
    numbers = set(re.findall(r"^#+ ([\d.]*\d)\.? ", text, re.M))
    broken = []
    files = [p for d in ("raft_impl", "harness", "nemesis", "checker", "reports", "docs")
             for p in (root / d).rglob("*") if p.suffix in (".py", ".md")]
    for path in [*files, root / "README.md"]:
        source = path.read_text(encoding="utf-8")
        for cited in re.findall(r'DESIGN\.md,\s+"([^"]+)"', source):
            if not any(title.startswith(cited) for title in titles):
                broken.append(f"{path.relative_to(root)}: \"{cited}\"")
        for group in re.findall(r"DESIGN\.md,\s+sections?\s+([\d., and-]+\d)", source):
            for number in re.findall(r"\d+(?:\.\d+)?", group):
                if number not in numbers:
                    broken.append(f"{path.relative_to(root)}: section {number}")
    assert not broken, broken
