"""The simulator's discrete-event loop: a virtual clock and a heap of timed callbacks.

No real time passes and nothing runs concurrently: an event is a plain function
call at a virtual instant, and events at the same instant run in the order they
were scheduled (a sequence number breaks ties). That total order, together with
one seeded RNG, is what makes a simulated run reproducible byte for byte.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any


class BudgetExceeded(Exception):
    """The run did more work than its budget allows (a message storm or a livelock)."""


class Timer:
    """Handle of a scheduled callback; ``cancel()`` makes it a no-op (lazy deletion)."""

    __slots__ = ("active",)

    def __init__(self) -> None:
        self.active = True

    def cancel(self) -> None:
        self.active = False


class EventLoop:
    """Virtual time in seconds (float) and the heap of pending events."""

    def __init__(self, max_work: int | None = None) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, Timer | None, Callable[..., Any], tuple[Any, ...]]] = []
        self._seq = 0
        self.events_run = 0
        #: Events plus other units of work (Readies) done so far, against ``max_work``.
        self.work = 0
        self.max_work = max_work
        #: Set by an event that woke a task of the nemesis (harness.sim.control): run_until
        #: returns right after that event, so the task acts at the same virtual instant.
        self.woken = False

    def charge(self, units: int = 1) -> None:
        """Count work done inside an event; raise BudgetExceeded past the budget."""
        self.work += units
        if self.max_work is not None and self.work > self.max_work:
            raise BudgetExceeded(
                f"the simulation did more than {self.max_work} units of work by "
                f"t={self.now:.3f}s (a message storm or a livelock in the system under test)")

    def call_at(self, when: float, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` at virtual time ``when`` (never earlier than now)."""
        self._seq += 1
        heapq.heappush(self._heap, (max(when, self.now), self._seq, None, fn, args))

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        self.call_at(self.now + delay, fn, *args)

    def timer_at(self, when: float, fn: Callable[..., Any], *args: Any) -> Timer:
        """Like ``call_at`` but cancellable through the returned :class:`Timer`."""
        timer = Timer()
        self._seq += 1
        heapq.heappush(self._heap, (max(when, self.now), self._seq, timer, fn, args))
        return timer

    def run_until(self, deadline: float) -> bool:
        """Run every event due up to ``deadline``, then leave the clock at ``deadline``.

        False when an event set ``woken`` first: then it returns right after that
        event, with the clock at that event's time.
        """
        heap = self._heap
        pop = heapq.heappop
        count = 0
        reached = True
        while heap and heap[0][0] <= deadline:
            when, _seq, timer, fn, args = pop(heap)
            if timer is not None:
                if not timer.active:
                    continue
                timer.active = False
            self.now = when
            count += 1
            if count & 1023 == 0:
                self.events_run += 1024
                self.charge(1024)
            fn(*args)
            if self.woken:
                self.woken = False
                reached = False
                break
        self.events_run += count & 1023
        self.charge(count & 1023)
        if reached:
            self.now = max(self.now, deadline)
        return reached
