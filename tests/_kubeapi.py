"""A fake Kubernetes API server for tests: stateful, thread-safe, stdlib only, on loopback.

:class:`FakeKube` serves enough of the Kubernetes REST API on ``127.0.0.1:<free port>``
(``http.server.ThreadingHTTPServer`` in a daemon thread) for the official ``kubernetes``
client — typed APIs and ``CustomObjectsApi`` alike — to work against it::

    with FakeKube() as kube:
        kube.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}})
        client = kubernetes.config.new_client_from_config(
            config_file=str(kube.kubeconfig(tmp_path / "kubeconfig")), context="fake")

What it does
  * Namespaced resources under ``/api/v1/namespaces/{ns}/{plural}[/{name}[/{sub}]]`` and
    ``/apis/{group}/{version}/namespaces/{ns}/{plural}[/{name}[/{sub}]]``; GET on
    ``/api/v1/{plural}`` or ``/apis/{group}/{version}/{plural}`` lists across namespaces.
    ``/version`` answers too.  Any plural works: unknown ones (custom resources) are stored
    generically, their kind learnt from the bodies written.
  * GET (item / collection with ``labelSelector`` — ``a=b``, ``a==b``, ``a!=b``, ``a``,
    ``!a``, ``a in (x,y)``, ``a notin (x)`` — and ``fieldSelector`` on ``metadata.name`` /
    ``metadata.namespace``), POST (create, ``generateName``), PUT (replace), PATCH, DELETE,
    ``dryRun=All`` on writes, subresources ``status`` (any resource) and ``scale`` (any
    ``apps`` resource with ``spec.replicas``: deployments, replicasets, statefulsets).
  * Optimistic concurrency: a PUT body, a patch result or a DELETE precondition whose
    ``metadata.resourceVersion`` (or ``uid``) differs from the stored one is a 409 Conflict
    with the real API's message.  ``resourceVersion`` is one global increasing counter
    (a string); ``generation`` starts at 1 for objects with a ``spec`` and is bumped when the
    spec changes.  The main resource never changes ``.status`` (PUT/PATCH keep the stored
    status); the ``status`` subresource changes only ``.status``.
  * Errors are real ``Status`` bodies (``kind: Status``, ``reason``, ``details``, ``code``)
    with the matching HTTP status.
  * Deployments have a tiny synchronous controller: whenever one is created or its spec
    changes, its status is recomputed as ready (default) or not ready, see
    :meth:`FakeKube.deployment_behaviour`.
  * Faults: :meth:`FakeKube.inject` answers the next matching requests with an error
    Status (with ``Retry-After`` if asked) or drops the connection, without applying them.
  * Every request is recorded in :attr:`FakeKube.requests`.

Simplifications (deliberate)
  * ``application/strategic-merge-patch+json`` is treated as a JSON merge patch (RFC 7386):
    lists are replaced whole (no merge keys such as containers by ``name``) and ``$patch``
    directives are not understood.  Server-side apply (``application/apply-patch+yaml``) is
    415 Unsupported Media Type.
  * No watch (``watch=true`` is a 400), no pagination (``limit`` is ignored, no ``continue``),
    no cluster-scoped resources, no finalizers (DELETE removes at once), no admission,
    defaulting only of a Deployment's ``spec.replicas`` (1), no schema validation.
  * One storage per group and plural: an object written as ``networking.istio.io/v1beta1``
    reads back as ``networking.istio.io/v1`` through a v1 URL (only ``apiVersion`` changes;
    there is no schema conversion).
  * Authentication is not checked.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import re
import socket
import threading
import urllib.parse
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import kubernetes.client

__all__ = ["KINDS", "FakeKube", "KubeError"]

LOOPBACK = "127.0.0.1"

# (apiVersion, kind) -> plural; all namespaced.
KINDS: dict[tuple[str, str], str] = {
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "Secret"): "secrets",
    ("v1", "Pod"): "pods",
    ("v1", "Service"): "services",
    ("v1", "Endpoints"): "endpoints",
    ("v1", "Event"): "events",
    ("v1", "ServiceAccount"): "serviceaccounts",
    ("apps/v1", "Deployment"): "deployments",
    ("apps/v1", "ReplicaSet"): "replicasets",
    ("apps/v1", "StatefulSet"): "statefulsets",
    ("apps/v1", "DaemonSet"): "daemonsets",
    ("networking.k8s.io/v1", "Ingress"): "ingresses",
    ("coordination.k8s.io/v1", "Lease"): "leases",
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "httproutes",
    ("gateway.networking.k8s.io/v1beta1", "HTTPRoute"): "httproutes",
    ("networking.istio.io/v1beta1", "VirtualService"): "virtualservices",
    ("networking.istio.io/v1", "VirtualService"): "virtualservices",
    ("networking.istio.io/v1beta1", "DestinationRule"): "destinationrules",
    ("networking.istio.io/v1", "DestinationRule"): "destinationrules",
    ("split.smi-spec.io/v1alpha2", "TrafficSplit"): "trafficsplits",
    ("split.smi-spec.io/v1alpha4", "TrafficSplit"): "trafficsplits",
}

REASONS: dict[int, str] = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
    405: "MethodNotAllowed", 406: "NotAcceptable", 409: "Conflict", 410: "Expired",
    413: "RequestEntityTooLarge", 415: "UnsupportedMediaType", 422: "Invalid",
    429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout",
}

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"

Key = tuple[str, str, str, str]  # (group, plural, namespace, name)


class KubeError(Exception):
    """An API error, answered as a Status body with HTTP status ``code``."""

    def __init__(self, code: int, message: str, *, reason: str | None = None,
                 details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or REASONS.get(code, "Unknown")
        self.details = details
        self.headers = headers or {}

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                "status": "Failure", "message": self.message,
                                "reason": self.reason, "code": self.code}
        if self.details is not None:
            body["details"] = self.details
        return body


def split_api_version(api_version: str) -> tuple[str, str]:
    """``apps/v1`` → ``("apps", "v1")``; ``v1`` → ``("", "v1")``."""
    group, _, version = api_version.rpartition("/")
    return group, version


def join_api_version(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version


def guess_plural(kind: str) -> str:
    lower = kind.lower()
    if lower.endswith(("s", "x", "ch", "sh")):
        return lower + "es"
    if lower.endswith("y") and lower[-2:-1] not in tuple("aeiou"):
        return lower[:-1] + "ies"
    return lower + "s"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- patches ------------------------------------------------------------------------------

def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (returns a new value)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise KubeError(422, f"invalid JSON pointer {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _index(container: list[Any], token: str, *, insert: bool = False) -> int:
    if insert and token == "-":
        return len(container)
    if not token.isdigit():
        raise KubeError(422, f"invalid array index {token!r}")
    index = int(token)
    if index > len(container) or (not insert and index == len(container)):
        raise KubeError(422, f"array index {index} out of bounds")
    return index


def _resolve(doc: Any, tokens: list[str]) -> Any:
    for token in tokens:
        if isinstance(doc, dict):
            if token not in doc:
                raise KubeError(422, f"doc is missing path: /{'/'.join(tokens)}")
            doc = doc[token]
        elif isinstance(doc, list):
            doc = doc[_index(doc, token)]
        else:
            raise KubeError(422, f"doc is missing path: /{'/'.join(tokens)}")
    return doc


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _resolve(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, insert=True), value)
    else:
        raise KubeError(422, f"cannot add at /{'/'.join(tokens)}")
    return doc


def _remove(doc: Any, tokens: list[str]) -> tuple[Any, Any]:
    if not tokens:
        raise KubeError(422, "cannot remove the whole document")
    parent = _resolve(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise KubeError(422, f"unable to remove nonexistent key: {last}: missing value")
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(_index(parent, last))
    raise KubeError(422, f"cannot remove /{'/'.join(tokens)}")


def json_patch(doc: Any, operations: Any) -> Any:
    """RFC 6902 JSON patch: add, remove, replace, move, copy, test (returns a new value)."""
    if not isinstance(operations, list):
        raise KubeError(400, "a JSON patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise KubeError(400, f"invalid JSON patch operation {op!r}")
        kind, tokens = op["op"], _pointer(op["path"])
        if kind in ("add", "replace", "test") and "value" not in op:
            raise KubeError(400, f"JSON patch operation {kind!r} needs a value")
        if kind == "add":
            doc = _add(doc, tokens, copy.deepcopy(op["value"]))
        elif kind == "remove":
            doc, _ = _remove(doc, tokens)
        elif kind == "replace":
            doc, _ = _remove(doc, tokens) if tokens else (doc, None)
            doc = _add(doc, tokens, copy.deepcopy(op["value"]))
        elif kind == "move":
            doc, value = _remove(doc, _pointer(op.get("from", "")))
            doc = _add(doc, tokens, value)
        elif kind == "copy":
            value = copy.deepcopy(_resolve(doc, _pointer(op.get("from", ""))))
            doc = _add(doc, tokens, value)
        elif kind == "test":
            if _resolve(doc, tokens) != op["value"]:
                raise KubeError(422, f"testing value {op['path']} failed")
        else:
            raise KubeError(400, f"unknown JSON patch operation {kind!r}")
    return doc


# -- selectors ----------------------------------------------------------------------------

def _split_selector(text: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append(current.strip())
            current = ""
        else:
            current += char
    terms.append(current.strip())
    return [term for term in terms if term]


_SET_TERM = re.compile(r"^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$")


def _label_check(key: str, op: str, values: frozenset[str]) -> Callable[[dict], bool]:
    def check(labels: dict) -> bool:
        if op == "exists":
            return key in labels
        if op == "!exists":
            return key not in labels
        if op in ("in", "="):
            return labels.get(key) in values
        return labels.get(key) not in values  # "notin", "!="

    return check


def label_matcher(selector: str) -> Callable[[dict | None], bool]:
    """A predicate on a labels dict for a label selector string; bad syntax is a 400."""
    checks: list[Callable[[dict], bool]] = []
    for term in _split_selector(selector):
        if m := _SET_TERM.match(term):
            values = frozenset(v.strip() for v in m.group(3).split(",") if v.strip())
            checks.append(_label_check(m.group(1), m.group(2), values))
        elif "!=" in term:
            key, value = (s.strip() for s in term.split("!=", 1))
            checks.append(_label_check(key, "!=", frozenset([value])))
        elif "=" in term:
            key, value = (s.strip() for s in re.split(r"==?", term, maxsplit=1))
            checks.append(_label_check(key, "=", frozenset([value])))
        elif term.startswith("!"):
            checks.append(_label_check(term[1:].strip(), "!exists", frozenset()))
        elif re.fullmatch(r"[\w./-]+", term):
            checks.append(_label_check(term, "exists", frozenset()))
        else:
            raise KubeError(400, f"unable to parse requirement: invalid label selector {term!r}")
    return lambda labels: all(check(labels or {}) for check in checks)


def field_matcher(selector: str) -> Callable[[dict], bool]:
    """A predicate on an object for a field selector on metadata.name / metadata.namespace."""
    terms: list[tuple[str, str, bool]] = []
    for term in _split_selector(selector):
        negate = "!=" in term
        field, _, value = term.partition("!=" if negate else "=")
        field, value = field.strip(), value.lstrip("=").strip()
        if field not in ("metadata.name", "metadata.namespace"):
            raise KubeError(400, f'field label not supported: "{field}"')
        terms.append((field.split(".")[1], value, negate))
    return lambda obj: all((obj["metadata"].get(part) == value) != negate
                           for part, value, negate in terms)


# -- the server ---------------------------------------------------------------------------

class _Fault:
    def __init__(self, method: str, path_regex: str, status: int | str, times: int,
                 retry_after: float | None, message: str) -> None:
        self.method = method.upper()
        self.pattern = re.compile(path_regex)
        self.status = status
        self.remaining = times
        self.retry_after = retry_after
        self.message = message

    def matches(self, method: str, path: str) -> bool:
        return (self.remaining > 0 and self.method in ("*", method)
                and self.pattern.search(path) is not None)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client hanging up mid-request is not news


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeKube/1"
    timeout = 30  # idle keep-alive connections end eventually
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms stalls
    fake: FakeKube  # set on the per-server subclass

    def setup(self) -> None:
        super().setup()
        self.fake._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.fake._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        content_type = self.headers.get("Content-Type") or ""
        code, body, headers = self.fake._serve(self.command, self.path, content_type, raw)
        if code == 0:  # dropped: no response at all
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle


class FakeKube:
    """A fake, stateful Kubernetes API server on ``127.0.0.1:<free port>``; see the module doc."""

    def __init__(self) -> None:
        self.url = ""
        self.requests: list[tuple[str, str, str, object]] = []
        self._lock = threading.RLock()
        self._objects: dict[Key, dict[str, Any]] = {}
        self._kinds: dict[tuple[str, str], str] = {}  # (group, plural) -> kind
        self._plurals: dict[tuple[str, str], str] = {}  # (group, kind) -> plural
        for (api_version, kind), plural in KINDS.items():
            group, _ = split_api_version(api_version)
            self._kinds[(group, plural)] = kind
            self._plurals[(group, kind)] = plural
        self._counter = itertools.count(1)
        self._rv = 0
        self._faults: list[_Fault] = []
        self._ready: dict[tuple[str, str], bool] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> FakeKube:
        if self._server is not None:
            return self
        handler = type("FakeKubeHandler", (_Handler,), {"fake": self})
        server = _Server((LOOPBACK, 0), handler)
        self._server = server
        self.url = f"http://{LOOPBACK}:{server.server_address[1]}"
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-kube", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:  # end keep-alive connections still held by clients
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeKube:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    # -- client side conveniences ---------------------------------------------------------

    def kubeconfig(self, path: str | Path, *, namespace: str = "default",
                   context: str = "fake") -> Path:
        """Write a kubeconfig (JSON, which is YAML) pointing at this server; return its path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        config = {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": "fake-cluster", "cluster": {"server": self.url}}],
            "users": [{"name": "fake-user", "user": {"token": "fake-token"}}],
            "contexts": [{"name": context, "context": {"cluster": "fake-cluster",
                                                       "user": "fake-user",
                                                       "namespace": namespace}}],
            "current-context": context,
        }
        path.write_text(json.dumps(config, indent=2) + "\n")
        return path

    def api_client(self) -> kubernetes.client.ApiClient:
        """An ``ApiClient`` for this server, with urllib3 retries off."""
        import kubernetes.client

        configuration = kubernetes.client.Configuration(host=self.url)
        configuration.retries = False
        return kubernetes.client.ApiClient(configuration)

    # -- direct access for tests ----------------------------------------------------------

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict | None:
        group, _ = split_api_version(api_version)
        with self._lock:
            obj = self._objects.get((group, self._plural(group, kind), namespace, name))
            return self._out(obj, api_version) if obj is not None else None

    def put(self, obj: dict, *, reconcile: bool = True) -> dict:
        """Seed or overwrite an object (no conflict checks); returns the stored copy.

        Assigns ``uid``/``creationTimestamp`` (from the argument, else the stored object,
        else new), a new ``resourceVersion`` and ``generation`` (1, or bumped when the spec
        differs from the stored one).  A Deployment that is
        new or whose spec changed gets its status recomputed, unless ``reconcile=False``
        (to seed a status of your own).
        """
        obj = copy.deepcopy(obj)
        api_version, kind = obj.get("apiVersion") or "", obj.get("kind") or ""
        if not api_version or not kind:
            raise ValueError("put() needs apiVersion and kind")
        meta = obj.setdefault("metadata", {})
        if not meta.get("name"):
            raise ValueError("put() needs metadata.name")
        meta.setdefault("namespace", "default")
        group, _ = split_api_version(api_version)
        with self._lock:
            plural = self._plural(group, kind)
            key = (group, plural, meta["namespace"], meta["name"])
            old = self._objects.get(key)
            if old is not None:
                for field in ("uid", "creationTimestamp"):
                    meta.setdefault(field, old["metadata"].get(field))
            else:
                meta.setdefault("uid", str(uuid.uuid4()))
                meta.setdefault("creationTimestamp", _now())
            self._set_generation(obj, old)
            self._defaults(group, plural, obj)
            meta["resourceVersion"] = self._next_rv()
            if reconcile:
                self._reconcile(key, obj, old)
            self._objects[key] = obj
            return self._out(obj, api_version)

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        group, _ = split_api_version(api_version)
        with self._lock:
            self._objects.pop((group, self._plural(group, kind), namespace, name), None)

    def list(self, api_version: str, kind: str, namespace: str | None) -> list[dict]:
        """Objects of a kind in ``namespace`` (``None``: all namespaces), sorted by name."""
        group, _ = split_api_version(api_version)
        with self._lock:
            plural = self._plural(group, kind)
            return [self._out(obj, api_version) for key, obj in sorted(self._objects.items())
                    if key[:2] == (group, plural) and namespace in (None, key[2])]

    @property
    def pending_faults(self) -> int:
        """How many injected faults have not fired yet."""
        with self._lock:
            return sum(f.remaining for f in self._faults)

    def inject(self, method: str, path_regex: str, status: int | str, *, times: int = 1,
               retry_after: float | None = None, message: str = "injected") -> None:
        """Answer the next ``times`` matching requests with ``status`` without applying them.

        A request matches when its method equals ``method`` (or ``method`` is ``"*"``) and
        ``re.search(path_regex, <URL path without query>)`` matches.  ``status`` is an HTTP
        status code (answered with a Status body; ``Retry-After`` header when
        ``retry_after`` is given) or ``"drop"``: the connection is closed with no response.
        Faults are checked in the order injected; each request consumes at most one.
        """
        if isinstance(status, str) and status != "drop":
            raise ValueError("status must be an HTTP status code or 'drop'")
        with self._lock:
            self._faults.append(_Fault(method, path_regex, status, times, retry_after, message))

    def deployment_behaviour(self, namespace: str, name: str, *, ready: bool) -> None:
        """Whether the Deployment becomes ready (the default) or stays unavailable.

        Applies to the Deployment whenever it is created or its spec changes; an existing
        one gets its status recomputed (and a new resourceVersion) at once.
        """
        with self._lock:
            self._ready[(namespace, name)] = ready
            key = ("apps", "deployments", namespace, name)
            obj = self._objects.get(key)
            if obj is not None:
                obj = copy.deepcopy(obj)
                obj["metadata"]["resourceVersion"] = self._next_rv()
                self._reconcile(key, obj, None)
                self._objects[key] = obj

    # -- internals: bookkeeping -----------------------------------------------------------

    def _plural(self, group: str, kind: str) -> str:
        plural = self._plurals.get((group, kind))
        if plural is None:
            plural = guess_plural(kind)
            self._learn(group, plural, kind)
        return plural

    def _kind(self, group: str, plural: str) -> str:
        kind = self._kinds.get((group, plural))
        if kind is not None:
            return kind
        singular = plural[:-3] + "y" if plural.endswith("ies") else plural.rstrip("s")
        return singular[:1].upper() + singular[1:]

    def _learn(self, group: str, plural: str, kind: str) -> None:
        self._kinds.setdefault((group, plural), kind)
        self._plurals.setdefault((group, kind), plural)

    def _next_rv(self) -> str:
        self._rv = next(self._counter)
        return str(self._rv)

    @staticmethod
    def _out(obj: dict[str, Any], api_version: str | None = None) -> dict[str, Any]:
        out = copy.deepcopy(obj)
        if api_version:
            out["apiVersion"] = api_version
        return out

    @staticmethod
    def _set_generation(obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        meta = obj["metadata"]
        old_gen = old["metadata"].get("generation") if old is not None else None
        if "spec" not in obj and old_gen is None:
            meta.pop("generation", None)
            return
        if old is None:
            meta["generation"] = 1
        elif obj.get("spec") != old.get("spec"):
            meta["generation"] = (old_gen or 0) + 1
        else:
            meta["generation"] = old_gen or 1

    @staticmethod
    def _defaults(group: str, plural: str, obj: dict[str, Any]) -> None:
        if (group, plural) == ("apps", "deployments"):
            spec = obj.setdefault("spec", {})
            if spec.get("replicas") is None:
                spec["replicas"] = 1

    def _reconcile(self, key: Key, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        """The Deployment controller: recompute status on creation or spec change."""
        if key[:2] != ("apps", "deployments"):
            return
        if old is not None and old.get("spec") == obj.get("spec"):
            return
        replicas = int((obj.get("spec") or {}).get("replicas", 1))
        generation = obj["metadata"].get("generation", 1)
        now = _now()

        def condition(kind: str, status: str, reason: str, message: str) -> dict[str, Any]:
            return {"type": kind, "status": status, "reason": reason, "message": message,
                    "lastUpdateTime": now, "lastTransitionTime": now}

        name = key[3]
        if self._ready.get((key[2], name), True):
            obj["status"] = {
                "observedGeneration": generation, "replicas": replicas,
                "updatedReplicas": replicas, "readyReplicas": replicas,
                "availableReplicas": replicas,
                "conditions": [
                    condition("Available", "True", "MinimumReplicasAvailable",
                              "Deployment has minimum availability."),
                    condition("Progressing", "True", "NewReplicaSetAvailable",
                              f'ReplicaSet "{name}" has successfully progressed.'),
                ],
            }
        else:
            obj["status"] = {
                "observedGeneration": generation, "replicas": replicas,
                "updatedReplicas": replicas, "readyReplicas": 0, "availableReplicas": 0,
                "unavailableReplicas": replicas,
                "conditions": [
                    condition("Available", "False", "MinimumReplicasUnavailable",
                              "Deployment does not have minimum availability."),
                    condition("Progressing", "True", "ReplicaSetUpdated",
                              f'ReplicaSet "{name}" is progressing.'),
                ],
            }

    # -- internals: HTTP ------------------------------------------------------------------

    def _serve(self, method: str, target: str, content_type: str,
               raw: bytes) -> tuple[int, Any, dict[str, str]]:
        """Answer one request: (HTTP status or 0 to drop, JSON body, extra headers)."""
        parsed_body: Any = None
        body_error = None
        if raw:
            try:
                parsed_body = json.loads(raw)
            except ValueError as exc:
                body_error = KubeError(400, f"invalid JSON body: {exc}")
        split = urllib.parse.urlsplit(target)
        with self._lock:
            self.requests.append((method, target, content_type, parsed_body))
            fault = next((f for f in self._faults if f.matches(method, split.path)), None)
            if fault is not None:
                fault.remaining -= 1
                self._faults = [f for f in self._faults if f.remaining > 0]
        if fault is not None:
            return self._fault_response(fault)
        try:
            if body_error is not None:
                raise body_error
            query = {k: v[-1] for k, v in urllib.parse.parse_qs(split.query).items()}
            with self._lock:
                code, body = self._route(method, split.path, query,
                                         content_type.split(";")[0].strip(), parsed_body)
            return code, body, {}
        except KubeError as exc:
            return exc.code, exc.status(), exc.headers
        except Exception as exc:  # a bug here should still answer like a server would
            error = KubeError(500, f"fake kube: {type(exc).__name__}: {exc}")
            return 500, error.status(), {}

    @staticmethod
    def _fault_response(fault: _Fault) -> tuple[int, Any, dict[str, str]]:
        if fault.status == "drop":
            return 0, None, {}
        code = int(fault.status)
        headers: dict[str, str] = {}
        details: dict[str, Any] = {}
        if fault.retry_after is not None:
            seconds = fault.retry_after
            headers["Retry-After"] = (str(int(seconds)) if float(seconds).is_integer()
                                      else str(seconds))
            details["retryAfterSeconds"] = math.ceil(seconds)
        error = KubeError(code, fault.message, details=details or None)
        return code, error.status(), headers

    def _route(self, method: str, path: str, query: dict[str, str], content_type: str,
               body: Any) -> tuple[int, Any]:
        method = "GET" if method == "HEAD" else method
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")]
        if parts == ["version"]:
            return 200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0-fake",
                         "platform": "linux/amd64"}
        if parts[:1] == ["api"] and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise KubeError(404, "the server could not find the requested resource")
        if query.get("watch") in ("true", "1"):
            raise KubeError(400, "watch is not supported by FakeKube")
        api_version = join_api_version(group, version)
        if len(rest) == 1:  # all namespaces
            if method != "GET":
                raise KubeError(405, f"{method} is not supported on all-namespace collections")
            return self._list(api_version, group, rest[0], None, query)
        if len(rest) < 3 or rest[0] != "namespaces" or len(rest) > 5:
            raise KubeError(404, "the server could not find the requested resource")
        namespace, plural = rest[1], rest[2]
        name = rest[3] if len(rest) > 3 else None
        sub = rest[4] if len(rest) > 4 else None
        dry = query.get("dryRun") == "All"
        if name is None:
            if method == "GET":
                return self._list(api_version, group, plural, namespace, query)
            if method == "POST":
                return self._create(api_version, group, plural, namespace, body, dry)
            raise KubeError(405, f"{method} is not supported on a collection")
        key = (group, plural, namespace, name)
        if sub is None:
            handlers = {"GET": self._read, "PUT": self._replace, "PATCH": self._patch,
                        "DELETE": self._delete}
        elif sub == "status":
            handlers = {"GET": self._read, "PUT": self._replace_status,
                        "PATCH": self._patch_status}
        elif sub == "scale" and group == "apps":
            handlers = {"GET": self._read_scale, "PUT": self._replace_scale,
                        "PATCH": self._patch_scale}
        else:
            raise KubeError(404, "the server could not find the requested resource")
        handler = handlers.get(method)
        if handler is None:
            raise KubeError(405, f"{method} is not supported here")
        return handler(api_version, key, query=query, content_type=content_type, body=body,
                       dry=dry)

    # -- errors ---------------------------------------------------------------------------

    @staticmethod
    def _resource(group: str, plural: str) -> str:
        return f"{plural}.{group}" if group else plural

    @staticmethod
    def _details(key: Key) -> dict[str, Any]:
        group, plural, _, name = key
        details: dict[str, Any] = {"name": name, "kind": plural}
        if group:
            details["group"] = group
        return details

    def _not_found(self, key: Key) -> KubeError:
        resource = self._resource(key[0], key[1])
        return KubeError(404, f'{resource} "{key[3]}" not found', details=self._details(key))

    def _conflict(self, key: Key) -> KubeError:
        resource = self._resource(key[0], key[1])
        return KubeError(409, f'Operation cannot be fulfilled on {resource} "{key[3]}": the '
                              "object has been modified; please apply your changes to the "
                              "latest version and try again", details=self._details(key))

    def _existing(self, key: Key) -> dict[str, Any]:
        obj = self._objects.get(key)
        if obj is None:
            raise self._not_found(key)
        return obj

    def _check_preconditions(self, key: Key, stored: dict[str, Any],
                             meta: dict[str, Any] | None) -> None:
        meta = meta if isinstance(meta, dict) else {}
        rv = meta.get("resourceVersion")
        if rv not in (None, "") and str(rv) != stored["metadata"].get("resourceVersion"):
            raise self._conflict(key)
        uid = meta.get("uid")
        if uid not in (None, "") and uid != stored["metadata"].get("uid"):
            raise KubeError(409, f"Precondition failed: UID in precondition: {uid}, UID in "
                                 f"object meta: {stored['metadata'].get('uid')}",
                            details=self._details(key))

    @staticmethod
    def _need_object(body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise KubeError(400, "the request body must be a JSON object")
        return copy.deepcopy(body)

    # -- verbs ----------------------------------------------------------------------------

    def _list(self, api_version: str, group: str, plural: str, namespace: str | None,
              query: dict[str, str]) -> tuple[int, Any]:
        labels = label_matcher(query.get("labelSelector", ""))
        fields = field_matcher(query.get("fieldSelector", ""))
        items = [self._out(obj, api_version) for key, obj in sorted(self._objects.items())
                 if key[:2] == (group, plural) and namespace in (None, key[2])
                 and labels(obj["metadata"].get("labels")) and fields(obj)]
        return 200, {"apiVersion": api_version, "kind": f"{self._kind(group, plural)}List",
                     "metadata": {"resourceVersion": str(self._rv)}, "items": items}

    def _read(self, api_version: str, key: Key, **_: Any) -> tuple[int, Any]:
        return 200, self._out(self._existing(key), api_version)

    def _create(self, api_version: str, group: str, plural: str, namespace: str, body: Any,
                dry: bool) -> tuple[int, Any]:
        obj = self._need_object(body)
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            meta = obj["metadata"] = {}
        kind = obj.get("kind") or self._kind(group, plural)
        obj["apiVersion"], obj["kind"] = api_version, kind
        if meta.get("namespace") not in (None, "", namespace):
            raise KubeError(400, "the namespace of the provided object does not match the "
                                 "namespace sent on the request")
        meta["namespace"] = namespace
        if not meta.get("name"):
            prefix = meta.get("generateName")
            if not prefix:
                raise KubeError(422, f'{kind} "" is invalid: metadata.name: Required value: '
                                     "name or generateName is required",
                                details={"kind": kind})
            for _ in range(100):
                candidate = prefix + uuid.uuid4().hex[:5]
                if (group, plural, namespace, candidate) not in self._objects:
                    break
            meta["name"] = candidate
        key = (group, plural, namespace, meta["name"])
        if key in self._objects:
            resource = self._resource(group, plural)
            raise KubeError(409, f'{resource} "{key[3]}" already exists', reason="AlreadyExists",
                            details=self._details(key))
        for field in ("resourceVersion", "uid", "creationTimestamp", "generation"):
            meta.pop(field, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        self._set_generation(obj, None)
        self._defaults(group, plural, obj)
        meta["resourceVersion"] = self._next_rv()
        self._reconcile(key, obj, None)
        if not dry:
            self._learn(group, plural, kind)
            self._objects[key] = obj
        return 201, self._out(obj)

    def _commit(self, key: Key, obj: dict[str, Any], old: dict[str, Any], api_version: str,
                dry: bool, *, keep_status: bool) -> dict[str, Any]:
        """Finish an update of the main resource: identity, generation, status, controller."""
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            meta = obj["metadata"] = {}
        old_meta = old["metadata"]
        obj["apiVersion"], obj["kind"] = api_version, old["kind"]
        for field in ("name", "namespace", "uid", "creationTimestamp"):
            meta[field] = old_meta.get(field)
        meta.pop("generation", None)
        if keep_status:
            if "status" in old:
                obj["status"] = copy.deepcopy(old["status"])
            else:
                obj.pop("status", None)
        self._defaults(key[0], key[1], obj)
        self._set_generation(obj, old)
        meta["resourceVersion"] = self._next_rv()
        self._reconcile(key, obj, old)
        if not dry:
            self._objects[key] = obj
        return self._out(obj)

    def _replace(self, api_version: str, key: Key, *, body: Any, dry: bool,
                 **_: Any) -> tuple[int, Any]:
        obj = self._need_object(body)
        old = self._existing(key)
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            meta = {}
        if meta.get("name") not in (None, key[3]):
            raise KubeError(400, f"the name of the object ({meta.get('name')}) does not match "
                                 f"the name on the URL ({key[3]})")
        if meta.get("namespace") not in (None, "", key[2]):
            raise KubeError(400, "the namespace of the provided object does not match the "
                                 "namespace sent on the request")
        self._check_preconditions(key, old, meta)
        return 200, self._commit(key, obj, old, api_version, dry, keep_status=True)

    def _apply_patch(self, key: Key, target: dict[str, Any], content_type: str,
                     body: Any) -> dict[str, Any]:
        if content_type in (MERGE_PATCH, STRATEGIC_PATCH):
            if not isinstance(body, dict):
                raise KubeError(400, "a merge patch must be a JSON object")
            result = merge_patch(target, body)
        elif content_type == JSON_PATCH:
            result = json_patch(target, body)
        else:
            raise KubeError(415, f'the body of the request was in an unknown format - accepted '
                                 f'media types include: {JSON_PATCH}, {MERGE_PATCH}, '
                                 f'{STRATEGIC_PATCH} (got "{content_type}")')
        if not isinstance(result, dict):
            raise KubeError(422, "the patched object is not a JSON object")
        return result

    def _patch(self, api_version: str, key: Key, *, content_type: str, body: Any, dry: bool,
               **_: Any) -> tuple[int, Any]:
        old = self._existing(key)
        obj = self._apply_patch(key, old, content_type, body)
        self._check_preconditions(key, old, obj.get("metadata"))
        return 200, self._commit(key, obj, old, api_version, dry, keep_status=True)

    def _status_write(self, api_version: str, key: Key, old: dict[str, Any],
                      new: dict[str, Any], dry: bool) -> tuple[int, Any]:
        self._check_preconditions(key, old, new.get("metadata"))
        obj = copy.deepcopy(old)
        if "status" in new:
            obj["status"] = copy.deepcopy(new["status"])
        else:
            obj.pop("status", None)
        obj["apiVersion"] = api_version
        obj["metadata"]["resourceVersion"] = self._next_rv()
        if not dry:
            self._objects[key] = obj
        return 200, self._out(obj)

    def _replace_status(self, api_version: str, key: Key, *, body: Any, dry: bool,
                        **_: Any) -> tuple[int, Any]:
        new = self._need_object(body)
        return self._status_write(api_version, key, self._existing(key), new, dry)

    def _patch_status(self, api_version: str, key: Key, *, content_type: str, body: Any,
                      dry: bool, **_: Any) -> tuple[int, Any]:
        old = self._existing(key)
        new = self._apply_patch(key, old, content_type, body)
        return self._status_write(api_version, key, old, new, dry)

    def _delete(self, api_version: str, key: Key, *, body: Any, dry: bool,
                **_: Any) -> tuple[int, Any]:
        old = self._existing(key)
        if isinstance(body, dict):
            self._check_preconditions(key, old, body.get("preconditions"))
        if not dry:
            del self._objects[key]
        details = self._details(key)
        details["uid"] = old["metadata"].get("uid")
        return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                     "status": "Success", "details": details}

    # -- scale ----------------------------------------------------------------------------

    def _scale_of(self, key: Key) -> dict[str, Any]:
        obj = self._existing(key)
        spec = obj.get("spec") or {}
        if "replicas" not in spec and key[1] not in ("deployments", "replicasets",
                                                     "statefulsets"):
            raise KubeError(404, "the server could not find the requested resource")
        meta = obj["metadata"]
        labels = ((spec.get("selector") or {}).get("matchLabels") or {})
        return {
            "apiVersion": "autoscaling/v1", "kind": "Scale",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                         "resourceVersion": meta["resourceVersion"], "uid": meta.get("uid"),
                         "creationTimestamp": meta.get("creationTimestamp")},
            "spec": {"replicas": int(spec.get("replicas", 1))},
            "status": {"replicas": int((obj.get("status") or {}).get("replicas", 0)),
                       "selector": ",".join(f"{k}={v}" for k, v in sorted(labels.items()))},
        }

    def _scale_write(self, api_version: str, key: Key, scale: dict[str, Any],
                     dry: bool) -> tuple[int, Any]:
        old = self._existing(key)
        self._check_preconditions(key, old, scale.get("metadata"))
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise KubeError(422, f'Scale.autoscaling "{key[3]}" is invalid: spec.replicas: '
                                 f"Invalid value: {replicas!r}: must be a non-negative integer")
        obj = copy.deepcopy(old)
        obj.setdefault("spec", {})["replicas"] = replicas
        self._commit(key, obj, old, old["apiVersion"], dry, keep_status=True)
        if dry:
            current = self._objects[key]
            self._objects[key] = obj
            try:
                return 200, self._scale_of(key)
            finally:
                self._objects[key] = current
        return 200, self._scale_of(key)

    def _read_scale(self, api_version: str, key: Key, **_: Any) -> tuple[int, Any]:
        return 200, self._scale_of(key)

    def _replace_scale(self, api_version: str, key: Key, *, body: Any, dry: bool,
                       **_: Any) -> tuple[int, Any]:
        return self._scale_write(api_version, key, self._need_object(body), dry)

    def _patch_scale(self, api_version: str, key: Key, *, content_type: str, body: Any,
                     dry: bool, **_: Any) -> tuple[int, Any]:
        scale = self._apply_patch(key, self._scale_of(key), content_type, body)
        return self._scale_write(api_version, key, scale, dry)
