"""The default store: a local state directory.

    <state dir>/
      state.json          current state; replaced atomically (write, fsync, rename, fsync dir)
      audit.jsonl         append-only audit log; every line fsync'd
      evaluations.jsonl   every evaluation round (check results), for history and reports
      lock                flock(2) lock; holds who has it (pid, host, user, command, since)
      abort.json          a rollback request left by `novactl rollback` when the lock was busy
      plan.json           the plan as it was when the rollout started (rollback fallback)
      history/            states of earlier rollouts (after `run --restart`)

The lock is an flock on an open file: the kernel releases it when its holder
dies, even by kill -9, so a crashed novactl never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from novactl._errors import LockHeld, StateError
from novactl.core.state import SCHEMA_VERSION, RolloutState

__all__ = ["LocalStore"]


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so a reader sees the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _append_line(path: Path, record: dict[str, Any], *, sync: bool) -> None:
    line = json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=str) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        # A writer killed mid-line leaves a torn last line: start ours on a fresh line.
        size = os.fstat(fd).st_size
        if size:
            with open(path, "rb") as reader:
                reader.seek(size - 1)
                if reader.read(1) != b"\n":
                    line = "\n" + line
        os.write(fd, line.encode("utf-8"))
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _read_lines(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with open(path, encoding="utf-8") as handle:
        for raw in handle:
            raw = raw.strip()
            if not raw:
                continue
            try:
                yield json.loads(raw)
            except json.JSONDecodeError:
                continue  # a torn line from a crash; the next line starts clean


def parse_state(raw: str | bytes, where: str, hint: str = "") -> RolloutState:
    """A saved state from its JSON text; every problem is a one-line StateError naming
    ``where`` (a file, a ConfigMap)."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise StateError(f"{where} is not valid JSON (line {exc.lineno})"
                         + (f": {hint}" if hint else "")) from exc
    schema = data.get("schema", 0) if isinstance(data, dict) else 0
    if schema > SCHEMA_VERSION:
        raise StateError(f"{where} was written by a newer novactl "
                         f"(schema {schema}, this one reads {SCHEMA_VERSION})")
    try:
        return RolloutState.from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StateError(f"{where} does not hold a rollout state: {exc}") from exc


def _holder_info(purpose: str) -> dict[str, Any]:
    try:
        user = getpass.getuser()
    except Exception:  # pragma: no cover - no passwd entry in some containers
        user = str(os.getuid())
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "user": user,
        "command": purpose or " ".join(os.path.basename(a) for a in sys.argv[:2]),
        "since": time.time(),
    }


def describe_holder(info: dict[str, Any]) -> str:
    from novactl._clock import iso

    if not info:
        return "another process (holder unknown)"
    since = info.get("since")
    return (f"pid {info.get('pid', '?')} on {info.get('host', '?')} "
            f"({info.get('user', '?')}: {info.get('command', '?')}) since {iso(since)}")


class LocalStore:
    """State, audit log and lock in one directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None

    def __str__(self) -> str:
        return str(self.path)

    # -- paths
    @property
    def state_file(self) -> Path:
        return self.path / "state.json"

    @property
    def audit_file(self) -> Path:
        return self.path / "audit.jsonl"

    @property
    def evaluations_file(self) -> Path:
        return self.path / "evaluations.jsonl"

    @property
    def lock_file(self) -> Path:
        return self.path / "lock"

    @property
    def abort_file(self) -> Path:
        return self.path / "abort.json"

    @property
    def plan_file(self) -> Path:
        return self.path / "plan.json"

    def _ensure(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StateError(f"cannot create state directory {self.path}: "
                             f"{exc.strerror or exc}") from exc

    # -- lock
    @contextlib.contextmanager
    def lock(self, purpose: str = "", wait: float = 0.0) -> Iterator[None]:
        """Hold the rollout lock; wait up to ``wait`` seconds, then raise LockHeld."""
        self._ensure()
        if self._lock_fd is not None:  # re-entrant within one process
            yield
            return
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = self.lock_holder()
                    os.close(fd)
                    raise LockHeld(str(self.lock_file), describe_holder(holder)) from None
                time.sleep(0.05)
        try:
            info = json.dumps(_holder_info(purpose)).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, info, 0)
            self._lock_fd = fd
            yield
        finally:
            self._lock_fd = None
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def lock_holder(self) -> dict[str, Any]:
        try:
            text = self.lock_file.read_text()
            return json.loads(text) if text.strip() else {}
        except (OSError, json.JSONDecodeError):
            return {}

    # -- state
    def load(self) -> RolloutState | None:
        try:
            raw = self.state_file.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"cannot read {self.state_file}: {exc.strerror or exc}") from exc
        return parse_state(raw, str(self.state_file),
                           "restore it from history/ or the audit log")

    def save(self, state: RolloutState) -> None:
        self._ensure()
        data = json.dumps(state.to_dict(), separators=(",", ":"), ensure_ascii=False)
        try:
            atomic_write(self.state_file, data.encode("utf-8") + b"\n")
        except OSError as exc:
            raise StateError(f"cannot write {self.state_file}: {exc.strerror or exc}") from exc

    def archive(self, state: RolloutState) -> Path:
        """Keep a finished rollout's state under history/ and start afresh."""
        history = self.path / "history"
        history.mkdir(exist_ok=True)
        target = history / f"state-{state.rollout_id}.json"
        if self.state_file.exists():
            os.replace(self.state_file, target)
            _fsync_dir(self.path)
        return target

    # -- logs
    def append_audit(self, record: dict[str, Any]) -> None:
        self._ensure()
        try:
            _append_line(self.audit_file, record, sync=True)
        except OSError as exc:
            raise StateError(f"cannot append to {self.audit_file}: {exc.strerror or exc}") from exc

    def read_audit(self) -> Iterator[dict[str, Any]]:
        return _read_lines(self.audit_file)

    def append_evaluation(self, record: dict[str, Any]) -> None:
        self._ensure()
        with contextlib.suppress(OSError):  # history, not decisions: never block a rollout
            _append_line(self.evaluations_file, record, sync=False)

    def read_evaluations(self) -> Iterator[dict[str, Any]]:
        return _read_lines(self.evaluations_file)

    # -- abort requests (rollback while another process holds the lock)
    def request_abort(self, record: dict[str, Any]) -> None:
        self._ensure()
        atomic_write(self.abort_file, json.dumps(record).encode())

    def peek_abort(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.abort_file.read_text())
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError):
            return {"reason": "rollback requested (unreadable request file)", "by": "unknown"}

    def clear_abort(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.abort_file.unlink()
            _fsync_dir(self.path)

    # -- plan snapshot
    def save_plan(self, plan_json: dict[str, Any]) -> None:
        self._ensure()
        atomic_write(self.plan_file, json.dumps(plan_json, indent=1).encode())

    def load_plan(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.plan_file.read_text())
        except (OSError, json.JSONDecodeError):
            return None
