"""Result helpers and composition: false wins, then unknown, and nothing passes silently."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from checker.results import (
    UNKNOWN,
    compose,
    exit_code,
    failing_checkers,
    invalid_result,
    merge_validity,
    unknown_result,
    valid_result,
)

verdicts = st.sampled_from([True, False, UNKNOWN])


def test_helpers_build_the_common_shape():
    assert valid_result(checked=3) == {"valid": True, "checked": 3}
    assert invalid_result(index=4) == {"valid": False, "index": 4}
    assert unknown_result("no dumps", nodes=[]) == {
        "valid": "unknown", "reason": "no dumps", "nodes": []}


def test_unknown_needs_a_reason():
    with pytest.raises(ValueError):
        unknown_result("")


def test_compose_orders_false_over_unknown_over_true():
    ok, bad, unsure = valid_result(), invalid_result(), unknown_result("budget")
    assert compose({"a": ok, "b": ok})["valid"] is True
    assert compose({"a": ok, "b": unsure})["valid"] == UNKNOWN
    assert compose({"a": unsure, "b": bad, "c": ok})["valid"] is False
    composed = compose({"a": ok, "b": bad})
    assert composed["checkers"] == {"a": ok, "b": bad}
    json.dumps(composed)  # JSON-ready


def test_composing_nothing_is_unknown_not_true():
    composed = compose({})
    assert composed["valid"] == UNKNOWN and composed["reason"]


def test_a_checker_without_a_verdict_is_refused():
    with pytest.raises(ValueError, match="'lin'"):
        compose({"lin": {"evidence": 1}})
    with pytest.raises(ValueError, match="not a verdict"):
        compose({"lin": {"valid": None}})
    with pytest.raises(ValueError, match="not a verdict"):
        merge_validity([1])


def test_compositions_nest_and_failing_checkers_are_found():
    inner = compose({"log-agreement": invalid_result(), "digests": valid_result()})
    outer = compose({"log-order": inner, "linearizable": valid_result()})
    assert outer["valid"] is False
    assert failing_checkers(outer) == ["log-order.log-agreement"]
    assert exit_code(outer) == 1
    assert exit_code(compose({"x": unknown_result("why")})) == 2
    assert exit_code(compose({"x": valid_result()})) == 0


@given(st.dictionaries(st.text(min_size=1, max_size=5), verdicts, min_size=1, max_size=8))
def test_compose_is_false_if_any_false_else_unknown_if_any_unknown(verdict_map):
    results = {
        name: unknown_result("r") if v == UNKNOWN else {"valid": v}
        for name, v in verdict_map.items()
    }
    values = list(verdict_map.values())
    expected = False if False in values else (UNKNOWN if UNKNOWN in values else True)
    assert compose(results)["valid"] == expected


def test_advisory_unknown_does_not_make_the_run_unknown() -> None:
    lin = valid_result(ops=10)
    logs = unknown_result("etcd exposes no Raft log")
    composed = compose({"linearizable": lin, "log-order": logs}, advisory=["log-order"])
    assert composed["valid"] is True
    assert composed["advisory"] == ["log-order"]
    assert composed["checkers"]["log-order"]["valid"] == "unknown"


def test_advisory_false_still_fails_and_non_advisory_unknown_still_counts() -> None:
    failing = compose(
        {"linearizable": valid_result(), "log-order": invalid_result(kind="lost")},
        advisory=["log-order"],
    )
    assert failing["valid"] is False
    unknown = compose(
        {"linearizable": unknown_result("budget"), "log-order": unknown_result("no log")},
        advisory=["log-order"],
    )
    assert unknown["valid"] == "unknown"
