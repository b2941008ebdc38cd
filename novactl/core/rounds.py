"""One evaluation round: which windows to measure, and the bookkeeping that makes low
traffic decidable.  Pure functions of (plan, state, checks, clock); the machine calls them.

Windows
-------
A check is measured over :func:`~novactl.core.gates.window_for` — its ``over``, its
metric's own window, its ``for`` (the counts of the whole time it must hold, pooled, as a
Prometheus ``increase(...[5m])`` does) or the time since the last round — and longer:

* a stage's **criteria** over the time since the stage began baking, or since the end of
  the round they last failed in, up to :data:`MAX_POOL` (a sliding day): "met for 7
  consecutive days" is shown on all the requests since, not on one noisy round;
* a trigger or alert that could not be decided (too few samples, no data, a probe error)
  over the time since it was last decided, up to :data:`MAX_POOL`: short rounds are pooled,
  and a probe outage costs no evidence, because the next window covers it;
* a **sequential** check adds each round's counts of both versions to the stage's total;
  a round in which one version did not answer is measured again with the next one, over
  the window since the last round that was added.

"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from novactl.core.actions import ObsRequest
from novactl.core.gates import CheckResult, References, Verdict, subject_version, window_for
from novactl.core.judges import accumulate
from novactl.core.observations import Observation, ObsKey
from novactl.core.state import Paired, RolloutState, StageRecord
from novactl.plan._expr import RefKind
from novactl.plan._model import Check, CheckRole, Plan, StageSpec

__all__ = ["MAX_POOL", "check_windows", "note_round", "observation_requests", "pair_round",
           "undecided_criteria", "update_streak"]

MAX_POOL = 86400.0  # a criterion slides over, and an undecided check pools, at most a day
CRITERIA = (CheckRole.MANDATORY, CheckRole.DESIRABLE)


def check_windows(checks: Iterable[Check], s: RolloutState, rec: StageRecord, refs: References,
                  eval_window: float, now: float, start: float, *, stage: bool = True
                  ) -> dict[str, float]:
    """The window each check is measured over in the round ending ``now`` (``stage``:
    inside a stage, where criteria slide; after promotion they keep their own window)."""
    out: dict[str, float] = {}
    for check in checks:
        if check.condition.sequential and refs.stable_available:
            paired = rec.paired.get(check.condition.metric)
            added = paired.until if paired is not None and paired.until is not None else start
            out[check.id] = min(max(now - added, 1.0), MAX_POOL)
            continue
        window = window_for(check, eval_window)
        since = s.undecided.get(check.id)
        if stage and check.role in CRITERIA:
            since = s.criteria_since.get(check.id, start)
        if since is not None and now - since > window:
            window = min(now - since, max(window, MAX_POOL))
        out[check.id] = window
    return out


def observation_requests(s: RolloutState, checks: Iterable[Check],
                         windows: Mapping[str, float], refs: References, eval_window: float,
                         *, promoted: bool) -> tuple[ObsRequest, ...]:
    """What to ask the probes: every check's window, the stable's where a check compares
    with it, and each metric's own round window too (the stage's aggregates and the report
    are built from those)."""
    seen: dict[tuple[str, str | None, int], ObsRequest] = {}

    def add(metric: str, version: str | None, window: float) -> None:
        role = None
        if version is not None:
            role = "canary" if version == s.canary_version and not promoted else "stable"
        seen.setdefault((metric, version, round(window)),
                        ObsRequest(metric, version, role, window))

    for check in checks:
        metric = check.condition.metric
        version = subject_version(check, refs)
        window = windows[check.id]
        natural = check.metric.window if check.metric.window is not None else eval_window
        add(metric, version, window)
        add(metric, version, natural)
        ref = check.condition.threshold.reference
        if ref is not None and ref.kind is RefKind.STABLE and refs.stable_available:
            add(metric, refs.stable_version, window)
            add(metric, refs.stable_version, natural)
    return tuple(seen.values())


def pair_round(plan: Plan, rec: StageRecord, checks: Iterable[Check],
               windows: Mapping[str, float], observations: Mapping[ObsKey, Observation],
               refs: References, now: float) -> None:
    """Add this round's counts of both versions to each sequential metric's stage total."""
    if not refs.stable_available:
        return
    done: set[str] = set()
    for check in checks:
        metric = check.condition.metric
        if not check.condition.sequential or metric in done:
            continue
        done.add(metric)
        window = windows[check.id]
        canary = observations.get((metric, refs.canary_version, round(window)))
        stable = observations.get((metric, refs.stable_version, round(window)))
        paired = rec.paired.setdefault(metric, Paired())
        accumulate(paired, plan.metric(metric), canary, stable, now - window, now)


def note_round(s: RolloutState, checks: Mapping[str, Check], results: Iterable[CheckResult],
               now: float, eval_window: float) -> None:
    """Remember since when each check has been undecided for lack of data (a trigger: from
    the start of the evidence it lacks, where its next window reaches back to; a criterion,
    whose window slides anyway: from this round), and where a criterion's evidence starts
    again after it failed."""
    for result in results:
        if checks[result.check_id].condition.sequential:
            continue
        if result.verdict is Verdict.INCONCLUSIVE and result.short:
            since = now - (eval_window if result.role in CRITERIA else result.window)
            s.undecided.setdefault(result.check_id, since)
        else:
            s.undecided.pop(result.check_id, None)
        if result.verdict is Verdict.FAIL and result.role in CRITERIA:
            s.criteria_since[result.check_id] = now


def update_streak(s: RolloutState, rec: StageRecord, checks: Mapping[str, Check],
                  results: Iterable[CheckResult], now: float, start: float) -> None:
    """The sustained streak of mandatory criteria (docs/gates.md, "Criteria and sustain").

    Each criterion is shown passing since the start of the window of the round that first
    passed it after its last failure (``s.passing``); the streak is the time all of them
    have been, from the latest of those starts.  A failed round breaks a criterion's run.
    An undecided one does not while deciding it is a matter of time — a criterion short of
    samples or data (for up to MAX_POOL), or whose interval still straddles its threshold
    over less than MAX_POOL of requests, is measured over a longer window next round; a
    sequential one accumulates the stage — and when that evidence passes, it covers the
    rounds it was undecided for.  Undecided for another reason (a missing reference), or
    for longer than that, breaks it.  The stage advances only once every criterion's
    latest round passed (:func:`undecided_criteria`)."""
    mandatory = [r for r in results if r.role is CheckRole.MANDATORY]
    if not mandatory:
        return
    breaking, waiting = [], []
    for r in mandatory:
        sequential = checks[r.check_id].condition.sequential
        if r.verdict is Verdict.PASS:
            s.passing.setdefault(r.check_id, now - r.window)
            continue
        since = s.undecided.get(r.check_id)
        pooled = r.verdict is Verdict.INCONCLUSIVE and (
            sequential
            or (r.short and since is not None and now - since <= MAX_POOL)
            or (r.close and r.window < MAX_POOL))
        if pooled:
            waiting.append(r)
        else:
            s.passing.pop(r.check_id, None)
            breaking.append(r)
    was = s.streak_since
    held = [s.passing.get(r.check_id) for r in mandatory]
    s.streak_since = None if None in held else max(start, *(t for t in held if t is not None))
    if was is not None and s.streak_since != was:
        rec.longest_streak = max(rec.longest_streak, now - was)
    if s.streak_since is not None:
        rec.longest_streak = max(rec.longest_streak, now - s.streak_since)
    blame = breaking or ([] if s.streak_since is not None else waiting)
    s.streak_broken_by = (f"{blame[0].name}: {blame[0].verdict.value} ({blame[0].reason})"
                          if blame else "")


def undecided_criteria(stage: StageSpec, s: RolloutState) -> list[str]:
    """Mandatory criteria whose latest round did not pass (the stage waits for them)."""
    out = []
    for check in stage.checks:
        if check.role is CheckRole.MANDATORY:
            brief = s.last_results.get(check.id)
            if brief is None or brief.get("verdict") != Verdict.PASS:
                out.append(check.name)
    return out
