"""ingress-nginx traffic shifter: a canary Ingress beside the stable one.

ingress-nginx splits traffic between two Ingresses for the same host and path
when the second carries ``nginx.ingress.kubernetes.io/canary: "true"``::

    traffic:
      type: ingress-nginx
      config:
        namespace: novacron
        stable_ingress: novacron-api            # the team's Ingress; never modified
        canary_ingress: novacron-api-canary     # default: <stable_ingress>-canary
        canary_service: novacron-api-canary     # backend of the canary Ingress if created

``set_weight`` writes ``canary-weight`` (and ``canary-weight-total`` when
``weight_total`` is not 100) on the canary Ingress; ``set_header_route``
writes ``canary-by-header`` and ``canary-by-header-value``.  If the canary
Ingress does not exist it is created from the stable one (same hosts, paths,
TLS and class; every backend that is ``stable_service`` — or every backend,
when that is not given — pointed at ``canary_service``) and labelled
``app.kubernetes.io/managed-by: novactl``.  Only the canary annotations are
ever written: other annotations, the stable Ingress and every other object
stay as they are.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import Field

from novactl._errors import TrafficError
from novactl.adapters._kube import INGRESS, KubeAdapter, KubeConfig, owned_labels, split_weight

__all__ = ["IngressNginxShifter"]


class IngressNginxConfig(KubeConfig):
    stable_ingress: str = Field(description="The stable Ingress (read, never modified).")
    canary_ingress: str | None = Field(None, description="The canary Ingress; default "
                                       "<stable_ingress>-canary.")
    canary_service: str | None = Field(None, description="Backend Service of the canary "
                                       "Ingress when novactl creates it.")
    stable_service: str | None = Field(None, description="Which backends of the stable "
                                       "Ingress to replace (default: all of them).")
    annotation_prefix: str = Field("nginx.ingress.kubernetes.io",
                                   description="The controller's annotation prefix.")
    weight_total: int = Field(100, ge=1, le=1_000_000, description="canary-weight-total "
                              "(ingress-nginx ≥ 1.1.2); 1000 allows 0.1% steps.")
    create: bool = Field(True, description="Create the canary Ingress when it is missing.")


class IngressNginxShifter(KubeAdapter):
    Config = IngressNginxConfig

    @property
    def canary_name(self) -> str:
        return self.config.canary_ingress or f"{self.config.stable_ingress}-canary"

    def _key(self, suffix: str) -> str:
        return f"{self.config.annotation_prefix}/{suffix}"

    def _annotations(self, weight: float | None = None,
                     header: tuple[str, str] | None = None) -> dict[str, str]:
        out = {self._key("canary"): "true"}
        if weight is not None:
            total = self.config.weight_total
            _, canary = split_weight(weight, total, label=self.label,
                                     hint=" (set weight_total: 1000 or 10000)")
            out[self._key("canary-weight")] = str(canary)
            # always written: a total left from an earlier weight_total would misread it
            out[self._key("canary-weight-total")] = str(total)
        if header is not None:
            out[self._key("canary-by-header")] = header[0]
            out[self._key("canary-by-header-value")] = header[1]
        return out

    def _write(self, annotations: dict[str, str | None]) -> None:
        """Write these annotations (None removes one) on the canary Ingress."""
        kube = self.kube

        def change(obj: dict[str, Any]) -> dict[str, Any] | None:
            have = (obj.get("metadata") or {}).get("annotations") or {}
            diff = {k: v for k, v in annotations.items()
                    if (have.get(k) != v if v is not None else k in have)}
            return {"metadata": {"annotations": diff}} if diff else None

        if kube.update(INGRESS, self.canary_name, change) is None:
            if annotations.get(self._key("canary-weight")) == "0":
                return  # no canary Ingress: nothing reaches the canary already (rollback)
            self._create({k: v for k, v in annotations.items() if v is not None})

    def _create(self, annotations: dict[str, str]) -> None:
        from novactl.adapters._kube import KubeConflict

        cfg, kube = self.config, self.kube
        if not cfg.create:
            raise TrafficError(f"canary Ingress {self.canary_name} does not exist in namespace "
                               f"{kube.namespace} (create is off)", adapter=self.label)
        if not cfg.canary_service:
            raise TrafficError(f"canary Ingress {self.canary_name} does not exist in namespace "
                               f"{kube.namespace}; set canary_service so novactl can create it",
                               adapter=self.label)
        stable = kube.get(INGRESS, cfg.stable_ingress)
        if stable is None:
            raise TrafficError(f"stable Ingress {cfg.stable_ingress} not found in namespace "
                               f"{kube.namespace}", adapter=self.label)
        spec = copy.deepcopy(stable.get("spec") or {})
        replaced = _point_backends(spec, cfg.stable_service, cfg.canary_service)
        if not replaced:
            raise TrafficError(f"stable Ingress {cfg.stable_ingress} has no backend "
                               f"{cfg.stable_service or ''} to copy".replace("  ", " "),
                               adapter=self.label)
        kept = {k: v for k, v in ((stable.get("metadata") or {}).get("annotations") or {}
                                  ).items() if k == "kubernetes.io/ingress.class"}
        body = {"metadata": {"name": self.canary_name, "labels": owned_labels(),
                             "annotations": {**kept, **annotations}},
                "spec": spec}
        try:
            kube.create(INGRESS, body)
        except KubeConflict:  # created meanwhile (another runner): write our annotations
            self._write(dict(annotations))
        self.context.log(f"created canary Ingress {self.canary_name} from {cfg.stable_ingress}")

    # -- TrafficShifter
    def set_weight(self, weight: float) -> None:
        annotations: dict[str, str | None] = dict(self._annotations(weight=weight))
        if weight == 0:  # 0 = all stable: debug-header requests too (the canary goes away)
            annotations[self._key("canary-by-header")] = None
            annotations[self._key("canary-by-header-value")] = None
        self._write(annotations)

    def get_weight(self) -> float | None:
        obj = self.kube.get(INGRESS, self.canary_name)
        if obj is None:
            return 0.0  # no canary Ingress: nothing reaches the canary by weight
        ann = (obj.get("metadata") or {}).get("annotations") or {}
        if str(ann.get(self._key("canary"), "")).lower() != "true":
            return 0.0
        try:
            weight = float(ann.get(self._key("canary-weight"), "0") or 0)
            total = float(ann.get(self._key("canary-weight-total"), "100") or 100)
        except ValueError as exc:
            raise TrafficError(f"canary Ingress {self.canary_name}: unreadable weight "
                               f"annotation: {exc}", adapter=self.label) from None
        if total <= 0:
            raise TrafficError(f"canary Ingress {self.canary_name}: canary-weight-total is "
                               f"{total:g}", adapter=self.label)
        return round(min(weight, total) * 100.0 / total, 6)

    def set_header_route(self, header: str, value: str) -> bool:
        self._write(dict(self._annotations(header=(header, value))))
        return True


def _point_backends(spec: dict[str, Any], stable: str | None, canary: str) -> int:
    """Point every backend service (named ``stable``, or all) at ``canary``; how many."""
    count = 0

    def visit(backend: Any) -> None:
        nonlocal count
        service = (backend or {}).get("service") if isinstance(backend, dict) else None
        if isinstance(service, dict) and (stable is None or service.get("name") == stable):
            service["name"] = canary
            count += 1

    visit(spec.get("defaultBackend"))
    for rule in spec.get("rules") or []:
        for path in ((rule or {}).get("http") or {}).get("paths") or []:
            visit((path or {}).get("backend"))
    return count
