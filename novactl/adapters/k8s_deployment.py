"""Kubernetes Deployment workload: one Deployment per role.

    workload:
      type: deployment
      ready_timeout: 10m
      config:
        namespace: novacron
        image: registry.novacron.io/api:{{version}}
        container: api                          # default: the first container
        roles:
          canary: {deployment: novacron-api-canary}
          stable: {deployment: novacron-api}

``deploy`` sets the role's container image (and ``spec.replicas`` when given)
with a patch that carries the resourceVersion it was computed from, and
records the version in the ``novactl.io/version`` annotation; ``scale`` goes
through the ``scale`` subresource; ``ready`` applies the rules of ``kubectl
rollout status`` (observedGeneration, updated/available replicas, no old
replicas left) and, when not ready, names the stuck pods' reasons
(ImagePullBackOff, CrashLoopBackOff, Unschedulable...); ``promote`` puts the
version on the stable Deployment (at ``replicas`` or its current count);
``retire`` deletes the stable and canary Deployments' old ReplicaSets that
still hold the retired version's image and run no pods (``retire: none``
keeps them).  Rollback order (traffic first, then scale the canary down) is
the state machine's.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from novactl._errors import WorkloadError
from novactl.adapters._base import Readiness
from novactl.adapters._kube import DEPLOYMENT, POD, REPLICASET, KubeAdapter, KubeConfig
from novactl.plan._load import render_vars

__all__ = ["DeploymentWorkload"]

VERSION_ANNOTATION = "novactl.io/version"


class Role(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    deployment: str
    container: str | None = None
    image: str | None = None  # overrides the workload's image template for this role


class DeploymentConfig(KubeConfig):
    image: str = Field(description="Image template; {{version}} is the version to run.")
    container: str | None = Field(None, description="Container to update (default: first).")
    roles: dict[Literal["canary", "stable"], Role] = Field(
        description="The Deployment of each role: canary and stable.")
    retire: Literal["replicasets", "none"] = Field(
        "replicasets", description="What retiring a version removes.")
    pod_reasons: int = Field(3, ge=0, le=20, description="How many stuck-pod reasons a "
                             "not-ready message names.")

    @model_validator(mode="after")
    def _both_roles(self) -> DeploymentConfig:
        missing = {"canary", "stable"} - set(self.roles)
        if missing:
            raise ValueError(f"roles: missing {', '.join(sorted(missing))} (both canary and "
                             "stable name a Deployment)")
        if "{{version}}" not in self.image and not all(r.image for r in self.roles.values()):
            raise ValueError("image must contain {{version}}")
        return self


class DeploymentWorkload(KubeAdapter):
    Config = DeploymentConfig

    def _role(self, role: str) -> Role:
        try:
            return self.config.roles[role]
        except KeyError:
            raise WorkloadError(f"unknown role {role!r}", adapter=self.label) from None

    def image_for(self, role: str, version: str) -> str:
        template = self._role(role).image or self.config.image
        return render_vars(template, {"version": version})

    def _container_index(self, role: str, containers: list[dict[str, Any]]) -> int:
        wanted = self._role(role).container or self.config.container
        if not containers:
            raise WorkloadError(f"deployment {self._role(role).deployment} has no containers",
                                adapter=self.label)
        if wanted is None:
            return 0
        for index, container in enumerate(containers):
            if container.get("name") == wanted:
                return index
        names = ", ".join(str(c.get("name")) for c in containers)
        raise WorkloadError(f"deployment {self._role(role).deployment} has no container "
                            f"{wanted!r} (it has {names})", adapter=self.label)

    def _get(self, role: str) -> dict[str, Any]:
        name = self._role(role).deployment
        obj = self.kube.get(DEPLOYMENT, name)
        if obj is None:
            raise WorkloadError(f"deployment {name} not found in namespace "
                                f"{self.kube.namespace}", adapter=self.label)
        return obj

    # -- Workload
    def deploy(self, role: str, version: str, replicas: int | None) -> None:
        name = self._role(role).deployment
        image = self.image_for(role, version)

        def change(obj: dict[str, Any]) -> dict[str, Any] | None:
            spec = obj.get("spec") or {}
            containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
            index = self._container_index(role, containers)
            patch: dict[str, Any] = {}
            if containers[index].get("image") != image:
                containers[index]["image"] = image
                # a merge patch replaces lists whole: send them all, as read
                patch["spec"] = {"template": {"spec": {"containers": containers}}}
            if replicas is not None and spec.get("replicas") != replicas:
                patch.setdefault("spec", {})["replicas"] = replicas
            elif replicas is None and spec.get("replicas", 1) == 0:
                raise WorkloadError(f"deployment {name} is scaled to 0 and no replica count "
                                    "was given: set replicas for this stage", adapter=self.label)
            annotations = (obj.get("metadata") or {}).get("annotations") or {}
            if annotations.get(VERSION_ANNOTATION) != version:
                patch["metadata"] = {"annotations": {VERSION_ANNOTATION: version}}
            return patch or None

        if self.kube.update(DEPLOYMENT, name, change) is None:
            self._get(role)  # raises: not found

    def scale(self, role: str, replicas: int) -> None:
        from novactl.adapters._kube import KubeNotFound

        name = self._role(role).deployment
        try:
            current = self.kube.get(DEPLOYMENT, name, sub="scale")
            if current is None:
                raise KubeNotFound("missing")
            if (current.get("spec") or {}).get("replicas") == replicas:
                return
            self.kube.patch(DEPLOYMENT, name, {"spec": {"replicas": replicas}}, sub="scale")
        except KubeNotFound:
            raise WorkloadError(f"deployment {name} not found in namespace "
                                f"{self.kube.namespace}", adapter=self.label) from None

    def ready(self, role: str) -> Readiness:
        dep = self._get(role)
        name = self._role(role).deployment
        meta, spec, status = (dep.get("metadata") or {}, dep.get("spec") or {},
                              dep.get("status") or {})
        version = (meta.get("annotations") or {}).get(VERSION_ANNOTATION)
        desired = int(spec.get("replicas", 1))
        ready_n = int(status.get("readyReplicas") or 0)
        if self.kube.dry_run:
            return Readiness(True, "dry run: readiness not checked", ready_n, desired, version)
        if desired == 0:  # nothing would serve: never "ready" (0/0 is no canary at all)
            return Readiness(False, f"deployment {name} is scaled to 0 replicas", ready_n,
                             desired, version)
        updated = int(status.get("updatedReplicas") or 0)
        available = int(status.get("availableReplicas") or 0)
        total = int(status.get("replicas") or 0)

        def not_ready(text: str) -> Readiness:
            return Readiness(False, f"deployment {name}: {text}{self._why(dep)}", ready_n,
                             desired, version)

        if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
            return Readiness(False, f"deployment {name}: waiting for the controller to see "
                             "the new spec", ready_n, desired, version)
        for cond in status.get("conditions") or []:
            if cond.get("type") == "Progressing" and cond.get("reason") == \
                    "ProgressDeadlineExceeded":
                return not_ready("progress deadline exceeded")
        if updated < desired:
            return not_ready(f"{updated} of {desired} replicas updated")
        if total > updated:
            return not_ready(f"{total - updated} old replicas pending termination")
        if available < updated:
            return not_ready(f"{available} of {updated} updated replicas available")
        return Readiness(True, f"deployment {name}: {available}/{desired} available", ready_n,
                         desired, version)

    def _why(self, dep: dict[str, Any]) -> str:
        """``; pods: 2× ImagePullBackOff (Back-off pulling image "x")`` from the pods."""
        if self.config.pod_reasons == 0:
            return ""
        labels = ((dep.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        if not labels:
            return ""
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        try:
            pods = self.kube.list(POD, selector=selector)
        except Exception as exc:  # the reasons are a courtesy; readiness stays "not ready"
            return f"; pod reasons unavailable: {getattr(exc, 'message', exc)}"
        reasons: Counter[str] = Counter()
        for pod in pods:
            reason = _pod_reason(pod)
            if reason:
                reasons[reason] += 1
        if not reasons:
            return ""
        parts = [f"{n}× {r}" if n > 1 else r
                 for r, n in reasons.most_common(self.config.pod_reasons)]
        return "; pods: " + "; ".join(parts)

    def promote(self, version: str, replicas: int | None) -> None:
        if replicas is None:
            current = (self._get("stable").get("spec") or {}).get("replicas")
            replicas = int(current) if current is not None else None
        self.deploy("stable", version, replicas)

    def retire(self, version: str) -> None:
        if self.config.retire == "none":
            self.context.log(f"{self.label}: retire is off; old ReplicaSets of {version} kept")
            return
        removed = 0
        for role in ("stable", "canary"):
            dep = self.kube.get(DEPLOYMENT, self._role(role).deployment)
            if dep is None:
                continue
            image = self.image_for(role, version)
            uid = (dep.get("metadata") or {}).get("uid")
            labels = ((dep.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
            selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or None
            for rs in self.kube.list(REPLICASET, selector=selector):
                meta = rs.get("metadata") or {}
                owners = meta.get("ownerReferences") or []
                if uid and not any(o.get("uid") == uid for o in owners):
                    continue
                containers = (((rs.get("spec") or {}).get("template") or {}).get("spec")
                              or {}).get("containers") or []
                if image not in [c.get("image") for c in containers]:
                    continue
                if int((rs.get("spec") or {}).get("replicas") or 0) > 0:
                    continue  # still running pods: not old, or not ours to remove
                if self.kube.delete(REPLICASET, str(meta.get("name"))):
                    removed += 1
        self.context.log(f"{self.label}: retired {version}: {removed} ReplicaSet(s) removed")


def _pod_reason(pod: dict[str, Any]) -> str:
    status = pod.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return _with_message(cond.get("reason") or "Unschedulable", cond.get("message"))
    for cs in [*(status.get("initContainerStatuses") or []),
               *(status.get("containerStatuses") or [])]:
        state = cs.get("state") or {}
        if "waiting" in state and (state["waiting"] or {}).get("reason") not in (
                None, "ContainerCreating", "PodInitializing"):
            waiting = state["waiting"]
            return _with_message(waiting.get("reason"), waiting.get("message"))
        if "terminated" in state and (state["terminated"] or {}).get("exitCode", 0) != 0:
            term = state["terminated"]
            return _with_message(term.get("reason") or "Error",
                                 f"exit code {term.get('exitCode')}")
        if cs.get("ready") is False and (cs.get("lastState") or {}).get("terminated"):
            last = cs["lastState"]["terminated"]
            return _with_message(f"restarting ({last.get('reason') or 'Error'})",
                                 f"{cs.get('restartCount', 0)} restarts")
    if status.get("phase") == "Pending":
        return "Pending"
    return ""


def _with_message(reason: Any, message: Any) -> str:
    text = " ".join(str(message or "").split())
    if len(text) > 120:
        text = text[:119] + "…"
    return f"{reason} ({text})" if text else str(reason)
