"""One run per output: a lock file beside ``--out`` that names the run holding it.

Two identical runs into one output would both compute every block (each
resumes from the same markers). The lock makes the second refuse, naming the
first; a lock left by a killed run on this host (its pid is gone) is taken
over. Only local outputs are locked: an object store has no atomic create.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import socket
import sys
import uuid
from collections.abc import Iterator
from typing import Any

from bigdist.errors import OutputLockedError

logger = logging.getLogger("bigdist")


def lock_path(out: str) -> str | None:
    """The lock file of output ``out``, or None for a URL (not locked)."""
    if "://" in out and not out.startswith("file://"):
        return None
    local = out.removeprefix("file://")
    return os.path.abspath(os.path.expanduser(local)).rstrip(os.sep) + ".lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _read(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as f:
            holder = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _stale(holder: dict[str, Any]) -> bool:
    """Whether the run named by a lock is known to be gone: same host, pid no longer running."""
    pid = holder.get("pid")
    return holder.get("host") == socket.gethostname() and isinstance(pid, int) and not _alive(pid)


def _try_create(path: str, content: dict[str, Any]) -> bool:
    """Create the lock with its content in one step (a hard link fails if it exists), or return False."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    scratch = f"{path}.{content['token']}"
    with open(scratch, "w", encoding="utf-8") as f:
        json.dump(content, f)
    try:
        os.link(scratch, path)
    except FileExistsError:
        return False
    finally:
        os.unlink(scratch)
    return True


@contextlib.contextmanager
def output_lock(out: str) -> Iterator[None]:
    """Hold the lock of output ``out`` for the duration of the block.

    Raises
    ------
    OutputLockedError
        A running process (or one on another host, which cannot be checked) holds the lock.
    """
    path = lock_path(out)
    if path is None:
        logger.info("%s is a URL: not locked against a concurrent run into the same output", out)
        yield
        return
    content = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["bigdist", *sys.argv[1:]]),
        "token": uuid.uuid4().hex,
    }
    while not _try_create(path, content):
        holder = _read(path)
        if holder is None:
            continue  # released in between
        if not _stale(holder):
            raise OutputLockedError(
                f"another bigdist run is writing {out!r}: pid {holder.get('pid', '?')} on host "
                f"{holder.get('host', '?')}, started at {holder.get('started_at', '?')} "
                f"({holder.get('command', 'command unknown')}); wait for it to finish, or, if that run is not "
                f"running any more, delete the lock file {path}"
            )
        logger.warning(
            "taking over the lock of %s from a run that is gone (pid %s, started at %s)",
            out,
            holder.get("pid"),
            holder.get("started_at"),
        )
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    try:
        yield
    finally:
        holder = _read(path)
        if holder is not None and holder.get("token") == content["token"]:
            os.unlink(path)
