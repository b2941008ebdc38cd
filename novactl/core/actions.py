"""What the state machine asks the outside world to do, and what comes back."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from novactl.core.gates import CheckResult
from novactl.core.observations import Observation
from novactl.core.state import RolloutState

__all__ = ["Action", "ActionKind", "Decision", "Event", "ObsRequest", "Outcome", "Wait"]


class ActionKind(StrEnum):
    DEPLOY = "deploy"
    SCALE = "scale"
    READY = "ready"
    HEADER_ROUTE = "header_route"
    SET_WEIGHT = "set_weight"
    VERIFY_WEIGHT = "verify_weight"
    PROMOTE = "promote"
    RETIRE = "retire"
    OBSERVE = "observe"

    @property
    def mutating(self) -> bool:
        return self not in (ActionKind.READY, ActionKind.VERIFY_WEIGHT, ActionKind.OBSERVE)


@dataclass(frozen=True)
class ObsRequest:
    metric: str
    version: str | None
    role: str | None
    window: float


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    purpose: str  # baseline | stage | promotion | post | rollback
    reason: str
    role: str | None = None
    version: str | None = None
    replicas: int | None = None
    weight: float | None = None
    header: str | None = None
    header_value: str | None = None
    requests: tuple[ObsRequest, ...] = ()
    window: float | None = None  # observe: the evaluation window the requests cover...
    at: float | None = None  # ...ending at this time (when it was decided)

    def describe(self) -> str:
        k = self.kind
        if k is ActionKind.DEPLOY:
            reps = f" × {self.replicas}" if self.replicas is not None else ""
            return f"deploy {self.role} {self.version}{reps}"
        if k is ActionKind.SCALE:
            return f"scale {self.role} to {self.replicas}"
        if k is ActionKind.READY:
            return f"check {self.role} is ready"
        if k is ActionKind.HEADER_ROUTE:
            return f"route {self.header}: {self.header_value} to canary"
        if k is ActionKind.SET_WEIGHT:
            return f"set canary weight {self.weight:g}%"
        if k is ActionKind.VERIFY_WEIGHT:
            return f"verify canary weight {self.weight:g}%"
        if k is ActionKind.PROMOTE:
            return f"promote {self.version} to stable"
        if k is ActionKind.RETIRE:
            return f"retire {self.version}"
        return f"measure {len(self.requests)} metric(s)"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind.value, "purpose": self.purpose,
                               "reason": self.reason}
        for name in ("role", "version", "replicas", "weight", "header", "header_value",
                     "window", "at"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.requests:
            out["requests"] = [
                {"metric": r.metric, "version": r.version, "role": r.role, "window": r.window}
                for r in self.requests
            ]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Action:
        return cls(
            kind=ActionKind(data["kind"]),
            purpose=data.get("purpose", ""),
            reason=data.get("reason", ""),
            role=data.get("role"),
            version=data.get("version"),
            replicas=data.get("replicas"),
            weight=data.get("weight"),
            header=data.get("header"),
            header_value=data.get("header_value"),
            requests=tuple(ObsRequest(**r) for r in data.get("requests", [])),
            window=data.get("window"),
            at=data.get("at"),
        )


@dataclass
class Outcome:
    """The result of one action.  Failures are data, not exceptions."""

    ok: bool
    error: str = ""
    weight: float | None = None  # verify_weight: what the router reports (None: unreadable)
    ready: bool | None = None
    message: str = ""
    supported: bool = True  # header_route: False when the router cannot do it
    observations: list[Observation] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": self.ok}
        if self.error:
            out["error"] = self.error
        if self.weight is not None:
            out["weight"] = self.weight
        if self.ready is not None:
            out["ready"] = self.ready
        if self.message:
            out["message"] = self.message
        if not self.supported:
            out["supported"] = False
        if self.observations:
            out["observations"] = len(self.observations)
        return out


@dataclass(frozen=True)
class Event:
    """Something that happened; goes to the audit log and, if routed, to notifiers."""

    name: str
    severity: str
    title: str
    text: str = ""
    stage: str | None = None
    actor: str = "novactl"
    fields: dict[str, Any] = field(default_factory=dict)
    targets: tuple[str, ...] = ()  # explicit targets (announcements, summaries)
    notify: bool = True


@dataclass(frozen=True)
class Wait:
    until: float | None  # None: nothing scheduled (terminal, or only a human can move it)
    reason: str
    human: bool = False  # only a person can move it on (approval, pause, escalation)
    failing: bool = False  # an action keeps failing (e.g. rollback cannot reach the router)


@dataclass
class Decision:
    state: RolloutState
    action: Action | None = None
    wait: Wait | None = None
    events: list[Event] = field(default_factory=list)
    results: list[CheckResult] = field(default_factory=list)
