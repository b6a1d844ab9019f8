"""The shared node-process lifecycle, re-exported where the adapters import it from."""

from harness.processdb import NodeSlot, ProcessDB, free_ports

__all__ = ["NodeSlot", "ProcessDB", "free_ports"]
