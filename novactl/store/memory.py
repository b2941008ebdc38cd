"""An in-memory store with the LocalStore interface: for tests and simulations.

State is kept as JSON text, so what a test reads back went through the same
serialisation as on disk.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import threading
from collections.abc import Iterator
from typing import Any

from novactl._errors import LockHeld
from novactl.core.state import RolloutState

__all__ = ["MemoryStore"]


class MemoryStore:
    def __init__(self, *, keep_evaluations: int = 1000, copy: str = "json") -> None:
        if copy not in ("json", "pickle"):
            raise ValueError("copy must be 'json' or 'pickle'")
        self.copy = copy  # pickle: faster, for long simulations; json: what disk sees
        self._state: str | bytes | None = None
        self.audit: list[dict[str, Any]] = []
        self.evaluations: list[dict[str, Any]] = []
        self.keep_evaluations = keep_evaluations
        self._abort: dict[str, Any] | None = None
        self._plan: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._holder = ""
        self.saves = 0
        self.archived: list[str] = []

    @property
    def records_evaluations(self) -> bool:
        return self.keep_evaluations > 0

    @contextlib.contextmanager
    def lock(self, purpose: str = "", wait: float = 0.0) -> Iterator[None]:
        acquired = (self._lock.acquire(timeout=wait) if wait > 0
                    else self._lock.acquire(blocking=False))
        if not acquired:
            raise LockHeld("<memory>", self._holder or "another caller")
        self._holder = purpose or "memory"
        try:
            yield
        finally:
            self._holder = ""
            self._lock.release()

    def load(self) -> RolloutState | None:
        if self._state is None:
            return None
        if isinstance(self._state, bytes):
            return pickle.loads(self._state)
        return RolloutState.from_dict(json.loads(self._state))

    def save(self, state: RolloutState) -> None:
        if self.copy == "pickle":
            self._state = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        else:
            self._state = json.dumps(state.to_dict())
        self.saves += 1

    def archive(self, state: RolloutState) -> str:
        if self._state is not None:
            self.archived.append(json.dumps(state.to_dict()))
        self._state = None
        return f"<memory:{state.rollout_id}>"

    def append_audit(self, record: dict[str, Any]) -> None:
        self.audit.append(json.loads(json.dumps(record, default=str)))

    def read_audit(self) -> Iterator[dict[str, Any]]:
        return iter(list(self.audit))

    def append_evaluation(self, record: dict[str, Any]) -> None:
        self.evaluations.append(record)
        if len(self.evaluations) > self.keep_evaluations:
            del self.evaluations[: len(self.evaluations) - self.keep_evaluations]

    def read_evaluations(self) -> Iterator[dict[str, Any]]:
        return iter(list(self.evaluations))

    def request_abort(self, record: dict[str, Any]) -> None:
        self._abort = dict(record)

    def peek_abort(self) -> dict[str, Any] | None:
        return self._abort

    def clear_abort(self) -> None:
        self._abort = None

    def save_plan(self, plan_json: dict[str, Any]) -> None:
        self._plan = plan_json

    def load_plan(self) -> dict[str, Any] | None:
        return self._plan
