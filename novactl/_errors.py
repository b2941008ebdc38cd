"""The novactl exception hierarchy.

Every error novactl raises on purpose is a :class:`NovactlError`; the CLI turns
it into one line on stderr and the exit code it carries.  Foreign exceptions
(httpx, kubernetes, OSError, yaml) are translated at the adapter or loader
boundary with ``raise ... from exc`` so the original stays in the chain for
``--debug`` but never reaches the operator as a traceback.

    NovactlError                   exit 1 unless a subclass says otherwise
    ├── InputError                 exit 2  bad command-line input
    │   └── PlanError              exit 2  the plan file is malformed or wrong
    ├── StateError                 exit 1  state directory unreadable or inconsistent
    │   └── LockHeld               exit 5  another novactl holds the rollout lock
    ├── AdapterError               exit 6  an adapter could not do what was asked
    │   ├── TrafficError
    │   ├── WorkloadError
    │   ├── ProbeError
    │   │   └── NoDataError        the sentinel: the query answered, but with nothing
    │   └── NotifyError
    └── CheckFailed                exit 7  a verification (verify-split, ...) did not hold
"""

from __future__ import annotations

from dataclasses import dataclass

from novactl.exitcodes import ExitCode

__all__ = [
    "AdapterError",
    "CheckFailed",
    "InputError",
    "LockHeld",
    "NoDataError",
    "NotifyError",
    "NovactlError",
    "PlanError",
    "PlanIssue",
    "ProbeError",
    "StateError",
    "TrafficError",
    "WorkloadError",
]


class NovactlError(Exception):
    """Base class of every error novactl raises on purpose."""

    exit_code: int = ExitCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InputError(NovactlError):
    """Bad input on the command line (an option value, a missing file...)."""

    exit_code = ExitCode.INVALID


@dataclass(frozen=True)
class PlanIssue:
    """One problem in a plan file, located as precisely as we know."""

    file: str
    line: int | None
    column: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class PlanError(InputError):
    """The plan could not be loaded; carries every issue found, each one line."""

    def __init__(self, issues: list[PlanIssue]) -> None:
        if not issues:
            raise ValueError("PlanError needs at least one issue")
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


class StateError(NovactlError):
    """The state directory is unreadable, corrupt or belongs to another rollout."""


class LockHeld(StateError):
    """Another novactl process holds the rollout lock."""

    exit_code = ExitCode.LOCKED

    def __init__(self, path: str, holder: str) -> None:
        self.path = path
        self.holder = holder
        where = path if path.startswith("Lease ") else f"lock file {path}"
        super().__init__(f"rollout is locked by {holder} ({where})")


class AdapterError(NovactlError):
    """An adapter could not carry out an operation.  ``adapter`` names it."""

    exit_code = ExitCode.ACTION_FAILED

    def __init__(self, message: str, *, adapter: str = "") -> None:
        self.adapter = adapter
        super().__init__(f"{adapter}: {message}" if adapter else message)


class TrafficError(AdapterError):
    """The traffic shifter failed to set or read a weight."""


class WorkloadError(AdapterError):
    """The workload adapter failed to deploy, scale, check or retire a version."""


class ProbeError(AdapterError):
    """A metrics probe failed (transport error, bad query, bad answer)."""


class NoDataError(ProbeError):
    """The probe answered, but there was nothing to measure (empty, NaN, Inf).

    Never a pass: gate evaluation turns it into *inconclusive*.
    """


class NotifyError(AdapterError):
    """A notifier could not deliver a message."""


class CheckFailed(NovactlError):
    """A verification command ran fine but what it verified does not hold."""

    exit_code = ExitCode.CHECK_FAILED
