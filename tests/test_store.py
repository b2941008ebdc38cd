"""The local state directory: atomic state, one writer, an append-only audit log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from novactl._errors import LockHeld, StateError
from novactl.core.state import Phase, RolloutState, StageRecord
from novactl.store import LocalStore


def _state() -> RolloutState:
    state = RolloutState("r1", "plan", phase=Phase.STAGE)
    state.stages.append(StageRecord("one", 0, 10.0, 1.0))
    return state


def test_state_round_trip_is_exact(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    assert store.load() is None
    state = _state()
    store.save(state)
    assert store.load() == state
    assert not list((tmp_path / "s").glob(".*.tmp"))  # no temp files left behind
    assert oct(store.state_file.stat().st_mode & 0o777) == "0o600"


def test_corrupt_or_foreign_state_is_a_clear_error(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.state_file.write_text("{not json")
    with pytest.raises(StateError, match="not valid JSON"):
        store.load()
    store.state_file.write_text(json.dumps({"schema": 99, "rollout_id": "x", "plan_name": "p"}))
    with pytest.raises(StateError, match="newer novactl"):
        store.load()


HOLDER = textwrap.dedent("""
    import sys, time
    from novactl.store import LocalStore
    with LocalStore(sys.argv[1]).lock("novactl run demo"):
        print("locked", flush=True)
        time.sleep(30)
""")


def test_a_second_writer_is_told_who_holds_the_lock(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        store = LocalStore(tmp_path)
        with pytest.raises(LockHeld) as info, store.lock("second", wait=0.2):
            pass
        message = str(info.value)
        assert f"pid {holder.pid}" in message and "novactl run demo" in message
        assert info.value.exit_code == 5
    finally:
        holder.kill()
        holder.wait()
    # the kernel released the lock with the process: no stale lock after kill -9
    with LocalStore(tmp_path).lock("third"):
        pass


def test_lock_is_reentrant_in_one_process(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    with store.lock("outer"), store.lock("inner"):
        assert store.lock_holder()["command"] == "outer"
    assert store.lock_holder() == {}


def test_audit_log_is_append_only_and_survives_a_torn_line(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.append_audit({"action": "one"})
    with open(store.audit_file, "a") as handle:  # a writer killed mid-line
        handle.write('{"action": "tor')
    store.append_audit({"action": "two"})
    assert [e["action"] for e in store.read_audit()] == ["one", "two"]
    lines = store.audit_file.read_text().splitlines()
    assert lines[0] == '{"action":"one"}' and lines[-1] == '{"action":"two"}'


def test_abort_requests(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    assert store.peek_abort() is None
    store.request_abort({"reason": "r", "by": "me"})
    assert store.peek_abort() == {"reason": "r", "by": "me"}
    store.clear_abort()
    store.clear_abort()
    assert store.peek_abort() is None


def test_archive_keeps_finished_rollouts(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    state = _state()
    store.save(state)
    target = store.archive(state)
    assert target.exists() and store.load() is None


def test_unwritable_directory_is_a_clear_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        blocker = tmp_path / "file"
        blocker.write_text("x")
        store = LocalStore(blocker / "sub")
    else:  # pragma: no cover - depends on who runs the tests
        locked = tmp_path / "ro"
        locked.mkdir(mode=0o500)
        store = LocalStore(locked / "sub")
    with pytest.raises(StateError, match="cannot create state directory"):
        store.save(_state())
