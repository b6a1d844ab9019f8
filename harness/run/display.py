"""Live terminal display of a run (rich): time left, op counts, faults, leader.

Only shown when stdout is a terminal and ``--no-display`` is not given: in
CI logs and pipes a live-updating panel is noise, the final summary is
enough.
"""

from __future__ import annotations

import sys
from typing import Any

import trio
from rich.console import Console
from rich.live import Live
from rich.table import Table

REFRESH = 0.25


def display_wanted(no_display: bool) -> bool:
    return not no_display and sys.stdout.isatty()


def render(state: Any) -> Table:
    """One table of the run's state (pure: tests render it without a terminal)."""
    table = Table(title=f"splitbrain run — {state.config.name()}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    left = state.time_left()
    table.add_row("phase", state.phase)
    table.add_row("time left", "—" if left is None else f"{left:5.1f} s")
    stats = state.stats
    table.add_row(
        "operations",
        f"[green]{stats.by_type['ok']} ok[/]  [red]{stats.by_type['fail']} fail[/]  "
        f"[yellow]{stats.by_type['info']} info[/]  ({stats.invoked} invoked)",
    )
    faults = state.current_faults()
    table.add_row("faults", ", ".join(faults) if faults else "none")
    leader = state.collector.leader if state.collector is not None else None
    table.add_row("leader", leader or "none known")
    return table


async def live_display(state: Any) -> None:
    """Refresh the panel until cancelled (the run cancels it when it ends)."""
    console = Console()
    with Live(render(state), console=console, refresh_per_second=4, transient=False) as live:
        while True:
            await trio.sleep(REFRESH)
            live.update(render(state))
