"""History formats: JSONL reader/writer, Jepsen EDN, Porcupine logs, pairing, errors."""

from __future__ import annotations

import json
from pathlib import Path

import edn_format
import pytest
from checker_helpers import CORPUS
from hypothesis import given, settings
from hypothesis import strategies as st

from checker.errors import InputError
from checker.history import (
    HistoryWriter,
    _fast_edn_map,
    detect_format,
    edn_to_python,
    history_from_events,
    load_history,
    read_edn,
    write_edn,
)


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_writer_flushes_every_event_and_reader_pairs(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    with HistoryWriter(path) as writer:
        writer.write({"time": 1, "process": 0, "type": "invoke", "f": "write", "key": "k1",
                      "value": 5, "client": "c0", "seq": 1})
        # visible to another reader before the writer is closed (a crash keeps it)
        assert json.loads(path.read_text().splitlines()[0])["index"] == 0
        writer.write({"time": 2, "process": "nemesis", "type": "info",
                      "f": "start-partition", "value": "halves"})
        writer.write({"time": 3, "process": 1, "type": "invoke", "f": "read", "key": "k1",
                      "value": None})
        writer.write({"time": 4, "process": 0, "type": "ok", "f": "write", "key": "k1",
                      "value": 5})
        writer.write({"time": 5, "process": 1, "type": "ok", "f": "read", "key": "k1",
                      "value": 5})
        writer.write({"time": 6, "process": 2, "type": "invoke", "f": "cas", "key": "k1",
                      "value": [5, 6]})
        assert len(path.read_text().splitlines()) == 6
    history = load_history(path)
    assert history.format == "jsonl" and history.default_model == "raft-kv"
    write, read, cas = history.ops
    assert (write.f, write.type, write.value) == ("write", "ok", 5)
    assert (write.call, write.complete) == (0, 3)
    assert write.invoke_extra == {"client": "c0", "seq": 1}
    assert write.call_time == 1 and write.complete_time == 4
    assert (read.output, read.type) == (5, "ok")
    assert cas.unknown and cas.complete is None  # never completed: unknown outcome
    assert [e["f"] for e in history.nemesis] == ["start-partition"]
    # events() gives back the same sequence, nemesis included, in order
    assert [(e["type"], e["process"]) for e in history.events()] == [
        ("invoke", 0), ("info", "nemesis"), ("invoke", 1), ("ok", 0), ("ok", 1), ("invoke", 2)]


def test_writer_refuses_bad_events_and_closed_use(tmp_path: Path) -> None:
    writer = HistoryWriter(tmp_path / "h.jsonl")
    with pytest.raises(ValueError, match="event type"):
        writer.write({"process": 0, "type": "done", "f": "read"})
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.write({"process": 0, "type": "invoke", "f": "read"})


def test_pairing_follows_jepsen() -> None:
    history = history_from_events([
        {"process": 0, "type": "invoke", "f": "write", "value": 1},
        {"process": 1, "type": "invoke", "f": "write", "value": 2},
        {"process": 0, "type": "info", "f": "write", "value": 1},  # unknown outcome
        {"process": 1, "type": "fail", "f": "write", "value": 2},  # did not happen
        {"process": 2, "type": "invoke", "f": "read", "value": None},
        {"process": 2, "type": "invoke", "f": "read", "value": None},  # crashed client retried
        {"process": 2, "type": "ok", "f": "read", "value": 1},
        {"process": 3, "type": "info", "f": "note", "value": "not an op"},
    ])
    first, second, lost, read = history.ops
    assert first.type == "info" and first.unknown and first.complete == 2
    assert second.type == "fail" and not second.unknown
    assert lost.type == "info" and lost.complete is None
    assert read.type == "ok" and read.output == 1 and read.call == 5
    assert history.nemesis[0]["f"] == "note"


@pytest.mark.parametrize(("events", "message"), [
    ([{"process": 0, "type": "ok", "f": "read"}], "without a pending invocation"),
    ([{"process": 0, "type": "begin", "f": "read"}], "event type must be one of"),
    ([{"type": "invoke", "f": "read"}, {"type": "invoke", "f": "read"}], "no process"),
    ([{"process": 0, "type": "invoke"}], "no function name"),
    ([{"process": 0, "type": "invoke", "f": "read"},
      {"process": 0, "type": "ok", "f": "write"}], "does not match"),
])
def test_malformed_events_name_the_line(events: list[dict], message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        history_from_events(events, source="h.jsonl")
    assert info.value.line == len(events)
    assert str(info.value).startswith(f"h.jsonl:{len(events)}: ")


@pytest.mark.parametrize(("text", "line", "message"), [
    # a broken line that ends with its newline is not a torn write: refused
    ('{"process": 0, "type": "invoke", "f": "read"}\n{"process": 0, "type": \n', 2,
     "not valid JSON"),
    # nor a broken line in the middle, nor a file that is one broken line
    ('{"process": 0, "type": "invoke", "f": "read"}\n{"process": 0, "ty\n{}\n', 2,
     "not valid JSON"),
    ('{"process": 0, "type": ', 1, "not valid JSON"),
    ('garbage', 1, "not valid JSON"),
    ('{"process": 0, "type": "invoke", "f": "read"}\n\n[1, 2]\n', 3, "JSON object"),
])
def test_malformed_jsonl(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=message) as info:
        load_history(path, "jsonl")
    assert (info.value.path, info.value.line) == (str(path), line)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        load_history(tmp_path / "missing.jsonl")
    with pytest.raises(InputError, match="is a directory"):
        load_history(tmp_path)
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b'{"process": 0}\n\xff\xfe\x00garbage\n')
    with pytest.raises(InputError, match="UTF-8"):
        load_history(binary, "jsonl")
    odd = write_lines(tmp_path / "odd.txt", ["hello world"])
    with pytest.raises(InputError, match="cannot tell the history format"):
        load_history(odd)
    with pytest.raises(InputError, match="unknown format"):
        load_history(odd, "xml")


def test_detect_format(tmp_path: Path) -> None:
    assert detect_format(CORPUS / "kv" / "c01-ok.txt") == "edn"
    assert detect_format(CORPUS / "etcd" / "etcd_000.log") == "porcupine-etcd"
    assert detect_format(write_lines(tmp_path / "a.jsonl", ['{"process": 0}'])) == "jsonl"
    assert detect_format(write_lines(tmp_path / "b.edn", ["", "[{:process 0}]"])) == "edn"
    empty = tmp_path / "empty"
    empty.write_text("")
    assert load_history(empty).ops == []


def test_porcupine_kv_lines() -> None:
    history = load_history(CORPUS / "kv" / "c01-ok.txt")
    assert history.default_model == "kv"
    op = history.ops[0]
    assert op.f in ("get", "put", "append") and isinstance(op.key, str)
    assert all(o.type == "ok" for o in history.ops)


def test_porcupine_etcd_log_semantics(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "etcd.log", [
        "INFO  jepsen.util - 3\t:invoke\t:cas\t[0 3]",
        "INFO  jepsen.util - 1   :invoke :read   nil",
        "INFO  jepsen.util - 3\t:fail\t:cas\t[0 3]",
        "INFO  jepsen.util - 1   :fail   :read   :timed-out",
        "INFO  jepsen.util - 4\t:invoke\t:write\t2",
        "INFO  jepsen.util - 4\t:info\t:write\t:timed-out",
        "INFO  jepsen.util - 4\t:invoke\t:read\tnil",  # same process invokes again
        "INFO  jepsen.util - 4\t:ok\t:read\t2",
    ])
    history = load_history(path)
    assert history.format == "porcupine-etcd" and history.default_model == "etcd"
    cas, read, write, reread = history.ops
    assert (cas.type, cas.value) == ("fail", [0, 3])
    assert (read.type, read.output) == ("fail", "timed-out")
    assert (write.type, write.value, write.output) == ("info", 2, "timed-out")
    assert (reread.process, reread.output) == (4, 2)


def test_porcupine_etcd_malformed(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "etcd.log", [
        "INFO  jepsen.util - 3\t:invoke\t:cas\t[0 3]",
        "INFO  jepsen.util - 3\t:ok\t:cas\t[0 x]",
    ])
    with pytest.raises(InputError, match="cannot read the value") as info:
        load_history(path, "porcupine-etcd")
    assert info.value.line == 2
    path = write_lines(tmp_path / "etcd2.log", ["INFO  jepsen.util - 3\t:invoke\t:cas\t[0 3]",
                                                "WARN something else"])
    with pytest.raises(InputError, match="not a Jepsen log line") as info:
        load_history(path, "porcupine-etcd")
    assert info.value.line == 2


def test_edn_vector_and_line_forms_agree(tmp_path: Path) -> None:
    lines = [
        '{:process 0, :type :invoke, :f :cas, :value [1 2]}',
        '{:process :nemesis, :type :info, :f :start, :value "partition {n1 n2}"}',
        '{:process 0, :type :ok, :f :cas, :value [1 2], :time 17}',
        '{:process 1 :type :invoke :f :txn :value [[:read :x nil] [:write :y 2]]}',
        '{:process 1 :type :ok :f :txn :value [[:read :x 1] [:write :y 2]]}',
    ]
    as_lines = read_edn(write_lines(tmp_path / "lines.edn", lines))
    vector = tmp_path / "vector.edn"
    vector.write_text("[" + "\n".join(lines) + "]")
    as_vector = read_edn(vector)
    assert [o.to_dict() for o in as_lines.ops] == [o.to_dict() for o in as_vector.ops]
    cas, txn = as_lines.ops
    assert cas.value == [1, 2] and cas.complete_time == 17
    assert txn.output == [["read", "x", 1], ["write", "y", 2]]
    assert as_lines.nemesis[0]["process"] == "nemesis"
    assert as_lines.default_model == "multi-register"


def test_edn_malformed_names_line(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "bad.edn", [
        "{:process 0, :type :invoke, :f :read, :value nil}",
        "{:process 0, :type :ok, :f :read, :value",
    ])
    with pytest.raises(InputError, match="not valid EDN") as info:
        load_history(path)
    assert info.value.line == 2
    path = write_lines(tmp_path / "bad2.edn", ["{:process 0, :type :invoke, :f :read}",
                                               "[1 2 3]"])
    with pytest.raises(InputError, match="must be an EDN map"):
        load_history(path, "edn")


def test_fast_edn_path_matches_the_library_on_the_corpus() -> None:
    for path in sorted((CORPUS / "kv").glob("*.txt"))[:2]:
        for line in path.read_text().splitlines()[:100]:
            fast = _fast_edn_map(line)
            assert fast is not None
            assert fast == edn_to_python(edn_format.loads(line))


_edn_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6),
    st.text(st.characters(codec="utf-8", exclude_characters='"\\'), max_size=8),
    st.from_regex(r"[a-z][a-z0-9-]{0,6}", fullmatch=True).map(edn_format.Keyword),
)


@settings(max_examples=40, deadline=None)  # the library parser is slow
@given(st.dictionaries(st.from_regex(r"[a-z][a-z-]{0,6}", fullmatch=True),
                       st.one_of(_edn_scalars, st.lists(_edn_scalars, max_size=3)),
                       max_size=6))
def test_fast_edn_path_never_disagrees_with_the_library(fields: dict) -> None:
    text = edn_format.dumps({edn_format.Keyword(k): v for k, v in fields.items()})
    fast = _fast_edn_map(text)
    expected = edn_to_python(edn_format.loads(text))
    if fast is not None:  # the fast path may decline, never differ
        assert fast == expected


def test_edn_writer_round_trips(tmp_path: Path) -> None:
    source = load_history(CORPUS / "etcd" / "etcd_000.log")
    out = tmp_path / "out.edn"
    write_edn(source, out)
    first = out.read_text().splitlines()[0]
    assert first.startswith("{") and ":type :invoke" in first and ":f :read" in first
    again = load_history(out)
    assert [(o.process, o.f, o.type, o.value, o.output, o.call, o.complete) for o in again.ops] == [
        (o.process, o.f, o.type, o.value, o.output, o.call, o.complete) for o in source.ops]


def test_edn_writer_keeps_nemesis_and_keys(tmp_path: Path) -> None:
    history = history_from_events([
        {"process": 0, "type": "invoke", "f": "write", "key": "k1", "value": [1, 2]},
        {"process": "nemesis", "type": "info", "f": "kill", "value": "n1"},
        {"process": 0, "type": "ok", "f": "write", "key": "k1", "value": [1, 2]},
    ])
    out = tmp_path / "h.edn"
    write_edn(history, out)
    text = out.read_text()
    assert ":process :nemesis" in text and ':key "k1"' in text
    again = load_history(out)
    assert again.ops[0].key == "k1" and again.ops[0].value == [1, 2]
    assert again.nemesis[0]["f"] == "kill"
