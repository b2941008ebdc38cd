"""novactl schema"""

from __future__ import annotations

from novactl.cli._terminal import term


def command() -> None:
    """Print the JSON Schema of the plan format (point your editor's YAML plugin at it)."""
    from novactl.plan import Plan

    schema = Plan.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "novactl RolloutPlan"
    term.json(schema)
