"""Process exit codes.  Documented in docs/cli.md; runbooks depend on them."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # success; for `run`, the rollout is progressing or completed
    INTERNAL = 1  # a bug or an unexpected failure
    INVALID = 2  # invalid input or plan
    ROLLED_BACK = 3  # the rollout ended rolled back
    WAITING = 4  # waiting for a human: approval, pause, signal, escalation
    LOCKED = 5  # another novactl holds the rollout lock
    ACTION_FAILED = 6  # an adapter action failed (router, workload, rollback not verified)
    CHECK_FAILED = 7  # a verification did not hold (verify-split)
