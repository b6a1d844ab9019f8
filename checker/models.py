"""Sequential specifications ("models") the linearizability checker checks against.

A model is a small object with five methods. To add your own, subclass
:class:`Model`, implement them, and register it with :func:`register_model`
(``splitbrain check --model NAME`` then finds it):

``init(key=None) -> state``
    The initial state of the partition holding ``key`` (None for models that
    do not partition). The value given by ``--init JSON`` is in
    ``self.initial`` (None when not given).
``prepare(op) -> (input, output) | None``
    Turn one :class:`checker.history.Op` into the plain values ``step`` gets,
    once, before the search (so the hot loop never touches Op objects).
    ``output`` is :data:`UNKNOWN` when the outcome is unknown (``info``).
    Return None to leave the operation out: a ``fail`` that certainly did not
    happen, or an unknown read, which can neither change nor reveal anything.
``step(state, input, output) -> (ok, new_state)``
    Apply one operation to a state: ``ok`` says whether the operation, with
    that output, is legal in that state. It must be pure, and states must be
    hashable and compared by value (the search caches (linearized set, state)
    pairs): use tuples, frozensets, strings, numbers, None.
``read_only(input, output) -> bool`` (optional, default False)
    True if the operation never changes the state in any state where it is
    legal (a read, a cas that failed its compare). The search then linearizes
    such an operation as soon as it is legal without trying alternatives,
    which is sound (moving a legal no-op earlier breaks nothing) and prunes a
    lot. Saying False is always safe; saying True wrongly gives wrong verdicts.
``expects(input, output)`` (optional)
    For a read-only operation that is legal exactly when ``state == X``,
    return X (the search then compares inline instead of calling ``step``);
    otherwise :data:`ANY`. The default suits models whose READ code reads.
``reachability(inputs, outputs) -> predicate | None`` (optional)
    Given the inputs and outputs of a partition's operations (operation i is
    bit ``1 << i`` of a linearized set), return ``reach(state, target,
    linearized)`` that is False only when no sequence of the operations not in
    ``linearized`` can lead from ``state`` to ``target`` (a register can only
    come to hold a value some remaining write sets). The search then abandons
    a branch as soon as a waiting read can no longer be satisfied. None (the
    default) disables this pruning.
``droppable(inputs, outputs, unknown) -> set[int]`` (optional)
    Indexes of operations of unknown outcome that can be left out of the
    search because nothing else could ever observe their effect (a write of
    a value no read returns and no cas expects). Such an operation may as
    well never have happened, and trying it at every point is the costliest
    part of a search. The default leaves nothing out.
``partition(ops) -> {key: [op, ...]}``
    Split a history into independent sub-histories (P-compositionality: a
    history is linearizable iff every partition is). The default keeps one
    partition; key/value models split by key.
``describe(state)`` / ``describe_op(input, output)``
    A JSON-friendly value / a short text, for evidence and reports.

An operation of unknown outcome may be linearized at any point after its
invocation, or never; ``step`` only has to say what it would do if it took
effect (for a cas of unknown outcome: legal only if the compare matches,
since a cas that did not match changed nothing, which is the same as never).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Any

from checker.history import Op


class _Unknown:
    """The output of an operation whose outcome is unknown."""

    _instance: _Unknown | None = None

    def __new__(cls) -> _Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()


class _Any:
    """Returned by ``Model.expects`` for a read-only op that is not a plain equality test."""

    def __repr__(self) -> str:
        return "ANY"


ANY: Any = _Any()

# Operation codes used inside inputs (small ints keep the search's tuples cheap).
READ, WRITE, CAS, APPEND, PUT, ACQUIRE, RELEASE, TXN = range(8)
_OP_NAMES = {READ: "read", WRITE: "write", CAS: "cas", APPEND: "append", PUT: "put",
             ACQUIRE: "acquire", RELEASE: "release", TXN: "txn"}


class ModelError(ValueError):
    """An operation or initial value the model cannot interpret."""


def freeze(value: Any) -> Hashable:
    """A hashable, value-compared copy of a JSON-like value (lists become tuples)."""
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    if isinstance(value, dict):
        return frozenset((freeze(k), freeze(v)) for k, v in value.items())
    if isinstance(value, set | frozenset):
        return frozenset(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """The JSON-friendly inverse of :func:`freeze` (tuples become lists)."""
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    if isinstance(value, frozenset):
        items = list(value)
        if all(isinstance(i, tuple) and len(i) == 2 for i in items):
            return {str(k): thaw(v) for k, v in sorted(items, key=repr)}
        return sorted((thaw(v) for v in items), key=repr)
    return value


class Model:
    """Base class: see the module docstring for the contract."""

    name = "model"

    def __init__(self, initial: Any = None) -> None:
        self.initial = initial

    def init(self, key: Any = None) -> Hashable:
        return freeze(self.initial)

    def prepare(self, op: Op) -> tuple[Any, Any] | None:
        raise NotImplementedError

    def step(self, state: Any, input: Any, output: Any) -> tuple[bool, Any]:
        raise NotImplementedError

    def read_only(self, input: Any, output: Any) -> bool:
        return input[0] == READ

    def expects(self, input: Any, output: Any) -> Any:
        """For a read-only op legal exactly when ``state == X``: X; otherwise ANY."""
        return output if input[0] == READ else ANY

    def reachability(self, inputs: list[Any],
                     outputs: list[Any]) -> Callable[[Any, Any, int], bool] | None:
        return None

    def droppable(self, inputs: list[Any], outputs: list[Any], unknown: list[bool]) -> set[int]:
        return set()

    def partition(self, ops: Iterable[Op]) -> dict[Any, list[Op]]:
        return {None: list(ops)}

    def describe(self, state: Any) -> Any:
        return thaw(state)

    def describe_op(self, input: Any, output: Any) -> str:
        name = _OP_NAMES.get(input[0], str(input[0]))
        args = " ".join(_show(a) for a in input[1:])
        text = f"{name} {args}".strip()
        if output is UNKNOWN:
            return f"{text} -> ?"
        if input[0] in (READ, TXN) or output is not None:
            return f"{text} -> {_show(output)}"
        return text


def show_value(value: Any) -> str:
    """A frozen value as Knossos prints it: nil, [1 2 3], 'strings' quoted."""
    if value is None:
        return "nil"
    if isinstance(value, tuple):
        return "[" + " ".join(show_value(v) for v in value) + "]"
    return repr(value) if isinstance(value, str) else str(value)


_show = show_value


def _split_by_key(ops: Iterable[Op]) -> dict[Any, list[Op]]:
    groups: dict[Any, list[Op]] = {}
    for op in ops:
        key = op.key
        if isinstance(key, list | dict):
            key = freeze(key)
        groups.setdefault(key, []).append(op)
    return groups


def _cas_pair(op: Op) -> tuple[Any, Any]:
    value = op.value
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ModelError(f"a cas needs the value [expected, new], got {value!r} (op {op.id})")
    return freeze(value[0]), freeze(value[1])


Reach = Callable[[Any, Any, int], bool]


def _unobserved_unknowns(inputs: list[Any], outputs: list[Any],
                         unknown: list[bool]) -> set[int]:
    """Unknown-outcome writes, cas and appends whose value nothing observes.

    For registers (and raft-kv's lists), such an operation can be removed from
    any valid linearization: while its value is current no read can sit there
    (none returns it) and no cas can succeed (none expects it); an append's
    element would show in every later read of the list until a write resets
    it, and no read shows it. Values that are None or whole lists are kept
    (they interact with appends and absence), as is anything mentioned.
    """
    mentioned: set[Any] = set()
    for inp, out in zip(inputs, outputs, strict=True):
        seen = out if inp[0] == READ else inp[1] if inp[0] == CAS else _NOTHING
        if seen is _NOTHING:
            continue
        mentioned.add(seen)
        if type(seen) is tuple:
            mentioned.update(seen)
    drop = set()
    for i, inp in enumerate(inputs):
        if not unknown[i] or inp[0] not in (WRITE, CAS, APPEND):
            continue
        value = inp[2] if inp[0] == CAS else inp[1]
        if value is None or type(value) is tuple:
            continue
        try:
            if value in mentioned:
                continue
        except TypeError:
            continue
        drop.add(i)
    return drop


_NOTHING = object()


def _setters(inputs: list[Any], outputs: list[Any]) -> dict[Any, int]:
    """value -> bitset of the operations that may set the state to exactly that value."""
    masks: dict[Any, int] = {}
    for i, (inp, out) in enumerate(zip(inputs, outputs, strict=True)):
        if inp[0] in (WRITE, PUT):
            value = inp[1]
        elif inp[0] == CAS and out is not False:
            value = inp[2]
        else:
            continue
        masks[value] = masks.get(value, 0) | (1 << i)
    return masks


def _register_reach(inputs: list[Any], outputs: list[Any]) -> Reach:
    """For registers: a value can only appear if it is current or a remaining op sets it."""
    setters = _setters(inputs, outputs).get

    def reach(state: Any, target: Any, linearized: int) -> bool:
        return state == target or bool(setters(target, 0) & ~linearized)

    return reach


def _sequence_reach(inputs: list[Any], outputs: list[Any], empty: Any) -> Reach:
    """For lists and strings grown by appends and reset by writes/puts.

    ``target`` is reachable if it is current, set whole by a remaining op, or
    extends the current value (or a value a remaining op sets, or ``empty``
    when something may start a fresh one) and a remaining append exists.
    """
    setters = _setters(inputs, outputs)
    exact = setters.get
    append_mask = 0
    for i, inp in enumerate(inputs):
        if inp[0] == APPEND:
            append_mask |= 1 << i
    sequence = type(empty)
    prefix_masks: dict[Any, int] = {}

    def prefix_mask(target: Any) -> int:
        mask = 0
        for value, bits in setters.items():
            if value is None or value == empty or (
                    type(value) is sequence and target[: len(value)] == value):
                mask |= bits
        prefix_masks[target] = mask
        return mask

    def reach(state: Any, target: Any, linearized: int) -> bool:
        if state == target:
            return True
        remaining = ~linearized
        if exact(target, 0) & remaining:
            return True
        if type(target) is not sequence or not append_mask & remaining:
            return False
        if state is None or (type(state) is sequence and target[: len(state)] == state):
            return True
        mask = prefix_masks.get(target)
        if mask is None:
            mask = prefix_mask(target)
        return bool(mask & remaining)

    return reach


class KeyedModel(Model):
    """A model whose keys are independent: partitions by ``op.key``.

    ``--init`` may be one value (every key starts with it) or a JSON object
    mapping keys to their initial values (keys not in it start with the
    model's default).
    """

    default_initial: Any = None

    def init(self, key: Any = None) -> Hashable:
        if isinstance(self.initial, dict):
            value = self.initial.get(key, self.initial.get(str(key), self.default_initial))
        else:
            value = self.default_initial if self.initial is None else self.initial
        if type(self.default_initial) is str and not isinstance(value, str):
            raise ModelError(f"{self.name}: the initial value must be a string, got {value!r}")
        return freeze(value)

    def partition(self, ops: Iterable[Op]) -> dict[Any, list[Op]]:
        return _split_by_key(ops)


class Register(KeyedModel):
    """Knossos's ``register``: read/write; a read of nil is no constraint (Knossos semantics)."""

    name = "register"

    def prepare(self, op: Op) -> tuple[Any, Any] | None:
        if op.type == "fail":
            return None
        if op.f == "read":
            if op.unknown or op.output is None:
                return None  # tells nothing
            return (READ,), freeze(op.output)
        if op.f == "write":
            return (WRITE, freeze(op.value)), None
        raise ModelError(f"{self.name}: unknown operation {op.f!r} (op {op.id})")

    def step(self, state: Any, input: Any, output: Any) -> tuple[bool, Any]:
        if input[0] == READ:
            return output == state, state
        return True, input[1]

    def reachability(self, inputs: list[Any], outputs: list[Any]) -> Reach | None:
        return _register_reach(inputs, outputs)

    def droppable(self, inputs: list[Any], outputs: list[Any], unknown: list[bool]) -> set[int]:
        return _unobserved_unknowns(inputs, outputs, unknown)


class CasRegister(Register):
    """Knossos's ``cas-register``: read/write/cas ``[expected, new]``.

    A ``fail`` did not happen; a read of nil is no constraint (as in Knossos).
    """

    name = "cas-register"

    def prepare(self, op: Op) -> tuple[Any, Any] | None:
        if op.f == "cas":
            if op.type == "fail":
                return None
            expected, new = _cas_pair(op)
            return (CAS, expected, new), (UNKNOWN if op.unknown else True)
        return super().prepare(op)

    def step(self, state: Any, input: Any, output: Any) -> tuple[bool, Any]:
        code = input[0]
        if code == READ:
            return output == state, state
        if code == WRITE:
            return True, input[1]
        if state == input[1]:
            return True, input[2]
        return False, state


class RaftKV(KeyedModel):
    """The key/value state machine of ``raft_impl``: read/write/cas/append per key.

    A key never written reads as null (an exact observation, unlike Knossos's
    nil reads). ``cas`` takes ``[expected, new]`` and a failed cas did not
    happen. ``append`` adds its value at the end of the key's list (a key never
    written counts as the empty list); reads of a list compare element-wise.
    """

    name = "raft-kv"

    def prepare(self, op: Op) -> tuple[Any, Any] | None:
        if op.type == "fail":
            return None
        f = op.f
        if f == "read":
            if op.unknown:
                return None
            return (READ,), freeze(op.output)
        if f == "write":
            return (WRITE, freeze(op.value)), None
        if f == "cas":
            expected, new = _cas_pair(op)
            return (CAS, expected, new), (UNKNOWN if op.unknown else True)
        if f == "append":
            return (APPEND, freeze(op.value)), None
        raise ModelError(f"raft-kv: unknown operation {f!r} (op {op.id})")

    def step(self, state: Any, input: Any, output: Any) -> tuple[bool, Any]:
        code = input[0]
        if code == READ:
            return output == state, state
        if code == WRITE:
            return True, input[1]
        if code == CAS:
            if state == input[1]:
                return True, input[2]
            return False, state
        # append
        if state is None:
            return True, (input[1],)
        if type(state) is tuple:
            return True, (*state, input[1])
        return False, state  # appending to a non-list value is refused by the store


    def reachability(self, inputs: list[Any], outputs: list[Any]) -> Reach | None:
        return _sequence_reach(inputs, outputs, ())

    def droppable(self, inputs: list[Any], outputs: list[Any], unknown: list[bool]) -> set[int]:
        return _unobserved_unknowns(inputs, outputs, unknown)


class PorcupineKV(KeyedModel):
    """Porcupine's key/value model: per key a string, ``get``/``put``/``append``.

    State starts as the empty string; ``put v`` sets it, ``append v``
    concatenates, ``get`` must return it exactly.
    """

    name = "kv"
    default_initial = ""

    def prepare(self, op: Op) -> tuple[Any, Any] | None:
        if op.type == "fail":
            return None
        f = op.f
        if f == "get":
            if op.unknown:
                return None
            return (READ,), freeze(op.output)
        if f in ("put", "append"):
            if not isinstance(op.value, str):
                raise ModelError(f"kv: {f} needs a string value, got {op.value!r} (op {op.id})")
            return (PUT if f == "put" else APPEND, op.value), None
        raise ModelError(f"kv: unknown operation {f!r} (op {op.id})")

    def step(self, state: Any, input: Any, output: Any) -> tuple[bool, Any]:
        code = input[0]
        if code == READ:
            return output == state, state
        if code == PUT:
            return True, input[1]
        return True, state + input[1]

    def reachability(self, inputs: list[Any], outputs: list[Any]) -> Reach | None:
        return _sequence_reach(inputs, outputs, "")

    def describe_op(self, input: Any, output: Any) -> str:
        text = super().describe_op(input, output)
        return "get" + text[len("read"):] if input[0] == READ else text


class Etcd(KeyedModel):
    """Porcupine's etcd model: one CAS register that starts absent (state None).

    A read of nil is legal only while nothing has been written; ``:ok :cas``
    means the compare matched, ``:fail :cas`` that it did not (an observation,
    not a non-event); unknown outcomes may or may not have taken effect.
    """

    name = "etcd"

    def prepare(self, op: Op) -> tuple[Any, Any] | None:
        f = op.f
        if f == "read":
            if op.type != "ok":
                return None  # a read that timed out or failed tells nothing
            return (READ,), freeze(op.output)
        if f == "write":
            if op.type == "fail":
                return None
            return (WRITE, freeze(op.value)), None
        if f == "cas":
            expected, new = _cas_pair(op)
            output = UNKNOWN if op.unknown else op.type == "ok"
            return (CAS, expected, new), output
        raise ModelError(f"etcd: unknown operation {f!r} (op {op.id})")

    def step(self, state: Any, input: Any, output: Any) -> tuple[bool, Any]:
        code = input[0]
        if code == READ:
            return output == state, state
        if code == WRITE:
            return True, input[1]
        matched = state is not None and state == input[1]
        if output is True:
            return matched, input[2]
        if output is False:
            return not matched, state
        return matched, input[2]  # unknown: only a matching cas changes anything

    def read_only(self, input: Any, output: Any) -> bool:
        return input[0] == READ or (input[0] == CAS and output is False)

    def reachability(self, inputs: list[Any], outputs: list[Any]) -> Reach | None:
        return _register_reach(inputs, outputs)  # nothing makes the register absent again

    def describe(self, state: Any) -> Any:
        return "absent" if state is None else thaw(state)


class MultiRegister(Model):
    """Knossos's ``multi-register``: transactions of ``[f, key, value]`` micro-ops.

    ``f`` is ``read`` or ``write``; a read of nil is no constraint. An ok
    transaction's reads come from its completion. Single-key ``read``/``write``
    operations with a ``key`` are accepted too. ``--init`` is a JSON object.
    """

    name = "multi-register"

    def init(self, key: Any = None) -> Hashable:
        if self.initial is None:
            return frozenset()
        if not isinstance(self.initial, dict):
            raise ModelError("multi-register: --init must be a JSON object")
        return freeze(self.initial)

    def prepare(self, op: Op) -> tuple[Any, Any] | None:
        if op.type == "fail":
            return None
        if op.f == "txn":
            micro = op.value if op.unknown or op.output is None else op.output
            if not isinstance(micro, list | tuple):
                raise ModelError(f"multi-register: txn value must be a list (op {op.id})")
            parsed = []
            for item in micro:
                if not isinstance(item, list | tuple) or len(item) != 3 or item[0] not in (
                        "read", "write"):
                    raise ModelError(
                        f"multi-register: micro-op must be [read|write, key, value] (op {op.id})")
                if item[0] == "read" and (op.unknown or item[2] is None):
                    continue
                parsed.append((item[0] == "write", freeze(item[1]), freeze(item[2])))
            if not any(w for w, _, _ in parsed) and op.unknown:
                return None
            return (TXN, tuple(parsed)), (UNKNOWN if op.unknown else None)
        if op.f in ("read", "write"):
            if op.f == "read" and (op.unknown or op.output is None):
                return None
            value = op.output if op.f == "read" else op.value
            return (TXN, ((op.f == "write", freeze(op.key), freeze(value)),)), None
        raise ModelError(f"multi-register: unknown operation {op.f!r} (op {op.id})")

    def step(self, state: Any, input: Any, output: Any) -> tuple[bool, Any]:
        current = dict(state)
        for is_write, key, value in input[1]:
            if is_write:
                current[key] = value
            elif current.get(key) != value:
                return False, state
        return True, frozenset(current.items())

    def read_only(self, input: Any, output: Any) -> bool:
        return not any(is_write for is_write, _, _ in input[1])

    def expects(self, input: Any, output: Any) -> Any:
        return ANY

    def describe_op(self, input: Any, output: Any) -> str:
        parts = [f"{'w' if w else 'r'} {_show(k)} {_show(v)}" for w, k, v in input[1]]
        return "txn [" + ", ".join(parts) + "]" + (" -> ?" if output is UNKNOWN else "")


class Mutex(Model):
    """A lock: ``acquire`` is legal only when free, ``release`` only when held."""

    name = "mutex"

    def init(self, key: Any = None) -> Hashable:
        return bool(self.initial)

    def prepare(self, op: Op) -> tuple[Any, Any] | None:
        if op.type == "fail":
            return None
        if op.f == "acquire":
            return (ACQUIRE,), (UNKNOWN if op.unknown else None)
        if op.f == "release":
            return (RELEASE,), (UNKNOWN if op.unknown else None)
        raise ModelError(f"mutex: unknown operation {op.f!r} (op {op.id})")

    def step(self, state: Any, input: Any, output: Any) -> tuple[bool, Any]:
        if input[0] == ACQUIRE:
            return not state, True
        return state, False

    def read_only(self, input: Any, output: Any) -> bool:
        return False

    def describe(self, state: Any) -> Any:
        return "held" if state else "free"


MODELS: dict[str, Callable[[Any], Model]] = {}


def register_model(name: str, factory: Callable[[Any], Model]) -> None:
    """Make a model available by name (``factory(initial)`` builds it)."""
    MODELS[name] = factory


for _cls in (Register, CasRegister, MultiRegister, Mutex, PorcupineKV, Etcd, RaftKV):
    register_model(_cls.name, _cls)


def get_model(name: str, initial: Any = None) -> Model:
    """The model called ``name``, with initial value ``initial`` (from ``--init``)."""
    try:
        factory = MODELS[name]
    except KeyError:
        raise ModelError(
            f"unknown model {name!r} (one of {', '.join(sorted(MODELS))})") from None
    return factory(initial)
