"""The plan: typed models validated from YAML.

A plan names every moving part once (probes, metrics, notification targets,
signals) and references them by name from the stages.  Validation happens in
two passes: pydantic checks shapes and types, then :func:`._semantic.semantic_issues`
checks what only the whole plan can tell (weights going down, unknown metric
names, a ``for`` window longer than its stage...).  Both report a path into
the YAML so the loader can name file, line and column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from novactl._units import Dimension, format_duration, parse_duration
from novactl.plan._expr import (
    Condition,
    Target,
    parse_condition,
    parse_target,
)

__all__ = [
    "API_VERSION",
    "KIND",
    "Check",
    "CheckRole",
    "DurationRange",
    "MetricSpec",
    "Plan",
    "StageSpec",
]

API_VERSION = "novactl.dev/v1"
KIND = "RolloutPlan"
_NAME = r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$"
_IDENT = r"^[A-Za-z_][A-Za-z0-9_]*$"
_VAR = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\}\}")
# Variables a query may use that novactl fills in at observation time.
DEFAULT_ALPHA = 0.01  # sequential checks: false-alarm bound over every look in a stage
RUNTIME_VARS = frozenset({"version", "window", "window_seconds", "stage", "role", "service"})


# ---------------------------------------------------------------- field types


def _duration(value: object) -> float:
    return parse_duration(value)


Duration = Annotated[
    float,
    BeforeValidator(_duration),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^(\d+(\.\d+)?(ms|s|m|h|d|w))+$",
            "description": "A duration: 500ms, 30s, 5m, 1h30m, 24h, 7d.",
            "examples": ["30s", "5m", "24h", "7d"],
        }
    ),
]


def _fraction(value: object) -> float:
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            number = float(value.strip()[:-1]) / 100.0
        except ValueError:
            raise ValueError(f"expected a percentage such as '1%', got {value!r}") from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    else:
        raise ValueError(f"expected a fraction (0.01) or a percentage ('1%'), got {value!r}")
    if not 0.0 < number < 0.5:
        raise ValueError(f"must be above 0 and below 50%, got {value!r}")
    return number


Fraction = Annotated[
    float,
    BeforeValidator(_fraction),
    WithJsonSchema({"type": ["number", "string"], "description": "A fraction (0.01) or a "
                    "percentage ('1%').", "examples": ["1%", 0.005]}),
]


@dataclass(frozen=True)
class DurationRange:
    """``7d`` (a minimum) or ``7d..14d`` (minimum to advance, maximum before escalation)."""

    min: float
    max: float | None = None

    def __str__(self) -> str:
        if self.max is None:
            return format_duration(self.min)
        return f"{format_duration(self.min)}..{format_duration(self.max)}"

    @property
    def longest(self) -> float:
        return self.max if self.max is not None else self.min


def _duration_range(value: object) -> DurationRange:
    if isinstance(value, DurationRange):
        return value
    if isinstance(value, str) and ".." in value:
        low, _, high = value.partition("..")
        lo, hi = parse_duration(low), parse_duration(high)
        if hi < lo:
            raise ValueError(f"the range {value!r} ends before it starts")
        return DurationRange(lo, hi)
    return DurationRange(parse_duration(value))


DurationRangeField = Annotated[
    DurationRange,
    BeforeValidator(_duration_range),
    WithJsonSchema(
        {
            "type": "string",
            "description": "A duration (7d) or a range (7d..14d): minimum to advance, "
            "maximum before the stage is escalated to a human.",
            "examples": ["7d", "7d..14d", "30s"],
        }
    ),
]


def _condition(value: object) -> Condition:
    if isinstance(value, Condition):
        return value
    if not isinstance(value, str):
        raise ValueError("expected an expression string such as 'error_rate < 0.1%', "
                         f"got {value!r}")
    return parse_condition(value)


ConditionField = Annotated[
    Condition,
    BeforeValidator(_condition),
    WithJsonSchema(
        {
            "type": "string",
            "description": "METRIC [of canary|stable] OP THRESHOLD [over DURATION] "
            "[for DURATION]; THRESHOLD is 0.1%, 200ms, 10, 2x baseline, +10% stable, "
            "1.1x stage:NAME.",
            "examples": ["error_rate < 0.1%", "p95_latency > 200ms for 10m",
                         "support_tickets > 2x baseline"],
        }
    ),
]


class Base(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# ---------------------------------------------------------------- adapters


class AdapterSpec(Base):
    type: str = Field(description="Adapter type, e.g. local, command, prometheus, webhook.")
    config: dict[str, Any] = Field(default_factory=dict, description="Adapter settings.")


class HeaderRoute(Base):
    name: str = Field("X-Canary-Debug", description="Header that always routes to the canary.")
    value: str = "1"


class VerifySpec(Base):
    url: str = Field(description="Public URL to send verify-split requests to.")
    version_header: str = Field(
        "X-Version", description="Response header naming the version that answered."
    )
    requests: int = Field(400, ge=1, le=100_000)
    tolerance: float = Field(2.0, ge=0, le=100, description="Allowed error, percentage points.")


class TrafficSpec(AdapterSpec):
    debug_header: HeaderRoute | None = Field(
        None, description="Header route to the canary, set when the first stage starts."
    )
    weight_tolerance: float = Field(
        0.0, ge=0, le=100, description="Accepted |actual - desired| when reading a weight back."
    )
    verify: VerifySpec | None = None
    expected_rps: float | None = Field(
        None, gt=0, description="Requests per second the whole service receives (both "
        "versions); `novactl validate` uses it to tell whether each check can reach its "
        "min_samples at each stage's weight (`validate --rps` overrides it).")


class WorkloadSpec(AdapterSpec):
    ready_timeout: Duration = Field(600.0, description="How long a version may take to be ready.")
    ready_poll: Duration = Field(5.0, description="How often readiness is checked.")


class ProbeSpec(AdapterSpec):
    pass


class NotifierSpec(AdapterSpec):
    pass


class StateSpec(Base):
    type: Literal["local", "kubernetes"] = Field(
        "local", description="local: a state directory; kubernetes: ConfigMaps and a Lease "
        "in the cluster, shared by every machine that runs the plan.")
    path: str | None = Field(
        None, description="local: state directory (relative to the plan file). "
        "Default: .novactl/<metadata.name> beside the plan."
    )
    namespace: str | None = Field(None, description="kubernetes: namespace of the "
                                  "ConfigMaps and the Lease (default: the context's).")
    name: str | None = Field(None, description="kubernetes: name of the Lease and prefix of "
                             "the ConfigMaps (default: novactl-<metadata.name>).")
    kubeconfig: str | None = Field(None, description="kubernetes: kubeconfig file.")
    context: str | None = Field(None, description="kubernetes: kubeconfig context.")
    lease_duration: Duration = Field(30.0, description="kubernetes: how long the Lease "
                                     "outlives a holder that stopped renewing it.")


# ---------------------------------------------------------------- metrics


class MetricKind(StrEnum):
    RATIO = "ratio"  # numerator / denominator; raw counts kept
    VALUE = "value"  # one number (a quantile, a gauge, a score)
    COUNT = "count"  # how many events happened in the window
    HISTOGRAM = "histogram"  # cumulative bucket counts by upper bound (le); raw counts kept


_UNIT_DIMENSION = {
    "ratio": Dimension.FRACTION,
    "percent": Dimension.FRACTION,
    "s": Dimension.TIME,
    "ms": Dimension.TIME,
    "count": Dimension.NUMBER,
    "number": Dimension.NUMBER,
}
# multiply the probe's raw number by this to get the canonical value
_UNIT_SCALE = {"ratio": 1.0, "percent": 0.01, "s": 1.0, "ms": 0.001, "count": 1.0, "number": 1.0}


class MetricSpec(Base):
    probe: str = Field(description="Name of a probe under spec.probes.")
    kind: MetricKind = MetricKind.VALUE
    unit: Literal["ratio", "percent", "s", "ms", "count", "number"] | None = Field(
        None, description="Unit of what the query returns (default: ratio for ratio metrics, "
        "count for count metrics, number otherwise)."
    )
    scope: Literal["version", "global"] = Field(
        "version", description="version: measured per version ({{version}} in the query); "
        "global: one value for the whole service (business metrics)."
    )
    query: str | dict[str, str] = Field(
        description="For value and count metrics a query string (or {value, samples}); "
        "for ratio metrics {numerator, denominator}."
    )
    window: Duration | None = Field(
        None, description="Fixed window to measure over (default: the time since the last "
        "evaluation, at least the stage interval)."
    )
    min_samples: int | None = Field(
        None, ge=0, description="Fewer samples than this (requests, events) is inconclusive."
    )
    quantile: float | None = Field(
        None, gt=0, lt=1, description="histogram metrics: the quantile that is the metric's "
        "value (0.95 for a p95; default: the median).  A sequential check on a histogram "
        "with a quantile compares that quantile; without one, the whole distribution.")
    expected_rate: float | None = Field(
        None, gt=0, description="Samples per second for the whole service (both versions), "
        "for `novactl validate`'s sample-size forecast.  Default: spec.traffic.expected_rps "
        "for ratio, histogram and sampled value metrics (their samples are requests); set it "
        "for metrics whose samples are something else (database queries, migrations).")
    description: str = ""

    @property
    def effective_unit(self) -> str:
        if self.unit is not None:
            return self.unit
        return {"ratio": "ratio", "count": "count"}.get(self.kind.value, "number")

    @property
    def dimension(self) -> Dimension:
        return _UNIT_DIMENSION[self.effective_unit]

    @property
    def scale(self) -> float:
        return _UNIT_SCALE[self.effective_unit]

    def queries(self) -> dict[str, str]:
        """The query parts by role: value/samples, numerator/denominator, or buckets."""
        if isinstance(self.query, str):
            return {"buckets" if self.kind is MetricKind.HISTOGRAM else "value": self.query}
        return dict(self.query)

    @property
    def has_samples(self) -> bool:
        """Whether observations carry a sample size (requests behind the value)."""
        return self.kind in (MetricKind.RATIO, MetricKind.HISTOGRAM) or (
            self.kind is MetricKind.VALUE and "samples" in self.queries())


# ---------------------------------------------------------------- checks


class CheckSpec(Base):
    check: ConditionField
    name: str | None = Field(None, description="Short name shown in tables and the audit log.")
    target: str | None = Field(None, description="Goal shown beside the threshold: '< 0.05%'.")
    min_samples: int | None = Field(None, ge=0)
    alpha: Fraction | None = Field(
        None, description="sequential checks: the false-alarm bound over every look at the "
        "check in a stage, as a fraction or a percentage (default 1%).")
    description: str = ""

    _target: Target | None = PrivateAttr(None)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"check": data}
        return data

    @model_validator(mode="after")
    def _parse_target(self) -> CheckSpec:
        if self.target is not None:
            try:
                self._target = parse_target(self.target, self.check.op)
            except ValueError as exc:
                raise ValueError(f"target: {exc}") from exc
        return self

    @property
    def parsed_target(self) -> Target | None:
        return self._target


class AlertSpec(CheckSpec):
    severity: Literal["critical", "warning", "info"] = "warning"


class Criteria(Base):
    mandatory: list[CheckSpec] = Field(default_factory=list,
                                       description="All must hold to advance.")
    desirable: list[CheckSpec] = Field(default_factory=list, description="Reported; warn only.")


class CheckGroup(Base):
    criteria: Criteria = Field(default_factory=Criteria)
    alerts: list[AlertSpec] = Field(default_factory=list, description="Notify only.")
    rollback: list[CheckSpec] = Field(
        default_factory=list, description="Automatic rollback triggers."
    )
    pause: list[CheckSpec] = Field(
        default_factory=list, description="Manual rollback signals: pause and ask a human."
    )


class ApprovalSpec(Base):
    roles: list[str] = Field(min_length=1, description="Every role must say GO.")
    note: str = Field("", description="When and where the decision is taken.")


class Announcement(Base):
    to: list[str] = Field(min_length=1)
    message: str


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_WEEKDAY_NAMES: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class StageStart(Base):
    """When a stage may start: within ``window`` after one of these moments (UTC).

    A stage that is ready earlier keeps baking (its checks stay armed) until then.
    """

    days: list[Weekday] = Field(default_factory=lambda: list(_WEEKDAY_NAMES),  # type: ignore[arg-type]
                                min_length=1)
    at: str = Field("00:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="UTC, HH:MM.")
    window: Duration = Field(86400.0, description="How long after `at` a start is still "
                             "allowed (default 24h: that whole day).")

    @property
    def minute_of_day(self) -> int:
        hours, minutes = self.at.split(":")
        return int(hours) * 60 + int(minutes)


class StageSpec(CheckGroup):
    name: str = Field(pattern=_NAME)
    description: str = ""
    weight: float = Field(gt=0, le=100, description="Canary traffic, percent.")
    replicas: int | None = Field(None, ge=0, description="Canary replicas in this stage.")
    duration: DurationRangeField
    sustain: Duration | None = Field(
        None, description="Mandatory criteria must hold this long without a break "
        "(default: the minimum duration)."
    )
    interval: Duration | None = Field(None,
                                      description="Evaluation interval (default: spec.defaults).")
    start: StageStart | None = Field(
        None, description="Start only at these times (e.g. Mondays 00:00 UTC); "
        "default: as soon as the previous stage passed.")
    approval: ApprovalSpec | None = None
    notify: list[str] = Field(default_factory=list, description="Extra targets for this stage.")
    announce: list[Announcement] = Field(default_factory=list, description="Sent when it starts.")

    _checks: tuple[Check, ...] = PrivateAttr(())

    @property
    def checks(self) -> tuple[Check, ...]:
        return self._checks

    @property
    def sustain_for(self) -> float:
        return self.sustain if self.sustain is not None else self.duration.min


class PromotionSpec(Base):
    replicas: int | None = Field(None, ge=1, description="Replicas of the new stable version.")
    retire_after: Duration = Field(0.0, description="Grace period before the old version retires.")
    rollback_window: Duration = Field(0.0, description="How long rolling back stays possible.")
    monitor: Duration | None = Field(
        None, description="Post-rollout monitoring; the rollout completes after it "
        "(default: the rollback window)."
    )
    approval: ApprovalSpec | None = None
    criteria_window: Duration | None = Field(
        None, description="After promotion the last stage's criteria are judged over this "
        "window (default: its evaluation interval): a failure raises an alert, and inside "
        "the rollback window a failing mandatory criterion does `on_criteria_failure`.")
    on_criteria_failure: Literal["alert", "pause", "rollback"] = Field(
        "pause", description="What a mandatory criterion failing after promotion does while "
        "the rollback window is open: alert only, pause (retirement waits for a human "
        "to roll back or resume), or roll back.  Later, and for desirable criteria, it alerts.")

    @property
    def monitor_for(self) -> float:
        if self.monitor is not None:
            return self.monitor
        return max(self.rollback_window, self.retire_after)


class SignalSpec(Base):
    action: Literal["rollback", "pause", "notify"]
    description: str = ""


class BaselineSpec(Base):
    window: Duration = Field(3600.0, description="How far back the pre-rollout baseline looks.")
    values: dict[str, float | str] = Field(
        default_factory=dict, description="Known baselines (metric: value) instead of measuring."
    )
    timeout: Duration = Field(
        3600.0, description="How long to retry measuring before asking a human."
    )


class RouteSpec(Base):
    events: list[str] = Field(default_factory=lambda: ["*"], description="Event names or globs.")
    to: list[str] = Field(min_length=1)


_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class SummarySpec(Base):
    at: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="UTC time, HH:MM.")
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(
        default_factory=lambda: list(_WEEKDAYS)  # type: ignore[arg-type]
    )
    to: list[str] = Field(min_length=1)
    title: str = "Rollout summary"

    @property
    def minute_of_day(self) -> int:
        hours, minutes = self.at.split(":")
        return int(hours) * 60 + int(minutes)


class NotificationsSpec(Base):
    targets: dict[str, NotifierSpec] = Field(default_factory=dict)
    routes: list[RouteSpec] = Field(default_factory=list)
    summaries: list[SummarySpec] = Field(default_factory=list)


class Dashboard(Base):
    name: str
    url: str


class ReportMetric(Base):
    metric: str
    target: str = Field("", description="Shown in the report, e.g. 'Maintain', '+10%', '>95%'.")
    check: ConditionField | None = Field(
        None, description="Optional expression deciding whether the target was met."
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"metric": data}
        return data


class ReportSpec(Base):
    technical: list[ReportMetric] = Field(default_factory=list)
    business: list[ReportMetric] = Field(default_factory=list)


class Defaults(Base):
    interval: Duration = Field(60.0, description="Default evaluation interval.")
    min_samples: int = Field(0, ge=0, description="Default minimum sample size.")


class Versions(Base):
    stable: str = Field(min_length=1)
    canary: str = Field(min_length=1)


class Metadata(Base):
    name: str = Field(pattern=_NAME, description="Rollout name; names the state directory.")
    description: str = ""
    owner: str = ""
    labels: dict[str, str] = Field(default_factory=dict)


class Spec(Base):
    service: str = ""
    versions: Versions
    variables: dict[str, str | int | float] = Field(default_factory=dict)
    state: StateSpec = Field(default_factory=StateSpec)
    traffic: TrafficSpec
    workload: WorkloadSpec
    probes: dict[str, ProbeSpec] = Field(default_factory=dict)
    metrics: dict[str, MetricSpec] = Field(default_factory=dict)
    defaults: Defaults = Field(default_factory=Defaults)
    baseline: BaselineSpec = Field(default_factory=BaselineSpec)
    every_stage: CheckGroup = Field(
        default_factory=CheckGroup, description="Checks added to every stage."
    )
    stages: list[StageSpec] = Field(min_length=1)
    promotion: PromotionSpec = Field(default_factory=PromotionSpec)
    signals: dict[str, SignalSpec] = Field(default_factory=dict)
    approvers: dict[str, list[str]] = Field(
        default_factory=dict, description="Role → people allowed to approve for it."
    )
    notifications: NotificationsSpec = Field(default_factory=NotificationsSpec)
    dashboards: list[Dashboard] = Field(default_factory=list)
    report: ReportSpec = Field(default_factory=ReportSpec)

    @field_validator("metrics")
    @classmethod
    def _metric_names(cls, value: dict[str, MetricSpec]) -> dict[str, MetricSpec]:
        for name in value:
            if not re.match(_IDENT, name):
                raise ValueError(f"metric name {name!r} must be an identifier (letters, digits, _)")
        return value


class Plan(Base):
    api_version: Literal["novactl.dev/v1"] = Field(alias="apiVersion")
    kind: Literal["RolloutPlan"]
    metadata: Metadata
    spec: Spec

    _source: str = PrivateAttr("<plan>")
    _digest: str = PrivateAttr("")
    _text: str = PrivateAttr("")

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def source(self) -> str:
        return self._source

    @property
    def digest(self) -> str:
        return self._digest

    def snapshot(self) -> dict[str, Any]:
        """What the state directory keeps, so a rollback works even if the file breaks."""
        return {"source": self._source, "digest": self._digest, "text": self._text,
                "variables": {k: str(v) for k, v in self.spec.variables.items()}}

    @property
    def stages(self) -> list[StageSpec]:
        return self.spec.stages

    def stage_index(self, name: str) -> int:
        for i, stage in enumerate(self.spec.stages):
            if stage.name == name:
                return i
        raise KeyError(name)

    def interval(self, stage: StageSpec) -> float:
        return stage.interval if stage.interval is not None else self.spec.defaults.interval

    def metric(self, name: str) -> MetricSpec:
        return self.spec.metrics[name]

    def approvals_for(self, stage: StageSpec | None) -> ApprovalSpec | None:
        return self.spec.promotion.approval if stage is None else stage.approval


# ---------------------------------------------------------------- compiled checks


class CheckRole(StrEnum):
    MANDATORY = "mandatory"
    DESIRABLE = "desirable"
    ALERT = "alert"
    ROLLBACK = "rollback"
    PAUSE = "pause"

    @property
    def is_trigger(self) -> bool:
        return self in (CheckRole.ALERT, CheckRole.ROLLBACK, CheckRole.PAUSE)


@dataclass(frozen=True)
class Check:
    """A check as the core evaluates it: role, condition and the metric behind it."""

    id: str
    role: CheckRole
    condition: Condition
    metric: MetricSpec
    name: str
    min_samples: int
    target: Target | None = None
    severity: str = ""
    alpha: float = 0.01  # sequential checks: the false-alarm bound over all looks
    path: tuple[str | int, ...] = field(default=(), compare=False)
    # derived once (the core reads them every evaluation round)
    dimension: Dimension = field(init=False, compare=False)
    trigger: bool = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dimension", self.metric.dimension)
        object.__setattr__(self, "trigger", self.role.is_trigger)

    def describe(self) -> str:
        return self.condition.describe(self.dimension)


_SECTIONS: tuple[tuple[CheckRole, tuple[str, ...]], ...] = (
    (CheckRole.MANDATORY, ("criteria", "mandatory")),
    (CheckRole.DESIRABLE, ("criteria", "desirable")),
    (CheckRole.ALERT, ("alerts",)),
    (CheckRole.ROLLBACK, ("rollback",)),
    (CheckRole.PAUSE, ("pause",)),
)


def _group_checks(group: CheckGroup, role: CheckRole, section: tuple[str, ...]) -> list[CheckSpec]:
    node: Any = group
    for part in section:
        node = getattr(node, part)
    return list(node)


def iter_check_specs(
    plan: Plan,
) -> list[tuple[int | None, CheckRole, CheckSpec, tuple[str | int, ...]]]:
    """Every check spec with its stage index (None: every_stage), role and YAML path."""
    out: list[tuple[int | None, CheckRole, CheckSpec, tuple[str | int, ...]]] = []
    groups: list[tuple[int | None, CheckGroup, tuple[str | int, ...]]] = [
        (None, plan.spec.every_stage, ("spec", "every_stage"))
    ]
    groups += [(i, s, ("spec", "stages", i)) for i, s in enumerate(plan.spec.stages)]
    for index, group, base in groups:
        for role, section in _SECTIONS:
            for j, spec in enumerate(_group_checks(group, role, section)):
                out.append((index, role, spec, (*base, *section, j)))
    return out


def compile_checks(plan: Plan) -> None:
    """Attach the compiled :class:`Check` list to every stage (every_stage merged in)."""
    per_stage: dict[int, list[Check]] = {i: [] for i in range(len(plan.spec.stages))}
    shared: list[tuple[CheckRole, CheckSpec, tuple[str | int, ...]]] = []
    for index, role, spec, path in iter_check_specs(plan):
        if index is None:
            shared.append((role, spec, path))
        else:
            per_stage[index].append(_compile(plan, role, spec, path))
    for i, stage in enumerate(plan.spec.stages):
        checks = per_stage[i] + [_compile(plan, role, spec, path) for role, spec, path in shared]
        seen: set[str] = set()
        unique: list[Check] = []
        for check in checks:
            cid = check.id
            n = 2
            while cid in seen:
                cid = f"{check.id}#{n}"
                n += 1
            seen.add(cid)
            unique.append(check if cid == check.id else _with_id(check, cid))
        stage._checks = tuple(unique)


def _with_id(check: Check, new_id: str) -> Check:
    from dataclasses import replace

    return replace(check, id=new_id)


def _compile(
    plan: Plan, role: CheckRole, spec: CheckSpec, path: tuple[str | int, ...]
) -> Check:
    metric = plan.spec.metrics[spec.check.metric]
    min_samples = spec.min_samples
    if min_samples is None:
        min_samples = metric.min_samples
    if min_samples is None:
        min_samples = plan.spec.defaults.min_samples
    name = spec.name or spec.check.text
    return Check(
        id=f"{role.value}:{name}",
        role=role,
        condition=spec.check,
        metric=metric,
        name=name,
        min_samples=min_samples,
        target=spec.parsed_target,
        severity=getattr(spec, "severity", "") or "",
        alpha=spec.alpha if spec.alpha is not None else DEFAULT_ALPHA,
        path=path,
    )
