"""Istio traffic shifter: VirtualService route weights plus a header-match route.

    traffic:
      type: istio
      config:
        namespace: novacron
        virtual_service: novacron-api
        stable: {host: novacron-api, subset: stable}     # subset optional
        canary: {host: novacron-api, subset: canary}     # (or another host)

Every HTTP route of the VirtualService with a destination equal to
``stable`` gets exactly two destinations: stable with ``100 − w`` and canary
with ``w`` (Istio weights are whole percents that sum to 100); a weighted route
that also sends to a third destination is refused, not rewritten.  The header
route is an HTTP route named ``novactl-debug-header`` placed first (Istio
takes the first route that matches) with the weighted routes' own match
conditions plus an exact match on the header, its name lower-cased as Istio
requires.  Other routes and fields stay as they are.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from novactl._errors import TrafficError
from novactl.adapters._kube import KubeAdapter, KubeConfig, Resource, share, split_weight

__all__ = ["IstioShifter"]

HEADER_ROUTE = "novactl-debug-header"


class Destination(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str
    subset: str | None = None
    port: int | None = Field(None, ge=1, le=65535)

    def to_istio(self) -> dict[str, Any]:
        out: dict[str, Any] = {"host": self.host}
        if self.subset:
            out["subset"] = self.subset
        if self.port is not None:
            out["port"] = {"number": self.port}
        return out

    def matches(self, dest: Any) -> bool:
        if not isinstance(dest, dict) or dest.get("host") != self.host:
            return False
        if (dest.get("subset") or None) != self.subset:
            return False
        return self.port is None or (dest.get("port") or {}).get("number") == self.port


class IstioConfig(KubeConfig):
    virtual_service: str = Field(description="The VirtualService name.")
    stable: Destination = Field(description="Destination of the stable version.")
    canary: Destination = Field(description="Destination of the canary version.")
    api_version: str = Field("networking.istio.io/v1", description="VirtualService API "
                             "version (v1 from Istio 1.22; v1beta1 before).")


class IstioShifter(KubeAdapter):
    Config = IstioConfig
    Error = TrafficError

    @property
    def resource(self) -> Resource:
        return Resource(self.config.api_version, "VirtualService", "virtualservices")

    def _weighted(self, routes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in routes if r.get("name") != HEADER_ROUTE and any(
            self.config.stable.matches((d or {}).get("destination")) for d in r.get("route") or [])]

    def _update(self, edit: Any) -> None:
        def change(obj: dict[str, Any]) -> dict[str, Any] | None:
            routes = (obj.get("spec") or {}).get("http") or []
            new = edit(copy.deepcopy(routes))
            return None if new == routes else {"spec": {"http": new}}

        if self.kube.update(self.resource, self.config.virtual_service, change) is None:
            raise self.missing(self.resource, self.config.virtual_service)

    def _no_route(self) -> TrafficError:
        stable = self.config.stable
        where = f"{stable.host}/{stable.subset}" if stable.subset else stable.host
        return TrafficError(f"VirtualService {self.config.virtual_service} has no HTTP route to "
                            f"{where}", adapter=self.label)

    # -- TrafficShifter
    def set_weight(self, weight: float) -> None:
        cfg = self.config
        stable_w, canary_w = split_weight(weight, 100, label=self.label,
                                          hint=" (Istio weights are whole percents)")

        def edit(routes: list[dict[str, Any]]) -> list[dict[str, Any]]:
            weighted = self._weighted(routes)
            if not weighted:
                raise self._no_route()
            for route in weighted:
                dests = route["route"]
                others = [d.get("destination") for d in dests
                          if not cfg.stable.matches(d.get("destination"))
                          and not cfg.canary.matches(d.get("destination"))]
                if others:
                    raise TrafficError(
                        f"VirtualService {cfg.virtual_service}: route "
                        f"{route.get('name') or '(unnamed)'} also sends to "
                        f"{', '.join(str((o or {}).get('host')) for o in others)}; novactl "
                        "only splits a route between stable and canary", adapter=self.label)
                stable = next(d for d in dests if cfg.stable.matches(d.get("destination")))
                canary = next((d for d in dests if cfg.canary.matches(d.get("destination"))),
                              None) or {"destination": cfg.canary.to_istio()}
                stable["weight"], canary["weight"] = stable_w, canary_w
                route["route"] = [stable, canary]
            if weight == 0:  # 0 = all stable: the debug header too (the canary goes away)
                routes = [r for r in routes if r.get("name") != HEADER_ROUTE]
            return routes

        self._update(edit)

    def get_weight(self) -> float | None:
        vs = self.require(self.resource, self.config.virtual_service)
        weighted = self._weighted((vs.get("spec") or {}).get("http") or [])
        if not weighted:
            raise self._no_route()
        shares = set()
        for route in weighted:
            dests = route.get("route") or []
            one = len(dests) == 1  # a single destination takes everything, weight or not
            total = sum(100 if one else int(d.get("weight", 0)) for d in dests)
            canary = sum(100 if one else int(d.get("weight", 0)) for d in dests
                         if self.config.canary.matches(d.get("destination")))
            shares.add(share(canary, total - canary))  # other destinations count too
        if len(shares) != 1:
            raise TrafficError(f"VirtualService {self.config.virtual_service}: routes disagree "
                               "on the canary weight", adapter=self.label)
        return shares.pop()

    def set_header_route(self, header: str, value: str) -> bool:
        key = header.lower()  # Istio requires lower-case header names

        def edit(routes: list[dict[str, Any]]) -> list[dict[str, Any]]:
            weighted = self._weighted(routes)
            if not weighted:
                raise self._no_route()
            # the weighted routes' own conditions (uri, method...) plus the header, so the
            # header route takes only what the weighted routes would have taken
            matches: list[dict[str, Any]] = []
            for existing in weighted:
                for match in existing.get("match") or [{}]:
                    m = copy.deepcopy(match)
                    m.pop("name", None)
                    m["headers"] = {**(m.get("headers") or {}), key: {"exact": value}}
                    if m not in matches:
                        matches.append(m)
            route = {"name": HEADER_ROUTE, "match": matches,
                     "route": [{"destination": self.config.canary.to_istio()}]}
            return [route, *[r for r in routes if r.get("name") != HEADER_ROUTE]]

        self._update(edit)
        return True
