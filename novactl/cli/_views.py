"""Views of a rollout shared by `run` (live) and `status`."""

from __future__ import annotations

from collections import deque
from typing import Any

from novactl._clock import iso
from novactl._units import format_duration, format_value
from novactl.cli._terminal import build_table, term
from novactl.core.actions import Action, Event, Outcome, Wait
from novactl.core.gates import CheckResult, explain
from novactl.core.state import Phase, RolloutState
from novactl.plan import Plan
from novactl.runner import Observer

_VERDICT = {"pass": ("✔", "green"), "fail": ("✖", "red"), "inconclusive": ("?", "yellow")}
_ROLE_ORDER = {"rollback": 0, "pause": 1, "mandatory": 2, "desirable": 3, "alert": 4}


def current_checks(plan: Plan, state: RolloutState) -> list[Any]:
    """The checks whose latest results the state holds."""
    if state.phase in (Phase.STAGE, Phase.ROLLING_BACK, Phase.ROLLED_BACK) and state.stages:
        return list(plan.stages[state.stage_index].checks) if state.last_results else []
    if state.phase in (Phase.PROMOTED, Phase.COMPLETED):
        return list(plan.stages[-1].checks)
    return []


def check_rows(plan: Plan, state: RolloutState, *, styled: bool) -> list[list[Any]]:
    """role · check · value · threshold (target) · n · verdict · why"""
    rows: list[tuple[int, list[Any]]] = []
    for check in current_checks(plan, state):
        brief = state.last_results.get(check.id)
        dim = check.dimension
        threshold = check.condition.threshold.describe(dim)
        if check.target is not None:
            threshold += f" (target {check.target.text})"
        if check.condition.for_:
            threshold += f" for {format_duration(check.condition.for_)}"
        if brief is None:
            value, n, verdict, why = "—", "", "·", "not evaluated yet"
            style = "dim"
        else:
            raw = brief.get("value")
            value = format_value(float(raw), dim) if raw is not None else "no data"
            size = brief.get("sample_size")
            n = f"{float(size):,.0f}" if size is not None else ""
            symbol, style = _VERDICT.get(str(brief.get("verdict")), ("?", "yellow"))
            trigger = check.trigger
            word = str(brief.get("verdict"))
            if trigger:
                word = {"fail": "firing", "pass": "ok"}.get(word, word)
                ts = state.triggers.get(check.id)
                if ts is not None and ts.pending_since is not None and not ts.firing:
                    word = f"pending {format_duration(state.updated_at - ts.pending_since)}"
            verdict = f"{symbol} {word}"
            why = explain(brief, check.condition.op, dim,
                          check.condition.threshold.describe(dim)
                          if check.condition.threshold.reference else "")
            if brief.get("target_met") is False and brief.get("verdict") == "pass":
                why += " · target missed"
        cells: list[Any] = [check.role.value, check.name, value, threshold, n, verdict, why]
        if styled:
            from rich.text import Text

            cells[5] = Text(verdict, style=style)
        rows.append((_ROLE_ORDER.get(check.role.value, 9), cells))
    rows.sort(key=lambda item: item[0])
    return [cells for _, cells in rows]


CHECK_COLUMNS = ["role", "check", "value", "threshold", "n", "verdict", "why"]


def header_lines(plan: Plan, state: RolloutState, now: float, wait: Wait | None) -> list[str]:
    from novactl.core.machine import status_line

    spec = plan.spec
    lines = [f"{plan.name}: {state.stable_version} → {state.canary_version}   "
             f"phase {state.phase.value}"]
    if state.phase is Phase.STAGE:
        stage = plan.stages[state.stage_index]
        actual = ("?" if state.weight_actual is None else f"{state.weight_actual:g}%")
        deployed = state.deployed.get("canary")
        reps = deployed.replicas if deployed and deployed.replicas is not None else "?"
        lines.append(f"stage {state.stage_index + 1}/{len(plan.stages)} {stage.name}: "
                     f"weight {stage.weight:g}% (router: {actual}), canary replicas {reps}, "
                     f"step {state.step}")
    lines.append(status_line(plan, state, now))
    if wait is not None and wait.reason and not state.phase.terminal:
        when = "" if wait.until is None else f" (next at {iso(wait.until)})"
        prefix = "WAITING FOR A HUMAN: " if wait.human else "next: "
        lines.append(prefix + wait.reason + when)
    if state.paused is not None:
        lines.append(f"PAUSED by {state.paused.by} at {iso(state.paused.at)}: "
                     f"{state.paused.reason}")
    if state.rollback is not None:
        rb = state.rollback
        took = rb.time_to_restore
        lines.append(f"rollback: {rb.reason} (by {rb.by}; traffic restored "
                     f"{'in ' + format_duration(took) if took is not None else 'not yet'})")
    if spec.dashboards and not state.phase.terminal:
        lines.append("dashboards: " + ", ".join(f"{d.name} <{d.url}>" for d in spec.dashboards))
    return lines


def event_line(event: Event, now: float) -> str:
    text = f"{iso(now)} [{event.severity}] {event.name}: {event.title}"
    if event.text:
        text += f" — {event.text}"
    return text


class RunView(Observer):
    """The live view of `run`: header, checks table, recent events."""

    def __init__(self, plan: Plan, clock: Any) -> None:
        self.plan = plan
        self.clock = clock
        self.state: RolloutState | None = None
        self.wait: Wait | None = None
        self.events: deque[str] = deque(maxlen=8)
        self.action = ""
        self.live: Any = None

    def render(self) -> Any:
        from rich.console import Group
        from rich.panel import Panel
        from rich.text import Text

        if self.state is None:
            return Text(f"{self.plan.name}: starting…")
        head = Text("\n".join(header_lines(self.plan, self.state, self.clock.now(), self.wait)))
        parts: list[Any] = [Panel(head, title="novactl", title_align="left")]
        rows = check_rows(self.plan, self.state, styled=True)
        if rows:
            parts.append(build_table(CHECK_COLUMNS, rows))
        if self.action:
            parts.append(Text(self.action, style="cyan"))
        if self.events:
            parts.append(Text("\n".join(self.events), style="dim"))
        return Group(*parts)

    def _refresh(self) -> None:
        if self.live is not None:
            self.live.update(self.render())

    def on_event(self, event: Event, state: RolloutState) -> None:
        self.state = state
        line = event_line(event, self.clock.now())
        self.events.append(line)
        if self.live is None:
            style = {"critical": "critical", "warning": "warning"}.get(event.severity, "")
            term.line(line, style)
        self._refresh()

    def on_action(self, action: Action, outcome: Outcome | None, state: RolloutState) -> None:
        self.state = state
        if outcome is None:
            self.action = f"… {action.describe()}"
        else:
            self.action = f"{'✔' if outcome.ok else '✖'} {action.describe()}" + (
                f": {outcome.error}" if not outcome.ok else "")
            if self.live is None and action.kind.mutating:
                term.line(f"{iso(self.clock.now())} {self.action}",
                          "" if outcome.ok else "warning")
        self._refresh()

    def on_results(self, results: list[CheckResult], state: RolloutState) -> None:
        self.state = state
        self._refresh()

    def on_wait(self, wait: Wait, state: RolloutState) -> None:
        self.state = state
        self.wait = wait
        self._refresh()
