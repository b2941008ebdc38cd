"""SMI traffic shifter: TrafficSplit backend weights (Linkerd, Open Service Mesh...).

    traffic:
      type: smi
      config:
        namespace: novacron
        traffic_split: novacron-api
        stable_service: novacron-api-stable
        canary_service: novacron-api-canary

``set_weight`` sets the two backends' weights (``stable = total − w``,
``canary = w``; the canary backend is added when missing); other backends
and fields stay as they are.  A TrafficSplit cannot route by header:
``set_header_route`` is an explicit no-op that answers False, and ``status``
says the debug header is not routed.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import Field

from novactl._errors import TrafficError
from novactl.adapters._kube import KubeAdapter, KubeConfig, Resource, share, split_weight

__all__ = ["SmiShifter"]


class SmiConfig(KubeConfig):
    traffic_split: str = Field(description="The TrafficSplit name.")
    stable_service: str = Field(description="Backend service of the stable version.")
    canary_service: str = Field(description="Backend service of the canary version.")
    api_version: str = Field("split.smi-spec.io/v1alpha2", description="TrafficSplit API "
                             "version (v1alpha2 or later: integer weights).")
    weight_total: int = Field(100, ge=1, le=1_000_000, description="Sum of the two weights.")


class SmiShifter(KubeAdapter):
    Config = SmiConfig
    Error = TrafficError

    @property
    def resource(self) -> Resource:
        return Resource(self.config.api_version, "TrafficSplit", "trafficsplits")

    def set_weight(self, weight: float) -> None:
        cfg = self.config
        stable_w, canary_w = split_weight(weight, cfg.weight_total, label=self.label,
                                          hint=" (set weight_total: 1000)")

        def change(obj: dict[str, Any]) -> dict[str, Any] | None:
            backends = copy.deepcopy((obj.get("spec") or {}).get("backends") or [])
            new = copy.deepcopy(backends)
            found = {b.get("service"): b for b in new if isinstance(b, dict)}
            if cfg.stable_service not in found:
                raise TrafficError(f"TrafficSplit {cfg.traffic_split} has no backend "
                                   f"{cfg.stable_service}", adapter=self.label)
            others = [s for s, b in found.items() if s not in (cfg.stable_service,
                                                               cfg.canary_service)
                      and _weight(b.get("weight")) != 0]
            if others:
                raise TrafficError(f"TrafficSplit {cfg.traffic_split} also sends to "
                                   f"{', '.join(map(str, others))}; novactl only splits "
                                   "between stable and canary", adapter=self.label)
            if cfg.canary_service not in found:
                found[cfg.canary_service] = {"service": cfg.canary_service}
                new.append(found[cfg.canary_service])
            found[cfg.stable_service]["weight"] = stable_w
            found[cfg.canary_service]["weight"] = canary_w
            return None if new == backends else {"spec": {"backends": new}}

        if self.kube.update(self.resource, cfg.traffic_split, change) is None:
            raise self.missing(self.resource, self.config.traffic_split)

    def get_weight(self) -> float | None:
        split = self.require(self.resource, self.config.traffic_split)
        backends = (split.get("spec") or {}).get("backends") or []
        weights = {b.get("service"): _weight(b.get("weight")) for b in backends
                   if isinstance(b, dict)}
        if self.config.stable_service not in weights:
            raise TrafficError(f"TrafficSplit {self.config.traffic_split} has no backend "
                               f"{self.config.stable_service}", adapter=self.label)
        canary = weights.get(self.config.canary_service, 0.0)
        return share(canary, sum(weights.values()) - canary)  # other backends count too

    def set_header_route(self, header: str, value: str) -> bool:
        self.context.log(f"{self.label}: a TrafficSplit cannot route by header; "
                         f"{header}: {value} is not routed to the canary")
        return False


def _weight(value: Any) -> float:
    """v1alpha2+ weights are integers; v1alpha1 used quantities such as ``500m``."""
    text = str(value if value is not None else 0).strip()
    if text.endswith("m"):
        return float(text[:-1]) / 1000.0
    try:
        return float(text)
    except ValueError:
        raise TrafficError(f"TrafficSplit backend weight {text!r} is not a number") from None
