"""Linearizability checking: the Wing–Gong–Lowe search, as in Porcupine.

The history is first split into independent partitions by the model
(P-compositionality: a history is linearizable iff each partition is). Each
partition is searched on its own:

- Every operation gives a *call* entry and (unless its outcome is unknown) a
  *return* entry; entries sit in a doubly linked list in real-time order.
- Walking the list from the front, a call entry may be *linearized* next if
  the model accepts it in the current state: it and its return are unlinked
  ("lifted"), pushed on a stack with the state before it, and the walk starts
  again from the front. Reaching a return entry means the operation it closes
  had to be linearized already: backtrack (pop, relink, try the next entry).
- A set of (linearized operations, state) pairs already explored prunes the
  search (Lowe's memoization): the same set in the same state has the same
  future. The set is a Python int used as a bitset, states are hashable.
- An operation of unknown outcome has no return entry (its return is at
  +infinity): it may be linearized at any point after its call, or never.
  The partition is linearizable once every operation with a return entry is.

Beyond plain WGL, four refinements keep Python fast enough (all are sound;
the tests compare the verdicts with a brute-force search over every order):

- a legal *read-only* operation is linearized at once without trying the
  alternatives (moving a no-op earlier never breaks a valid order);
- the model may say which states can still be reached (``reachability``): a
  branch is dropped as soon as a waiting read, or one of the next reads not
  yet invoked, can no longer be satisfied from the current state;
- candidates that make a waiting read legal are tried first, and operations
  of unknown outcome last (only the order of trying changes);
- the model may leave out operations of unknown outcome whose effect nothing
  could observe (``droppable``), which otherwise multiply the search.

A budget bounds the search: ``timeout`` seconds, shared by all partitions,
and ``memory_mb`` of growth of the process's resident memory (the cache is
what grows). Past either, the verdict is ``"unknown"`` with the deepest
linearization found and the reason.

On failure the result carries evidence: the operation that cannot be
linearized (the one whose return blocked the deepest linearization found),
that longest linearizable prefix of its partition with the model state after
each step, and the operations concurrent with it.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

from checker.elle.registers import decide as decide_from_values
from checker.history import History, Op
from checker.models import ANY, UNKNOWN, Model, get_model

#: search steps between two looks at the clock (and turns between partitions)
_SLICE = 4096
#: how far past the first pending return the search looks for reads to prune with
_LOOKAHEAD_READS = 2
_LOOKAHEAD_ENTRIES = 64
_INF = float("inf")


class _Budget:
    """Time and memory limits, looked at every ``_SLICE`` steps of any search."""

    def __init__(self, timeout: float | None, memory_mb: float | None) -> None:
        self.timeout = timeout
        self.memory_mb = memory_mb
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.reason: str | None = None
        self._process = None
        self._baseline = 0
        if memory_mb is not None:
            import psutil

            self._process = psutil.Process()
            self._baseline = self._process.memory_info().rss

    def exceeded(self) -> bool:
        if self.reason is not None:
            return True
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.reason = f"time budget of {self.timeout} s exceeded"
        elif self._process is not None and self.memory_mb is not None:
            grown = self._process.memory_info().rss - self._baseline
            if grown > self.memory_mb * 2**20:
                self.reason = f"memory budget of {self.memory_mb} MB exceeded"
        return self.reason is not None


class _Outcome:
    """What searching one partition found."""

    __slots__ = ("blocked", "final_state", "prefix", "states", "steps", "verdict")

    def __init__(self, verdict: Any, prefix: list[int], states: list[Any], blocked: int | None,
                 final_state: Any, steps: int) -> None:
        self.verdict = verdict  # True, False or "unknown"
        self.prefix = prefix  # local op indexes, in linearization order
        self.states = states  # model state after each op of prefix
        self.blocked = blocked  # local op index that could not be linearized (or None)
        self.final_state = final_state
        self.steps = steps


def _search(model: Model, init_state: Any, inputs: list[Any], outputs: list[Any],
            calls: list[float], returns: list[float], budget: _Budget,
            ) -> Generator[None, None, _Outcome]:
    """WGL search over one partition. Ops are 0..n-1; returns[i] is +inf when unknown.

    A generator: it yields every ``_SLICE`` steps so several partitions can be
    searched in turns (the first one that fails ends the check, as Porcupine's
    parallel search does), and returns the :class:`_Outcome`.

    Each node of the search (a set of linearized operations and a state) is
    expanded in two phases. Phase A looks for an available read-only operation
    that is legal now; if there is one it is linearized *instead of* trying
    alternatives (a legal no-op can always be moved to the front of any valid
    completion), so backtracking passes over such "forced" steps; with the
    model's reachability predicate it also abandons the node if a waiting
    read, or one of the next reads not yet invoked, has become unsatisfiable.
    Phase B tries the other available operations one by one, as in plain WGL,
    those that satisfy a waiting read first and those of unknown outcome last.
    """
    n = len(inputs)
    # Entries: 0..n-1 are calls (entry i is op i's call), n.. are the returns that exist.
    timeline: list[tuple[float, int, int]] = []  # (time, kind: 0 call / 1 return, entry)
    match = [-1] * n
    entry_op: list[int] = list(range(n))
    for i in range(n):
        timeline.append((calls[i], 0, i))
        if returns[i] != _INF:
            entry = len(entry_op)
            entry_op.append(i)
            match[i] = entry
            timeline.append((returns[i], 1, entry))
    timeline.sort()
    total = len(entry_op)
    head, tail = total, total + 1
    nxt = [0] * (total + 2)
    prv = [0] * (total + 2)
    previous = head
    for _, _, entry in timeline:
        nxt[previous] = entry
        prv[entry] = previous
        previous = entry
    nxt[previous] = tail
    prv[tail] = previous
    nxt[tail] = tail  # never walked past: the loop stops before reaching it

    # kind of each entry: 0 read-only call whose legality is "state == expected"
    # (compared inline, no model call), 3 other read-only call, 1 other call,
    # 4 other call of unknown outcome, 2 return (and the head/tail sentinels).
    read_only = model.read_only
    expects = model.expects
    expected: list[Any] = [None] * n
    kind = []
    for i in range(n):
        if read_only(inputs[i], outputs[i]):
            want = expects(inputs[i], outputs[i])
            if want is ANY:
                kind.append(3)
            else:
                kind.append(0)
                expected[i] = want
        else:
            kind.append(1 if match[i] >= 0 else 4)
    kind += [2] * (total - n + 2)
    step = model.step
    reach = model.reachability(inputs, outputs)
    bits = [1 << i for i in range(n)]
    remaining = sum(1 for m in match if m >= 0)
    state = init_state
    linearized = 0
    # frames: (call entry, state before it, the node's candidates, index in them);
    # candidates is None for a forced (read-only) step, which is never revisited.
    stack: list[tuple[int, Any, list[tuple[int, Any]] | None, int]] = []
    cache: set[tuple[int, Any]] = set()
    best_len = -1
    best_stack: list[tuple[int, Any, Any, int]] = []
    best_state = init_state
    blocked: int | None = None
    visits = 0
    countdown = _SLICE
    verdict: Any = True
    cands: list[tuple[int, Any]] = []  # (call entry, state after it), legal ones only
    index = 0
    expand = True
    while True:
        countdown -= 1
        if not countdown:
            visits += _SLICE
            countdown = _SLICE
            if budget.exceeded():
                verdict = "unknown"
                break
            yield
        dead = False
        if expand:
            if not remaining:
                verdict = True
                break
            # Phase A: a legal read-only operation is taken without alternatives.
            # Meanwhile collect the other available calls, and the states that
            # the waiting (not yet legal) reads expect.
            normal: list[int] = []
            late: list[int] = []
            wanted: set[Any] | None = None
            forced = False
            entry = nxt[head]
            while True:
                k = kind[entry]
                if k == 2:
                    break
                if k == 0:
                    want = expected[entry]
                    if state != want:
                        if (reach is not None and match[entry] >= 0
                                and not reach(state, want, linearized)):
                            dead = True  # this read can never become legal any more
                            break
                        if wanted is None:
                            wanted = set()
                        wanted.add(want)
                        entry = nxt[entry]
                        continue
                    new_state = state
                elif k == 3:
                    ok, new_state = step(state, inputs[entry], outputs[entry])
                    if not ok:
                        entry = nxt[entry]
                        continue
                else:
                    if k == 1:
                        normal.append(entry)
                    else:
                        late.append(entry)  # unknown outcomes are tried last
                    entry = nxt[entry]
                    continue
                # a legal read-only operation: take it
                new_linearized = linearized | bits[entry]
                size = len(cache)
                cache.add((new_linearized, new_state))
                if len(cache) == size:
                    dead = True  # explored before and failed: so does this node
                    break
                stack.append((entry, state, None, 0))
                state = new_state
                linearized = new_linearized
                a, b = prv[entry], nxt[entry]
                nxt[a] = b
                prv[b] = a
                ret = match[entry]
                if ret >= 0:
                    a, b = prv[ret], nxt[ret]
                    nxt[a] = b
                    prv[b] = a
                    remaining -= 1
                forced = True
                break
            if forced:
                continue
            if not dead and reach is not None:
                # Reads not invoked yet must also be satisfiable from here: the
                # state at their linearization point is reached from this one.
                # Checking the next few catches a wrong order as soon as it is made.
                look = nxt[entry]
                found = 0
                budget_entries = _LOOKAHEAD_ENTRIES
                while found < _LOOKAHEAD_READS and budget_entries and look != tail:
                    if kind[look] == 0 and match[look] >= 0:
                        found += 1
                        if not reach(state, expected[look], linearized):
                            dead = True
                            break
                    look = nxt[look]
                    budget_entries -= 1
            if not dead:
                # Phase B candidates: the legal ones, those that make a waiting
                # read legal first (a heuristic: every candidate is still tried).
                cands = []
                first: list[tuple[int, Any]] = []
                for group in (normal, late):
                    for entry in group:
                        ok, new_state = step(state, inputs[entry], outputs[entry])
                        if ok:
                            if wanted is not None and new_state in wanted:
                                first.append((entry, new_state))
                            else:
                                cands.append((entry, new_state))
                if first:
                    cands = first + cands
                index = 0
        if not dead:
            # Phase B: try the candidates from `index` on.
            count = len(cands)
            while index < count:
                entry, new_state = cands[index]
                new_linearized = linearized | bits[entry]
                size = len(cache)
                cache.add((new_linearized, new_state))
                if len(cache) != size:
                    stack.append((entry, state, cands, index))
                    state = new_state
                    linearized = new_linearized
                    a, b = prv[entry], nxt[entry]
                    nxt[a] = b
                    prv[b] = a
                    ret = match[entry]
                    if ret >= 0:
                        a, b = prv[ret], nxt[ret]
                        nxt[a] = b
                        prv[b] = a
                        remaining -= 1
                    break
                index += 1
            if index < count:
                expand = True
                continue
        # Dead end: the first pending return cannot be reached. Backtrack.
        if len(stack) > best_len:
            best_len = len(stack)
            best_stack = stack.copy()
            best_state = state
            pending = nxt[head]
            while kind[pending] != 2:
                pending = nxt[pending]
            blocked = entry_op[pending] if pending != tail else None
        while stack:
            entry, state, frame_cands, index = stack.pop()
            linearized ^= bits[entry]
            ret = match[entry]
            if ret >= 0:
                prv[nxt[ret]] = ret
                nxt[prv[ret]] = ret
                remaining += 1
            prv[nxt[entry]] = entry
            nxt[prv[entry]] = entry
            if frame_cands is not None:
                cands = frame_cands
                index += 1
                break
        else:
            verdict = False
            break
        expand = False
    steps = visits + _SLICE - countdown
    if verdict is True:
        best_stack, best_state, blocked = stack, state, None
    elif verdict == "unknown" and len(stack) > best_len:
        best_stack, best_state = stack.copy(), state
    prefix = [frame[0] for frame in best_stack]
    states = [frame[1] for frame in best_stack[1:]] + ([best_state] if best_stack else [])
    return _Outcome(verdict, prefix, states, blocked, best_state, steps)


def _op_view(model: Model, op: Op, prepared: tuple[Any, Any]) -> dict[str, Any]:
    view = op.to_dict()
    view["description"] = model.describe_op(*prepared)
    return view


def _evidence(model: Model, key: Any, ops: list[Op], prepared: list[tuple[Any, Any]],
              outcome: _Outcome, init_state: Any) -> dict[str, Any]:
    evidence: dict[str, Any] = {"partition": key, "initial_state": model.describe(init_state)}
    evidence["prefix"] = [
        {"op": _op_view(model, ops[i], prepared[i]), "state": model.describe(state)}
        for i, state in zip(outcome.prefix, outcome.states, strict=True)
    ]
    evidence["state"] = model.describe(outcome.final_state)
    if outcome.blocked is None:
        return evidence
    culprit = ops[outcome.blocked]
    evidence["op"] = _op_view(model, culprit, prepared[outcome.blocked])
    ok, _ = model.step(outcome.final_state, *prepared[outcome.blocked])
    legality = "would be legal" if ok else "is not legal"
    after = (f"in state {model.describe(outcome.final_state)!r} "
             "after the longest linearizable prefix")
    if outcome.verdict is False:
        evidence["explanation"] = (
            f"{model.describe_op(*prepared[outcome.blocked])} {legality} {after}, and no "
            "other order of the operations invoked before it completed works")
    else:
        evidence["explanation"] = (
            f"the search ran out of budget; at its deepest point, "
            f"{model.describe_op(*prepared[outcome.blocked])} {legality} {after}")
    end = _INF if culprit.unknown or culprit.complete is None else culprit.complete
    in_prefix = set(outcome.prefix)
    concurrent = []
    for i, other in enumerate(ops):
        if i == outcome.blocked:
            continue
        other_end = _INF if other.unknown or other.complete is None else other.complete
        if other.call < end and other_end > culprit.call:
            view = _op_view(model, other, prepared[i])
            view["linearized_in_prefix"] = i in in_prefix
            if i not in in_prefix:
                legal, _ = model.step(outcome.final_state, *prepared[i])
                view["legal_after_prefix"] = legal
            concurrent.append(view)
    evidence["concurrent"] = concurrent
    return evidence


#: seconds a search may take to explain, in the usual terms, a violation proved from values
_EXPLAIN_BUDGET_S = 10.0


def _value_evidence(model: Model, key: Any, init_state: Any, ops: list[Op],
                    prepared: list[tuple[Any, Any]], decision: Any,
                    memory_mb: float | None) -> dict[str, Any]:
    """Evidence of a violation proved from values: the witness operations and why.

    The WGL search of that one key then gets a short budget to add the usual
    evidence (longest linearizable prefix, concurrent operations); the verdict
    does not depend on it.
    """
    witness = [_op_view(model, ops[i], prepared[i]) for i in decision.ops]
    proof = {"decided_from_values": True, "value_explanation": decision.explanation,
             "witness": witness}
    search = _search(model, init_state, [p[0] for p in prepared], [p[1] for p in prepared],
                     [op.call for op in ops],
                     [_INF if op.unknown or op.complete is None else op.complete for op in ops],
                     _Budget(_EXPLAIN_BUDGET_S, memory_mb))
    try:
        while True:
            next(search)
    except StopIteration as done:
        outcome: _Outcome = done.value
    if outcome.verdict is False:
        return {**_evidence(model, key, ops, prepared, outcome, init_state), **proof}
    evidence: dict[str, Any] = {"partition": key, "initial_state": model.describe(init_state),
                                "explanation": decision.explanation, "prefix": [], **proof}
    if witness:
        evidence["op"] = witness[0]
    return evidence


#: default memory budget: growth of resident memory during one check
DEFAULT_MEMORY_MB = 1024


def check_ops(ops: list[Op], model: Model, timeout: float | None = None,
              memory_mb: float | None = DEFAULT_MEMORY_MB,
              from_values: bool = True) -> dict[str, Any]:
    """Check operations (paired, as in :class:`History`) against ``model``.

    Partitions are searched in turns, a slice of steps each, so one that fails
    quickly is found even when another one is slow to search. With
    ``from_values`` a register partition whose written values are unique is
    first decided without a search where the values allow a proof either way
    (:mod:`checker.elle.registers`); the search runs on the rest.
    """
    started = time.monotonic()
    budget = _Budget(timeout, memory_mb)
    partitions = model.partition(ops)
    keys = sorted(partitions, key=lambda k: (k is not None, repr(k)))
    result: dict[str, Any] = {"valid": True, "model": model.name,
                              "partitions": len(partitions), "ops": 0, "evidence": {},
                              "unobserved_unknown_ops": 0}
    running: list[tuple[Any, Any, list[Op], list[tuple[Any, Any]], Generator]] = []
    decided = 0  # partitions decided from values, without a search (checker/elle/registers.py)
    value_failure = None
    for key in keys:
        part_ops: list[Op] = []
        prepared: list[tuple[Any, Any]] = []
        for op in partitions[key]:
            encoded = model.prepare(op)
            if encoded is not None:
                part_ops.append(op)
                prepared.append(encoded)
        unknown = [op.unknown or op.complete is None for op in part_ops]
        drop = model.droppable([p[0] for p in prepared], [p[1] for p in prepared], unknown)
        if drop:
            part_ops = [op for i, op in enumerate(part_ops) if i not in drop]
            prepared = [p for i, p in enumerate(prepared) if i not in drop]
            result["unobserved_unknown_ops"] += len(drop)
        result["ops"] += len(part_ops)
        init_state = model.init(key)
        decision = (decide_from_values(model, part_ops, prepared, init_state)
                    if from_values else None)
        if decision is not None:
            decided += 1
            if not decision.valid and value_failure is None:
                value_failure = (key, init_state, part_ops, prepared, decision)
            continue
        search = _search(
            model, init_state,
            [p[0] for p in prepared], [p[1] for p in prepared],
            [op.call for op in part_ops],
            [_INF if op.unknown or op.complete is None else op.complete for op in part_ops],
            budget)
        running.append((key, init_state, part_ops, prepared, search))
    result["decided_from_values"] = decided
    checked = decided
    steps = 0
    if value_failure is not None:  # a proof of non-linearizability: the other keys can wait
        for item in running:
            item[4].close()
        running = []
        result["valid"] = False
        result["evidence"] = _value_evidence(model, *value_failure, memory_mb)
    unknown: tuple[Any, Any, list[Op], list[tuple[Any, Any]], _Outcome] | None = None
    failed = None
    while running and failed is None:
        still = []
        for item in running:
            try:
                next(item[4])
            except StopIteration as done:
                outcome: _Outcome = done.value
                steps += outcome.steps
                if outcome.verdict is True:
                    checked += 1
                elif outcome.verdict is False:
                    failed = (*item[:4], outcome)
                    break
                elif unknown is None:
                    unknown = (*item[:4], outcome)
                continue
            still.append(item)
        running = still
    for item in running:
        item[4].close()
    chosen = failed or unknown
    if chosen is not None:
        key, init_state, part_ops, prepared, outcome = chosen
        result["valid"] = outcome.verdict
        result["evidence"] = _evidence(model, key, part_ops, prepared, outcome, init_state)
        if failed is None:
            result["reason"] = (
                f"{budget.reason or 'budget exceeded'} (partition {key!r} among others); "
                f"{checked} of {len(partitions)} partitions were checked linearizable")
    result["checked_partitions"] = checked
    result["search_steps"] = steps
    result["elapsed_s"] = round(time.monotonic() - started, 6)
    return result


def check_history(history: History, model: Model | str | None = None, initial: Any = None,
                  timeout: float | None = None,
                  memory_mb: float | None = DEFAULT_MEMORY_MB,
                  from_values: bool = True) -> dict[str, Any]:
    """Check a loaded history; ``model`` defaults to the one its format implies.

    Returns ``{"valid": True|False|"unknown", "model", "partitions", "ops",
    "evidence", ...}`` (and ``"reason"`` when unknown).
    """
    if model is None:
        model = history.default_model
    if isinstance(model, str):
        model = get_model(model, initial)
    return check_ops(history.ops, model, timeout, memory_mb, from_values)


__all__ = ["UNKNOWN", "check_history", "check_ops"]
