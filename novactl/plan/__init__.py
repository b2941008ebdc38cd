"""The rollout plan: its YAML format, expression language and validation."""

from novactl.plan._expr import Condition, ExprError, Reference, RefKind, Target, Threshold
from novactl.plan._load import load_plan, load_plan_text, render_vars
from novactl.plan._model import (
    API_VERSION,
    KIND,
    Check,
    CheckRole,
    DurationRange,
    MetricKind,
    MetricSpec,
    Plan,
    StageSpec,
)

__all__ = [
    "API_VERSION",
    "KIND",
    "Check",
    "CheckRole",
    "Condition",
    "DurationRange",
    "ExprError",
    "MetricKind",
    "MetricSpec",
    "Plan",
    "RefKind",
    "Reference",
    "StageSpec",
    "Target",
    "Threshold",
    "load_plan",
    "load_plan_text",
    "render_vars",
]
