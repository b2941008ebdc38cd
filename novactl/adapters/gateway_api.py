"""Gateway API traffic shifter: HTTPRoute ``backendRefs`` weights.

    traffic:
      type: gateway-api
      config:
        namespace: novacron
        route: novacron-api                 # an HTTPRoute the team owns
        stable_service: novacron-api
        canary_service: novacron-api-canary

Every rule of the route with a backendRef to ``stable_service`` gets
weights ``stable = total − w``, ``canary = w`` (a canary backendRef is added,
copied from the stable one, when missing).  The header route is one more
rule whose matches are those of the weighted rules plus an exact header
match, sending only to the canary: the Gateway API prefers the rule with more
header matches, so it wins for requests that carry the header.  The route's
``novactl.io/header-route`` annotation records that rule (``header=value``) so
it is told apart from the team's rules.  Other rules, other backendRefs and
other fields stay as they are; each write carries the resourceVersion it was
computed from.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import Field

from novactl._errors import TrafficError
from novactl.adapters._kube import KubeAdapter, KubeConfig, Resource, share, split_weight

__all__ = ["GatewayApiShifter"]


class GatewayApiConfig(KubeConfig):
    route: str = Field(description="The HTTPRoute name.")
    stable_service: str = Field(description="Service of the stable version.")
    canary_service: str = Field(description="Service of the canary version.")
    port: int | None = Field(None, ge=1, le=65535, description="Port of the canary "
                             "backendRef (default: the stable backendRef's).")
    api_version: str = Field("gateway.networking.k8s.io/v1",
                             description="HTTPRoute API version (v1 or v1beta1).")
    weight_total: int = Field(100, ge=1, le=1_000_000, description="Sum of the two "
                              "weights; 1000 allows 0.1% steps.")


def _is_ref(ref: Any, service: str) -> bool:
    return (isinstance(ref, dict) and ref.get("name") == service
            and ref.get("kind", "Service") == "Service" and not ref.get("group"))


class GatewayApiShifter(KubeAdapter):
    Config = GatewayApiConfig
    Error = TrafficError

    @property
    def resource(self) -> Resource:
        return Resource(self.config.api_version, "HTTPRoute", "httproutes")

    def _is_header_rule(self, rule: dict[str, Any], header: tuple[str, str] | None) -> bool:
        """novactl's header rule: only the canary, every match has the recorded header."""
        if header is None:
            return False
        refs = rule.get("backendRefs") or []
        matches = rule.get("matches") or []
        wanted = {"type": "Exact", "name": header[0], "value": header[1]}
        return (len(refs) == 1 and _is_ref(refs[0], self.config.canary_service) and
                bool(matches) and all(wanted in _headers(m) for m in matches))

    def _weighted(self, rules: list[dict[str, Any]],
                  header: tuple[str, str] | None) -> list[dict[str, Any]]:
        return [r for r in rules if not self._is_header_rule(r, header) and
                any(_is_ref(b, self.config.stable_service) for b in r.get("backendRefs") or [])]

    def _update(self, edit: Any, header: tuple[str, str] | None = None) -> None:
        """Apply ``edit(rules, recorded_header)``; with ``header``, record it as ours."""

        def change(obj: dict[str, Any]) -> dict[str, Any] | None:
            rules = (obj.get("spec") or {}).get("rules") or []
            recorded = _recorded(obj)
            new = edit(copy.deepcopy(rules), recorded)
            out: dict[str, Any] = {}
            if new != rules:
                out["spec"] = {"rules": new}
            if header is not None and recorded != header:
                value = f"{header[0]}={header[1]}" if header[0] else None  # "" forgets it
                if value is not None or recorded is not None:
                    out["metadata"] = {"annotations": {HEADER_ANNOTATION: value}}
            return out or None

        if self.kube.update(self.resource, self.config.route, change) is None:
            raise self.missing(self.resource, self.config.route)

    # -- TrafficShifter
    def set_weight(self, weight: float) -> None:
        cfg = self.config
        stable_w, canary_w = split_weight(weight, cfg.weight_total, label=self.label,
                                          hint=" (set weight_total: 1000 or 10000)")

        def edit(rules: list[dict[str, Any]], recorded: tuple[str, str] | None
                 ) -> list[dict[str, Any]]:
            weighted = self._weighted(rules, recorded)
            if not weighted:
                raise self._no_rule()
            for rule in weighted:
                refs = rule["backendRefs"]
                others = [b.get("name") for b in refs
                          if not _is_ref(b, cfg.stable_service)
                          and not _is_ref(b, cfg.canary_service) and b.get("weight", 1) != 0]
                if others:
                    raise TrafficError(
                        f"HTTPRoute {cfg.route}: a rule also sends to "
                        f"{', '.join(map(str, others))}; novactl only splits a rule between "
                        "stable and canary", adapter=self.label)
                stable = next(b for b in refs if _is_ref(b, cfg.stable_service))
                canary = next((b for b in refs if _is_ref(b, cfg.canary_service)), None)
                if canary is None:
                    canary = self._canary_ref(stable)
                    refs.append(canary)
                stable["weight"] = stable_w
                canary["weight"] = canary_w
            if weight == 0:  # 0 = all stable: the debug header too (the canary goes away)
                rules = [r for r in rules if not self._is_header_rule(r, recorded)]
            return rules

        self._update(edit, header=("", "") if weight == 0 else None)

    def _canary_ref(self, stable: dict[str, Any]) -> dict[str, Any]:
        ref = {k: v for k, v in stable.items() if k not in ("weight", "filters")}
        ref["name"] = self.config.canary_service
        if self.config.port is not None:
            ref["port"] = self.config.port
        return ref

    def _no_rule(self) -> TrafficError:
        return TrafficError(f"HTTPRoute {self.config.route} has no rule with a backendRef to "
                            f"service {self.config.stable_service}", adapter=self.label)

    def get_weight(self) -> float | None:
        route = self.require(self.resource, self.config.route)
        rules = ((route.get("spec") or {}).get("rules")) or []
        weighted = self._weighted(rules, _recorded(route))
        if not weighted:
            raise self._no_rule()
        shares = set()
        for rule in weighted:
            refs = rule.get("backendRefs") or []
            total = sum(int(b.get("weight", 1)) for b in refs)  # other backends count too
            canary = sum(int(b.get("weight", 1)) for b in refs
                         if _is_ref(b, self.config.canary_service))
            shares.add(share(canary, total - canary))
        if len(shares) != 1:
            raise TrafficError(f"HTTPRoute {self.config.route}: rules disagree on the canary "
                               f"weight ({', '.join(str(s) for s in sorted(shares, key=str))})",
                               adapter=self.label)
        return shares.pop()

    def set_header_route(self, header: str, value: str) -> bool:
        cfg = self.config

        def edit(rules: list[dict[str, Any]], recorded: tuple[str, str] | None
                 ) -> list[dict[str, Any]]:
            weighted = self._weighted(rules, recorded)
            if not weighted:
                raise self._no_rule()
            header_match = {"type": "Exact", "name": header, "value": value}
            matches = []
            for rule in weighted:
                for match in rule.get("matches") or [{}]:
                    m = copy.deepcopy(match)
                    m["headers"] = [h for h in m.get("headers") or []
                                    if h.get("name", "").lower() != header.lower()]
                    m["headers"].append(header_match)
                    if m not in matches:
                        matches.append(m)
            stable = next(b for b in weighted[0]["backendRefs"]
                          if _is_ref(b, cfg.stable_service))
            rule = {"matches": matches, "backendRefs": [self._canary_ref(stable)]}
            kept = [r for r in rules if not self._is_header_rule(r, recorded)]
            return [*kept, rule]

        self._update(edit, header=(header, value))
        return True


HEADER_ANNOTATION = "novactl.io/header-route"


def _recorded(obj: dict[str, Any]) -> tuple[str, str] | None:
    """The header route novactl added to this HTTPRoute (from its annotation), if any."""
    text = ((obj.get("metadata") or {}).get("annotations") or {}).get(HEADER_ANNOTATION)
    if not text or "=" not in text:
        return None
    name, _, value = str(text).partition("=")
    return name, value


def _headers(match: Any) -> list[Any]:
    if not isinstance(match, dict):
        return []
    return [dict(h, type=h.get("type", "Exact")) for h in match.get("headers") or []
            if isinstance(h, dict)]
