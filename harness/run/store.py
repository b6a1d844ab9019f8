"""The store: one directory per run, ``store/<test-name>/<UTC timestamp>/``.

Layout (docs/DESIGN.md, "Store layout", has every file)::

    store/
      latest -> raft_impl-partition-kill/20261128T042651.123Z
      raft_impl-partition-kill/
        latest -> 20261128T042651.123Z
        20261128T042651.123Z/
          test.json          full configuration: seed, workload, schedule, command line
          history.jsonl      written as it happens
          observations.jsonl node statuses/logs/digests (log-order checker input)
          messages.jsonl     network trace (proxy backend, when tracing)
          nodes/<id>/        stdout.jsonl, stderr.log, data/, final-log.json
          results.json       checker verdicts
          report.html        the self-contained report

Timestamps are UTC with milliseconds and ``Z`` so that names sort in time
order and never collide for runs a millisecond apart; a collision anyway
gets a numeric suffix.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import os
import re
from pathlib import Path
from typing import Any

from splitbrain_common import files
from splitbrain_common.errors import UserError

#: errno values that mean the store cannot take more data (as opposed to a bug).
STORE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG,
                          errno.EACCES, errno.EPERM})


class StoreError(UserError):
    """The store cannot be written (full, read-only, not ours): one line, exit 2."""


def store_problem(exc: BaseException) -> OSError | None:
    """The OSError in ``exc`` (or a leaf of its group) that says the store cannot be
    written, if there is one."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = store_problem(inner)
            if found is not None:
                return found
        return None
    if isinstance(exc, OSError) and exc.errno in STORE_ERRNOS:
        return exc
    return None


_UNSAFE = re.compile(r"[^A-Za-z0-9._,+=-]+")


def safe_name(name: str) -> str:
    """A test name usable as one path component."""
    cleaned = _UNSAFE.sub("_", name).strip("._") or "test"
    return cleaned[:120]


def utc_stamp(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    return now.strftime("%Y%m%dT%H%M%S.") + f"{now.microsecond // 1000:03d}Z"


def create_run_dir(store: Path, test_name: str, now: dt.datetime | None = None) -> Path:
    """Make a fresh run directory and point the ``latest`` links at it."""
    test_dir = store / safe_name(test_name)
    test_dir.mkdir(parents=True, exist_ok=True)
    stamp = utc_stamp(now)
    run_dir = test_dir / stamp
    suffix = 1
    while True:
        try:
            run_dir.mkdir()
            break
        except FileExistsError:
            suffix += 1
            run_dir = test_dir / f"{stamp}-{suffix}"
    (run_dir / files.NODES).mkdir()
    _point(store / files.LATEST, run_dir.relative_to(store))
    _point(test_dir / files.LATEST, Path(run_dir.name))
    return run_dir


def _point(link: Path, target: Path) -> None:
    """Atomically (re)point a relative symlink (rename over the old one)."""
    temporary = link.with_name(f".{link.name}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    try:
        temporary.symlink_to(target)
        temporary.replace(link)
    except OSError:
        # A filesystem without symlinks loses only the convenience link.
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def write_json(path: Path, data: Any) -> None:
    """Write JSON via a temporary file and rename, so readers never see half a file.

    If the write fails (a full disk, a read-only store) the old file, if any, is
    left as it was and no temporary file stays behind; the OSError is raised.
    """
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        temporary.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
        temporary.replace(path)
    except OSError:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def resolve_run_dir(path: Path) -> Path:
    """Accept a run dir, a test dir or a store dir (then its latest run)."""
    path = Path(path)
    if (path / files.TEST_JSON).exists() or (path / files.HISTORY).exists():
        return path
    latest = path / files.LATEST
    if latest.exists():
        return resolve_run_dir(latest.resolve())
    raise FileNotFoundError(
        f"{path} is not a run directory (no {files.TEST_JSON} or {files.HISTORY})")
