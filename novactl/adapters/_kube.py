"""Kubernetes access shared by the Kubernetes adapters and the cluster store.

    KubeError (AdapterError)      one line: verb, object, namespace, reason, message
      ├── KubeNotFound            404
      └── KubeConflict            409 (stale resourceVersion, or already exists)

The official ``kubernetes`` client does the transport, the kubeconfig and the
auth; it is imported only when a Kubernetes adapter is built, so ``novactl
--help`` never pays for it.  Every request goes through :class:`Kube`, which

* retries transport errors, HTTP 429 (honouring ``Retry-After``) and 5xx with
  tenacity, with backoff and a bound; nothing else is retried;
* writes with merge patches that carry the ``resourceVersion`` they were
  computed from, so a concurrent writer makes the API answer 409; on 409 it
  reads the object again and recomputes the change (:meth:`Kube.update`);
* in dry-run mode sends every write with ``dryRun=All`` (the API server
  validates it, admission and RBAC included, and stores nothing), prints the
  patch, and remembers the would-be object so later reads in the same run see it.

Where the cluster is (first match wins):

    kubeconfig  --kubeconfig (NOVACTL_KUBECONFIG) · config ``kubeconfig`` · KUBECONFIG
                · ~/.kube/config · in-cluster service account
    context     --context (NOVACTL_KUBE_CONTEXT) · config ``context`` · current-context
    namespace   --namespace (NOVACTL_NAMESPACE) · config ``namespace`` · the context's
                namespace · the pod's namespace (in cluster) · "default"
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from novactl._errors import AdapterError
from novactl.adapters._base import AdapterConfig, AdapterContext, Duration

__all__ = [
    "CONFIGMAP",
    "DEPLOYMENT",
    "ENV_CONTEXT",
    "ENV_DRY_RUN",
    "ENV_KUBECONFIG",
    "ENV_NAMESPACE",
    "INGRESS",
    "LEASE",
    "POD",
    "REPLICASET",
    "Kube",
    "KubeConfig",
    "KubeConflict",
    "KubeError",
    "KubeNotFound",
    "Resource",
    "connect",
    "merge_patch",
]

ENV_KUBECONFIG = "NOVACTL_KUBECONFIG"
ENV_CONTEXT = "NOVACTL_KUBE_CONTEXT"
ENV_NAMESPACE = "NOVACTL_NAMESPACE"
ENV_DRY_RUN = "NOVACTL_DRY_RUN"

MERGE = "application/merge-patch+json"
RETRY_AFTER_MAX = 10.0  # never sleep longer than this on one Retry-After
BACKOFF_FIRST = 0.2
BACKOFF_MAX = 2.0
IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
MANAGED_BY = {"app.kubernetes.io/managed-by": "novactl"}


class KubeError(AdapterError):
    """An API request failed: ``<verb> <plural>/<name> in <ns>: <Reason>: <message>``."""

    def __init__(self, message: str, *, adapter: str = "", status: int | None = None,
                 reason: str = "") -> None:
        super().__init__(message, adapter=adapter)
        self.status = status
        self.reason = reason


class KubeNotFound(KubeError):
    pass


class KubeConflict(KubeError):
    pass


class KubeConfig(AdapterConfig):
    """Cluster settings every Kubernetes adapter shares."""

    kubeconfig: str | None = Field(None, description="kubeconfig file (relative to the plan "
                                   "file); default: KUBECONFIG, ~/.kube/config or in-cluster.")
    context: str | None = Field(None, description="kubeconfig context; default: current.")
    namespace: str | None = Field(None, description="Namespace; default: the context's.")
    timeout: Duration = Field(10.0, description="Timeout of one API request.")
    retries: int = Field(4, ge=0, le=20, description="Retries on transport errors, 429 "
                         "and 5xx.")
    conflict_retries: int = Field(5, ge=0, le=50, description="Re-reads after a 409 "
                                  "conflict before giving up.")


@dataclass(frozen=True)
class Resource:
    """A namespaced API resource: ``apps/v1`` ``Deployment`` ``deployments``."""

    api_version: str
    kind: str
    plural: str

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    def path(self, namespace: str, name: str | None = None, sub: str | None = None) -> str:
        base = (f"/apis/{self.api_version}" if self.group else f"/api/{self.api_version}")
        path = f"{base}/namespaces/{namespace}/{self.plural}"
        if name is not None:
            path += f"/{name}"
        if sub is not None:
            path += f"/{sub}"
        return path

    def ref(self, name: str) -> str:
        group = f".{self.group}" if self.group else ""
        return f"{self.plural}{group}/{name}"


CONFIGMAP = Resource("v1", "ConfigMap", "configmaps")
POD = Resource("v1", "Pod", "pods")
DEPLOYMENT = Resource("apps/v1", "Deployment", "deployments")
REPLICASET = Resource("apps/v1", "ReplicaSet", "replicasets")
INGRESS = Resource("networking.k8s.io/v1", "Ingress", "ingresses")
LEASE = Resource("coordination.k8s.io/v1", "Lease", "leases")


def redact(body: Any) -> Any:
    """``body`` for printing: container ``env`` values and ConfigMap/Secret ``data`` hidden
    (a Deployment patch carries the whole containers list, environment included)."""
    if isinstance(body, list):
        return [redact(item) for item in body]
    if not isinstance(body, dict):
        return body
    out: dict[str, Any] = {}
    for key, value in body.items():
        if key == "env" and isinstance(value, list):
            out[key] = [dict(e, value="***") if isinstance(e, dict) and "value" in e else e
                        for e in value]
        elif key in ("data", "stringData") and isinstance(value, dict):
            out[key] = {k: "***" for k in value}
        else:
            out[key] = redact(value)
    return out


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (what the API server does with ``merge-patch+json``)."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class _Retryable(Exception):
    def __init__(self, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


def _status_message(exc: Any) -> tuple[str, str]:
    """(reason, message) from an ApiException's Status body."""
    reason = str(getattr(exc, "reason", "") or "")
    message = ""
    try:
        body = json.loads(getattr(exc, "body", None) or "{}")
    except (TypeError, ValueError):
        body = {}
    if isinstance(body, dict):
        reason = str(body.get("reason") or reason)
        message = str(body.get("message") or "")
    return reason, " ".join(message.split())[:300]


def _retry_after(exc: Any) -> float | None:
    headers = getattr(exc, "headers", None) or {}
    try:
        value = headers.get("Retry-After") or headers.get("retry-after")
    except AttributeError:
        return None
    try:
        return max(0.0, min(RETRY_AFTER_MAX, float(value))) if value is not None else None
    except (TypeError, ValueError):
        return None


class Kube:
    """One cluster connection in one namespace, with retries, conflicts and dry-run."""

    def __init__(self, api_client: Any, namespace: str, *, label: str = "kubernetes",
                 timeout: float = 10.0, retries: int = 4, conflict_retries: int = 5,
                 dry_run: bool = False, announce: Callable[[str], None] | None = None,
                 log: Callable[[str], None] | None = None,
                 sleep: Callable[[float], None] | None = None) -> None:
        import time

        self.api = api_client
        self.namespace = namespace
        self.label = label
        self.timeout = timeout
        self.retries = retries
        self.conflict_retries = conflict_retries
        self.dry_run = dry_run
        self.announce = announce or (lambda _m: None)
        self.log = log or (lambda _m: None)
        self.sleep = sleep or time.sleep
        self._overlay: dict[tuple[str, str, str], dict[str, Any] | None] = {}
        self._dry_created: set[str] = set()  # created in this dry run: absent on the server
        self._lock = threading.Lock()

    # -- transport
    def _request(self, verb: str, method: str, path: str, *, body: Any = None,
                 query: list[tuple[str, str]] | None = None,
                 content_type: str = "application/json", what: str = "") -> Any:
        from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

        attempts = self.retries + 1

        def wait(retry_state: Any) -> float:
            exc = retry_state.outcome.exception() if retry_state.outcome else None
            if isinstance(exc, _Retryable) and exc.retry_after is not None:
                return exc.retry_after
            return float(min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (retry_state.attempt_number - 1)))

        retrying = Retrying(stop=stop_after_attempt(attempts), wait=wait,
                            retry=retry_if_exception_type(_Retryable), sleep=self.sleep,
                            reraise=True)
        try:
            return retrying(self._attempt, verb, method, path, body, query, content_type, what)
        except _Retryable as exc:
            tries = f"after {attempts} attempts" if attempts > 1 else "(no retries)"
            raise KubeError(f"{verb} {what}: failed {tries}: last {exc.detail}",
                            adapter=self.label) from None

    def _attempt(self, verb: str, method: str, path: str, body: Any,
                 query: list[tuple[str, str]] | None, content_type: str, what: str) -> Any:
        import urllib3
        from kubernetes.client.exceptions import ApiException

        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        try:
            request = self.api.param_serialize(method, path, query_params=list(query or []),
                                               header_params=headers, body=body,
                                               auth_settings=["BearerToken"])
            response = self.api.call_api(*request, _request_timeout=self.timeout)
            response.read()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _Retryable(f"transport error {type(exc).__name__}: "
                             f"{' '.join(str(exc).split())[:160]}") from exc
        except ApiException as exc:  # pragma: no cover - the REST layer raises only on auth
            raise self._translate(verb, what, exc) from None
        status = int(response.status)
        if 200 <= status <= 299:
            data = response.data or b""
            return json.loads(data) if data.strip() else {}
        failure = ApiException(http_resp=response, body=response.data.decode(
            "utf-8", "replace") if response.data else "")
        if status == 429 or status >= 500:
            reason, message = _status_message(failure)
            raise _Retryable(f"HTTP {status} {reason}: {message}".rstrip(": "),
                             _retry_after(failure) if status == 429 else None)
        raise self._translate(verb, what, failure) from None

    def _translate(self, verb: str, what: str, exc: Any) -> KubeError:
        status = int(getattr(exc, "status", 0) or 0)
        reason, message = _status_message(exc)
        text = f"{verb} {what}: {reason or 'HTTP ' + str(status)}"
        if message:
            text += f": {message}"
        cls = KubeNotFound if status == 404 else KubeConflict if status == 409 else KubeError
        if status in (401, 403):
            text += " (check the kubeconfig user and its RBAC; see docs/kubernetes.md)"
        return cls(text, adapter=self.label, status=status, reason=reason)

    def _what(self, res: Resource, name: str | None, namespace: str, sub: str | None = None
              ) -> str:
        ref = res.ref(name) if name else res.plural
        if sub:
            ref += f"/{sub}"
        return f"{ref} in namespace {namespace}"

    # -- reads
    def get(self, res: Resource, name: str, *, namespace: str | None = None,
            sub: str | None = None) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        ns = namespace or self.namespace
        key = (res.path(ns, name, sub), "", "")
        with self._lock:
            if key in self._overlay:
                found = self._overlay[key]
                return copy.deepcopy(found) if found is not None else None
        try:
            return self._request("get", "GET", res.path(ns, name, sub),
                                 what=self._what(res, name, ns, sub))
        except KubeNotFound:
            return None

    def list(self, res: Resource, *, selector: str | None = None,
             namespace: str | None = None) -> list[dict[str, Any]]:
        ns = namespace or self.namespace
        query = [("labelSelector", selector)] if selector else None
        data = self._request("list", "GET", res.path(ns), query=query,
                             what=self._what(res, None, ns))
        return list(data.get("items") or [])

    # -- writes
    def _write(self, verb: str, method: str, path: str, body: Any, what: str, *,
               content_type: str = "application/json") -> Any:
        if not self.dry_run:
            self.log(f"{verb} {what}")
            return self._request(verb, method, path, body=body, content_type=content_type,
                                 what=what)
        kind = {MERGE: " (merge patch)"}.get(content_type, "")
        shown = json.dumps(redact(body), sort_keys=True, separators=(",", ":"))
        self.announce(f"dry run: {verb} {what}{kind}: {shown}")
        return self._request(verb, method, path, body=body, content_type=content_type,
                             what=what, query=[("dryRun", "All")])

    def create(self, res: Resource, body: dict[str, Any], *,
               namespace: str | None = None) -> dict[str, Any]:
        ns = namespace or self.namespace
        name = str((body.get("metadata") or {}).get("name", ""))
        body = {"apiVersion": res.api_version, "kind": res.kind, **body}
        created = self._write("create", "POST", res.path(ns), body, self._what(res, name, ns))
        if self.dry_run:
            with self._lock:
                self._overlay[(res.path(ns, name), "", "")] = copy.deepcopy(created)
                self._dry_created.add(res.path(ns, name))
        return created

    def patch(self, res: Resource, name: str, patch: dict[str, Any], *,
              namespace: str | None = None, sub: str | None = None) -> dict[str, Any]:
        """A merge patch.  Carry ``metadata.resourceVersion`` in it to fail on a stale read."""
        ns = namespace or self.namespace
        path = res.path(ns, name, sub)
        if self.dry_run and sub is None and path in self._dry_created:
            # the server never saw the dry-run create: apply the patch to our copy
            shown = json.dumps(redact(patch), sort_keys=True, separators=(",", ":"))
            self.announce(f"dry run: patch {self._what(res, name, ns)} (merge patch): {shown}")
            with self._lock:
                current = self._overlay.get((path, "", "")) or {}
                body = merge_patch(patch, {"metadata": {"resourceVersion": None}})
                patched = merge_patch(current, body)
                self._overlay[(path, "", "")] = copy.deepcopy(patched)
            return patched
        patched = self._write("patch", "PATCH", path, patch, self._what(res, name, ns, sub),
                              content_type=MERGE)
        if self.dry_run:
            with self._lock:
                self._overlay[(path, "", "")] = copy.deepcopy(patched)
        return patched

    def delete(self, res: Resource, name: str, *, namespace: str | None = None) -> bool:
        """Delete; False when it was already gone."""
        ns = namespace or self.namespace
        try:
            self._write("delete", "DELETE", res.path(ns, name), None, self._what(res, name, ns))
        except KubeNotFound:
            return False
        if self.dry_run:
            with self._lock:
                self._overlay[(res.path(ns, name), "", "")] = None
        return True

    def update(self, res: Resource, name: str,
               change: Callable[[dict[str, Any]], dict[str, Any] | None], *,
               namespace: str | None = None) -> dict[str, Any] | None:
        """Read, compute a merge patch with ``change(obj)``, write it with the
        resourceVersion it was computed from; on 409 read again and recompute.

        ``change`` returns None when nothing needs to change (then nothing is sent).
        Returns the object as it ends up, or None if it does not exist.
        """
        ns = namespace or self.namespace
        for attempt in range(self.conflict_retries + 1):
            current = self.get(res, name, namespace=ns)
            if current is None:
                return None
            patch = change(copy.deepcopy(current))
            if not patch:
                return current
            version = (current.get("metadata") or {}).get("resourceVersion")
            patch = merge_patch(patch, {"metadata": {"resourceVersion": version}}
                                ) if version else patch
            try:
                return self.patch(res, name, patch, namespace=ns)
            except KubeConflict as exc:
                if attempt >= self.conflict_retries:
                    raise KubeConflict(f"{exc.message} (gave up after {attempt + 1} attempts: "
                                       "another writer keeps changing it)", status=409,
                                       reason=exc.reason) from None
                self.log(f"conflict on {res.ref(name)}: reading it again")
        return None  # pragma: no cover - the loop returns or raises

    def close(self) -> None:
        closer = getattr(self.api, "close", None)
        if callable(closer):
            try:
                closer()
            except Exception:  # pragma: no cover - closing must never fail a rollback
                pass


# --------------------------------------------------------------------------- connecting


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def connect(config: KubeConfig, context: AdapterContext, *, label: str) -> Kube:
    """A :class:`Kube` for an adapter's config; flags (environment) override the plan."""
    try:
        from kubernetes import client as kclient
        from kubernetes import config as kconfig
        from kubernetes.config.config_exception import ConfigException
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise AdapterError("the kubernetes package is not installed", adapter=label) from exc

    env = context.env
    explicit = env.get(ENV_KUBECONFIG) or config.kubeconfig
    if env.get(ENV_KUBECONFIG):  # a flag: relative to the current directory
        path = str(Path(env[ENV_KUBECONFIG]).expanduser().absolute())
    elif config.kubeconfig:  # in the plan: relative to the plan file
        file = Path(config.kubeconfig).expanduser()
        path = str(file if file.is_absolute() else Path(context.base_dir) / file)
    else:
        path = env.get("KUBECONFIG") or str(Path("~/.kube/config").expanduser())
    wanted_context = env.get(ENV_CONTEXT) or config.context
    configuration = kclient.Configuration()
    namespace = env.get(ENV_NAMESPACE) or config.namespace
    files = [p for p in path.split(":") if p]
    source = f"kubeconfig {path}"
    try:
        if (not explicit and not any(Path(p).is_file() for p in files)
                and env.get("KUBERNETES_SERVICE_HOST")):
            from kubernetes.config.incluster_config import (
                SERVICE_CERT_FILENAME,
                SERVICE_TOKEN_FILENAME,
                InClusterConfigLoader,
            )

            source = "in-cluster config (service account)"
            InClusterConfigLoader(token_filename=SERVICE_TOKEN_FILENAME,
                                  cert_filename=SERVICE_CERT_FILENAME,
                                  environ=dict(env)).load_and_set(configuration)
            if not namespace:
                try:
                    namespace = IN_CLUSTER_NAMESPACE.read_text().strip()
                except OSError:
                    namespace = None
        else:
            missing = [p for p in files if not Path(p).is_file()]
            if missing and len(missing) == len(files):
                raise AdapterError(f"kubeconfig {path} not found (set --kubeconfig, KUBECONFIG "
                                   "or the adapter's kubeconfig)", adapter=label)
            kconfig.load_kube_config(config_file=path, context=wanted_context,
                                     client_configuration=configuration,
                                     persist_config=False)
            if not namespace:
                contexts, current = kconfig.list_kube_config_contexts(config_file=path)
                chosen = next((c for c in contexts if c.get("name") == wanted_context),
                              current) if wanted_context else current
                namespace = ((chosen or {}).get("context") or {}).get("namespace")
    except ConfigException as exc:
        detail = " ".join(str(exc).split())[:200]
        raise AdapterError(f"{source}: {detail}", adapter=label) from None
    configuration.retries = 0  # tenacity retries, with a bound; urllib3 must not add its own
    api = kclient.ApiClient(configuration)
    api.user_agent = "novactl"
    return Kube(api, namespace or "default", label=label, timeout=config.timeout,
                retries=config.retries, conflict_retries=config.conflict_retries,
                dry_run=bool(getattr(context, "dry_run", False)) or _truthy(env.get(ENV_DRY_RUN)),
                announce=getattr(context, "announce", None), log=context.log,
                sleep=context.clock.sleep)


def owned_labels(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {**MANAGED_BY, **dict(extra or {})}


# --------------------------------------------------------------------------- adapters


class KubeAdapter:
    """Base of the Kubernetes adapters: a lazily opened :class:`Kube` connection.

    Subclasses set ``Config`` (derived from :class:`KubeConfig`).  They support
    ``--dry-run`` themselves: every write is sent with ``dryRun=All`` and shown.
    """

    Config: Any = KubeConfig
    supports_dry_run = True
    Error: type[AdapterError] = AdapterError  # what a missing object raises

    def __init__(self, name: str, config: Any, context: AdapterContext | None = None) -> None:
        if isinstance(config, dict):
            config = self.Config.model_validate(config)
        self.name = name
        self.config = config
        self.context = context or AdapterContext()
        self._kube: Kube | None = None
        self._connecting = threading.Lock()

    @property
    def label(self) -> str:
        return f"{type(self).__name__}({self.name})"

    @property
    def kube(self) -> Kube:
        with self._connecting:
            if self._kube is None:
                self._kube = connect(self.config, self.context, label=self.label)
            return self._kube

    def missing(self, res: Resource, name: str) -> AdapterError:
        return self.Error(f"{res.kind} {name} not found in namespace {self.kube.namespace}",
                          adapter=self.label)

    def require(self, res: Resource, name: str) -> dict[str, Any]:
        """The object, or the adapter's error naming it when it does not exist."""
        obj = self.kube.get(res, name)
        if obj is None:
            raise self.missing(res, name)
        return obj

    def close(self) -> None:
        with self._connecting:
            if self._kube is not None:
                self._kube.close()
                self._kube = None


def split_weight(weight: float, total: int, *, label: str, hint: str = "") -> tuple[int, int]:
    """(stable, canary) integer weights out of ``total`` for ``weight`` percent, exactly."""
    from novactl._errors import TrafficError

    if not 0.0 <= weight <= 100.0:
        raise TrafficError(f"weight {weight:g}% is outside 0..100", adapter=label)
    canary = weight * total / 100.0
    if abs(canary - round(canary)) > 1e-6:
        raise TrafficError(f"{weight:g}% cannot be expressed as whole weights out of {total}"
                           f"{hint}", adapter=label)
    whole = round(canary)
    return total - whole, whole


def share(canary: float, stable: float) -> float | None:
    """The canary's share in percent, or None when no backend has any weight."""
    total = canary + stable
    if total <= 0:
        return None
    return round(canary * 100.0 / total, 6)
