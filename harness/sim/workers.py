"""``splitbrain fuzz --workers N``: N searches in parallel over one example database.

Each worker is a ``splitbrain fuzz`` process of its own (a Python process per
core: the simulator is CPU-bound), with its own search seed and the same
Hypothesis example database:

- a directory (``--db-dir``; ``hypothesis.database.DirectoryBasedExampleDatabase``)
  for the workers of one machine (by default a temporary one for the campaign);
- Redis (``--redis URL``; ``hypothesis.extra.redis.RedisExampleDatabase``) for
  workers on several machines.

Hypothesis itself keeps every failing example it found (shrunk) in that
database and replays it first when a search of the same property starts.
On top of that, a worker that meets a failure announces it at once (before
shrinking it) under a key of its campaign (:func:`campaign_key`: the bugs,
cluster size, read modes, workload... everything that defines the property);
every other worker of the campaign, here or on another machine, checks that
key between two tests, stops searching and replays the announced test (the
simulator is deterministic, so it must fail again), then exits. So the first
failure stops all, and each worker confirms it. A worker that starts while a
failure is announced replays it first; if it no longer fails (the bug was
fixed) the announcement is withdrawn and the search goes on.

The parent (:func:`supervise`) runs the workers as Trio-managed subprocesses:
their progress lines go to stderr prefixed ``[wN]``, their results come back as
JSON lines on stdout (never pickle). Ctrl-C or SIGTERM cancels the nursery:
every worker gets SIGTERM (SIGKILL 5 s later), the exit code is 2. Exit 1 when
a worker found (or confirmed) a failure, 0 when none did.
"""

from __future__ import annotations

import functools
import hashlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import trio
from hypothesis.database import ExampleDatabase

#: Seconds the other workers get to stop by themselves after a failure was saved
#: (they see the announcement within one test, then replay it) before SIGTERM.
STOP_GRACE = 60.0
#: Seconds between two looks at the announcement key (one database read).
POLL_INTERVAL = 0.5
ANNOUNCE_PREFIX = b"splitbrain-fuzz-failure:"


def campaign_key(**definition: Any) -> bytes:
    """The announcement key of a campaign: a digest of what defines its property.

    Workers of the same ``splitbrain fuzz`` options share it, whatever their seeds;
    different bugs or cluster sizes do not.
    """
    text = json.dumps(definition, sort_keys=True, default=list)
    return ANNOUNCE_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:32].encode()


class CampaignDatabase(ExampleDatabase):
    """One campaign's view of a shared example database: its keys carry the campaign key.

    Hypothesis keys a test's examples by a digest of the test function, and every
    campaign's property is the same function: without this, a ``--bug A`` search
    would replay (and, finding them valid, drop) the failures a ``--bug B`` search
    saved in the same database.
    """

    def __init__(self, inner: ExampleDatabase, prefix: bytes) -> None:
        super().__init__()
        self.inner = inner
        self.prefix = prefix + b":"

    def save(self, key: bytes, value: bytes) -> None:
        self.inner.save(self.prefix + key, value)

    def fetch(self, key: bytes) -> Iterable[bytes]:
        return self.inner.fetch(self.prefix + key)

    def delete(self, key: bytes, value: bytes) -> None:
        self.inner.delete(self.prefix + key, value)

    def move(self, src: bytes, dest: bytes, value: bytes) -> None:
        self.inner.move(self.prefix + src, self.prefix + dest, value)


def open_database(db_dir: str | None, redis_url: str | None) -> Any:
    """The example database the options name (None: none). Raises ValueError with a
    one-line reason when Redis cannot be used."""
    if redis_url:
        try:
            import redis
            from hypothesis.extra.redis import RedisExampleDatabase
        except ImportError as exc:
            raise ValueError(f"--redis needs the redis package ({exc.name} is missing): "
                             "pip install 'splitbrain[redis]'") from None
        client = redis.Redis.from_url(redis_url, socket_connect_timeout=5)
        try:
            client.ping()
        except redis.RedisError as exc:
            raise ValueError(f"cannot reach Redis at {redis_url}: {exc}") from None
        return RedisExampleDatabase(client, key_prefix=b"splitbrain-hypothesis:")
    if db_dir:
        from hypothesis.database import DirectoryBasedExampleDatabase

        return DirectoryBasedExampleDatabase(db_dir)
    return None


@dataclass
class Announcements:
    """The failures workers of one campaign announce to each other, in the database."""

    database: Any
    key: bytes
    worker: str
    _last_poll: float = 0.0

    def announce(self, test_json: dict[str, Any]) -> None:
        value = json.dumps({"worker": self.worker, "test": test_json}, sort_keys=True)
        self.database.save(self.key, value.encode())

    def find(self, *, rate_limited: bool = False) -> dict[str, Any] | None:
        """A failure another worker announced (``{"worker", "test"}``), or None."""
        if rate_limited:
            now = time.monotonic()
            if now - self._last_poll < POLL_INTERVAL:
                return None
            self._last_poll = now
        for value in self.database.fetch(self.key):
            try:
                found = json.loads(value)
            except ValueError:
                continue
            if isinstance(found, dict) and found.get("worker") != self.worker:
                return found
        return None

    def withdraw(self, found: dict[str, Any]) -> None:
        value = json.dumps(found, sort_keys=True)
        self.database.delete(self.key, value.encode())


def emit(record: dict[str, Any], out: TextIO | None = None) -> None:
    """One JSON line from a worker to its parent (stdout)."""
    stream = sys.stdout if out is None else out
    stream.write(json.dumps(record, sort_keys=True) + "\n")
    stream.flush()


@dataclass
class WorkerState:
    index: int
    code: int | None = None
    found_after: float | None = None
    done: dict[str, Any] = field(default_factory=dict)


@dataclass
class Supervision:
    """What the parent learnt from its workers."""

    workers: list[WorkerState]
    interrupted: bool = False
    first_found_s: float | None = None
    elapsed_s: float = 0.0

    @property
    def exit_code(self) -> int:
        codes = [w.code for w in self.workers]
        if any(code == 1 for code in codes):
            return 1
        if self.interrupted or any(code != 0 for code in codes):
            return 2
        return 0


async def supervise(argvs: Sequence[list[str]], *, err: TextIO,
                    on_record: Callable[[int, dict[str, Any]], None] | None = None,
                    grace: float = STOP_GRACE) -> Supervision:
    """Run one worker per argv until all have exited (see the module docstring)."""
    started = trio.current_time()
    states = [WorkerState(i) for i in range(len(argvs))]
    result = Supervision(states)

    async def watch_signals(nursery: trio.Nursery,
                            task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                            ) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                result.interrupted = True
                print(f"splitbrain fuzz: {signal.Signals(signum).name}: stopping the "
                      "workers", file=err, flush=True)
                nursery.cancel_scope.cancel()
                return

    async def one(state: WorkerState, argv: list[str], everyone: trio.Nursery) -> None:
        async with trio.open_nursery() as own:
            process = await own.start(functools.partial(
                trio.run_process, argv, stdout=subprocess.PIPE, check=False))
            buffer = b""
            async for chunk in process.stdout:
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    handle(state, line, everyone)
        state.code = process.returncode
        if state.code == 1:  # the others see the announcement; SIGTERM if they linger
            deadline = trio.current_time() + grace
            everyone.cancel_scope.deadline = min(everyone.cancel_scope.deadline, deadline)

    def handle(state: WorkerState, line: bytes, everyone: trio.Nursery) -> None:
        try:
            record = json.loads(line)
        except ValueError:
            print(f"[w{state.index}] {line.decode(errors='replace')}", file=err, flush=True)
            return
        if not isinstance(record, dict):
            return
        if record.get("event") == "found" and state.found_after is None:
            state.found_after = trio.current_time() - started
            if result.first_found_s is None:
                result.first_found_s = state.found_after
        elif record.get("event") == "done":
            state.done = record
        if on_record is not None:
            on_record(state.index, record)

    async with trio.open_nursery() as everyone:
        await everyone.start(watch_signals, everyone)
        async with trio.open_nursery() as workers:
            for state, argv in zip(states, argvs, strict=True):
                workers.start_soon(one, state, argv, workers)
        everyone.cancel_scope.cancel()  # the signal watcher
    result.elapsed_s = trio.current_time() - started
    return result


def worker_seed(seed: int | None, index: int) -> int | None:
    """Worker ``index``'s search seed: worker 0 searches as a single ``--seed`` fuzz
    would; the others get seeds of their own derived from it."""
    if seed is None:
        return None
    return seed if index == 0 else seed + 7919 * index
