"""The cluster store: rollout state and audit log in ConfigMaps, a Lease as the lock.

Several CI runners or operators on different machines share one rollout::

    <name>              Lease      the lock: holderIdentity, renewTime, who (annotation)
    <name>-state        ConfigMap  state.json, replaced with its resourceVersion
    <name>-plan         ConfigMap  plan.json: the plan as it was when the rollout started
    <name>-abort        ConfigMap  abort.json: a rollback requested while the lock was held
    <name>-audit-<n>    ConfigMaps the append-only audit log, one JSON object per line,
                                   a new ConfigMap every ~900 kB
    <name>-evals-<n>    ConfigMaps evaluation rounds, same layout; the oldest are
                                   dropped beyond ``keep_evaluation_chunks``
    <name>-history-<id> ConfigMap  the state of an earlier rollout (after run --restart)

Every object is labelled ``app.kubernetes.io/managed-by: novactl`` and
``novactl.io/rollout: <name>``.

Safety: the Lease is taken with a write that carries its resourceVersion, so
of two runners only one wins; it is renewed in the background every third of
its duration.  State writes carry the resourceVersion this process last read
or wrote, so a writer that lost the Lease (a long pause, a partition) gets a
409 and stops instead of overwriting the new holder's state.  Appends to the
audit log retry on 409 by reading the chunk again: a line is never lost.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from novactl._errors import LockHeld, StateError
from novactl.core.state import RolloutState

__all__ = ["KubeStore"]

CHUNK_BYTES = 900_000  # a ConfigMap holds at most 1 MiB
ROLLOUT_LABEL = "novactl.io/rollout"
KIND_LABEL = "novactl.io/kind"
HOLDER_ANNOTATION = "novactl.io/holder"
RENEW_DEADLINE = 0.8  # stop writing once this share of the Lease passed without a renewal
CLOCK_SKEW = 10.0  # clock difference between machines tolerated on expiry (or the duration)


def _micro_time(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(text: Any) -> float | None:
    if not text:
        return None
    value = str(text).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


class KubeStore:
    """State, audit log and lock in the cluster (see the module docstring)."""

    def __init__(self, kube: Any, name: str, *, lease_duration: float = 30.0,
                 keep_evaluation_chunks: int = 8, chunk_bytes: int = CHUNK_BYTES,
                 wall: Any = time.time) -> None:
        self.kube = kube
        self.name = name
        self.lease_duration = lease_duration
        self.keep_evaluation_chunks = keep_evaluation_chunks
        self.chunk_bytes = chunk_bytes
        self.wall = wall
        self.path = None  # no state directory: adapters that keep files do without
        self.identity = ""
        self._held = False
        self._lost: str | None = None
        self._state_rv: str | None = None
        self._chunks: dict[str, tuple[int, str | None, str]] = {}  # log → (index, rv, text)
        self._mutex = threading.RLock()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self._lease_rv: str | None = None
        self._renewed = 0.0  # time.monotonic() of the last successful take or renewal
        self._seen: tuple[Any, float] | None = None  # (holder's lease version, first seen)

    @property
    def where(self) -> str:
        return f"namespace {self.kube.namespace}, Lease/ConfigMaps {self.name}"

    def __str__(self) -> str:
        return f"kubernetes:{self.kube.namespace}/{self.name}"

    # -- helpers
    def _labels(self, kind: str) -> dict[str, str]:
        return {"app.kubernetes.io/managed-by": "novactl", ROLLOUT_LABEL: self.name,
                KIND_LABEL: kind}

    def _cm(self, suffix: str) -> str:
        return f"{self.name}-{suffix}"

    def _translate(self, exc: Exception, doing: str) -> StateError:
        message = getattr(exc, "message", None) or str(exc)
        return StateError(f"cluster store ({self.where}): {doing}: {message}")

    def _read_cm(self, name: str) -> dict[str, Any] | None:
        from novactl.adapters._kube import CONFIGMAP, KubeError

        try:
            return self.kube.get(CONFIGMAP, name)
        except KubeError as exc:
            raise self._translate(exc, f"read ConfigMap {name}") from None

    def _put_cm(self, name: str, kind: str, data: dict[str, str],
                resource_version: str | None, *, create_ok: bool = True) -> dict[str, Any]:
        """Write ``data`` into ConfigMap ``name``: create it, or patch it guarded by
        ``resource_version`` (None: unguarded).  KubeConflict propagates."""
        from novactl.adapters._kube import CONFIGMAP, KubeConflict, KubeNotFound

        if resource_version is None and create_ok:
            try:
                return self.kube.create(CONFIGMAP, {
                    "metadata": {"name": name, "labels": self._labels(kind)}, "data": data})
            except KubeConflict:
                current = self.kube.get(CONFIGMAP, name)
                if current is None:
                    raise
                resource_version = (current.get("metadata") or {}).get("resourceVersion")
                if kind in ("state", "audit", "evals"):
                    raise  # someone else wrote it meanwhile: never overwrite, read again
        patch: dict[str, Any] = {"data": data}
        if resource_version is not None:
            patch["metadata"] = {"resourceVersion": resource_version}
        try:
            return self.kube.patch(CONFIGMAP, name, patch)
        except KubeNotFound:
            if resource_version is not None and kind in ("state", "audit", "evals"):
                # what we read was deleted meanwhile (archived, or an old log chunk dropped):
                # that is a conflict, never a reason to bring our stale copy back
                raise KubeConflict(f"ConfigMap {name} was deleted by another writer",
                                   status=409, reason="Conflict") from None
            if not create_ok:
                raise
            return self.kube.create(CONFIGMAP, {
                "metadata": {"name": name, "labels": self._labels(kind)}, "data": data})

    def _check_held(self) -> None:
        if self._held and not self._lost:
            unrenewed = time.monotonic() - self._renewed
            if unrenewed > self.lease_duration * RENEW_DEADLINE:
                self._lost = (f"not renewed for {unrenewed:.1f}s of a {self.lease_duration:g}s "
                              "Lease: another novactl may hold it now")
        if self._lost:
            raise StateError(f"cluster store ({self.where}): the lock was lost ({self._lost}); "
                             "stopping so the new holder's state is not overwritten")

    # -- lock
    def _holder_info(self, purpose: str) -> dict[str, Any]:
        from novactl.store.local import _holder_info

        return _holder_info(purpose)

    def lock_holder(self) -> dict[str, Any]:
        from novactl.adapters._kube import LEASE

        try:
            lease = self.kube.get(LEASE, self.name)
        except Exception:
            return {}
        if not lease:
            return {}
        spec = lease.get("spec") or {}
        if not spec.get("holderIdentity"):
            return {}
        text = ((lease.get("metadata") or {}).get("annotations") or {}).get(HOLDER_ANNOTATION)
        try:
            info = json.loads(text) if text else {}
        except ValueError:
            info = {}
        info.setdefault("identity", spec.get("holderIdentity"))
        return info

    def _try_acquire(self, info: dict[str, Any]) -> dict[str, Any] | None:
        """Take the Lease if it is free or expired; None when someone else holds it."""
        from novactl.adapters._kube import LEASE, KubeConflict

        now = self.wall()
        body_spec = {"holderIdentity": self.identity,
                     "leaseDurationSeconds": max(1, round(self.lease_duration)),
                     "acquireTime": _micro_time(now), "renewTime": _micro_time(now)}
        annotations = {HOLDER_ANNOTATION: json.dumps(info)}
        lease = self.kube.get(LEASE, self.name)
        if lease is None:
            try:
                return self.kube.create(LEASE, {
                    "metadata": {"name": self.name, "labels": self._labels("lock"),
                                 "annotations": annotations},
                    "spec": {**body_spec, "leaseTransitions": 0}})
            except KubeConflict:
                return None  # created by someone else a moment ago: look again
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        renewed = _parse_time(spec.get("renewTime") or spec.get("acquireTime"))
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        # Expired when this process watched it stay unrenewed for a whole duration (its own
        # monotonic clock, as client-go does), or when the holder's renewTime is older than
        # the duration by more than the clock skew we tolerate between machines.
        version = (holder, spec.get("renewTime"), (lease.get("metadata") or {}).get(
            "resourceVersion"))
        if self._seen is None or self._seen[0] != version:
            self._seen = (version, time.monotonic())
        watched = time.monotonic() - self._seen[1] >= duration
        skew = max(CLOCK_SKEW, duration)
        expired = renewed is None or watched or now > renewed + duration + skew
        if holder and holder != self.identity and not expired:
            return None
        transitions = int(spec.get("leaseTransitions") or 0) + (1 if holder else 0)
        try:
            return self.kube.patch(LEASE, self.name, {
                "metadata": {"resourceVersion": (lease.get("metadata") or {}).get(
                    "resourceVersion"), "annotations": annotations},
                "spec": {**body_spec, "leaseTransitions": transitions}})
        except KubeConflict:
            return None

    def _renew_loop(self) -> None:
        from novactl.adapters._kube import LEASE, KubeConflict

        interval = max(0.2, self.lease_duration / 3.0)
        while not self._stop.wait(interval):
            try:
                sent = time.monotonic()
                lease = self.kube.patch(LEASE, self.name, {
                    "metadata": {"resourceVersion": self._lease_rv},
                    "spec": {"renewTime": _micro_time(self.wall())}})
                self._lease_rv = (lease.get("metadata") or {}).get("resourceVersion")
                self._renewed = sent
            except KubeConflict:
                current = self.lock_holder()
                if current.get("identity") != self.identity:
                    self._lost = f"taken by {current.get('identity') or 'nobody'}"
                    return
                # our own lease changed under us (e.g. annotations): re-read its version
                with contextlib.suppress(Exception):
                    lease = self.kube.get(LEASE, self.name) or {}
                    self._lease_rv = (lease.get("metadata") or {}).get("resourceVersion")
            except Exception:  # transient: try again next time; expiry is the real limit
                continue

    @contextlib.contextmanager
    def lock(self, purpose: str = "", wait: float = 0.0) -> Iterator[None]:
        """Hold the Lease; wait up to ``wait`` seconds, then raise LockHeld."""
        from novactl.adapters._kube import LEASE, KubeError
        from novactl.store.local import describe_holder

        with self._mutex:
            reentrant = self._held
        if reentrant:  # within one process the lock is re-entrant, as LocalStore's
            yield
            return
        info = self._holder_info(purpose)
        self.identity = f"{info['user']}@{info['host']}/{info['pid']}/{uuid.uuid4().hex[:8]}"
        deadline = time.monotonic() + wait
        while True:
            started = time.monotonic()
            try:
                lease = self._try_acquire(info)
            except KubeError as exc:
                raise self._translate(exc, f"take Lease {self.name}") from None
            if lease is not None:
                break
            if time.monotonic() >= deadline:
                raise LockHeld(f"Lease {self.kube.namespace}/{self.name}",
                               describe_holder(self.lock_holder()))
            time.sleep(min(0.5, max(0.05, deadline - time.monotonic())))
        self._lease_rv = (lease.get("metadata") or {}).get("resourceVersion")
        self._renewed = started
        self._lost = None
        self._held = True
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew_loop, name="novactl-lease",
                                         daemon=True)
        self._renewer.start()
        try:
            yield
        finally:
            self._stop.set()
            if self._renewer is not None:
                self._renewer.join(timeout=5.0)
            self._held = False
            if not self._lost:
                with contextlib.suppress(Exception):
                    current = self.kube.get(LEASE, self.name) or {}
                    if (current.get("spec") or {}).get("holderIdentity") == self.identity:
                        self.kube.patch(LEASE, self.name, {
                            "metadata": {"resourceVersion": (current.get("metadata") or {}
                                                             ).get("resourceVersion"),
                                         "annotations": {HOLDER_ANNOTATION: None}},
                            "spec": {"holderIdentity": None, "renewTime": None,
                                     "acquireTime": None}})

    # -- state
    def load(self) -> RolloutState | None:
        obj = self._read_cm(self._cm("state"))
        if obj is None:
            self._state_rv = None
            return None
        self._state_rv = (obj.get("metadata") or {}).get("resourceVersion")
        text = (obj.get("data") or {}).get("state.json")
        if not text:
            return None
        from novactl.store.local import parse_state

        return parse_state(text, f"ConfigMap {self._cm('state')}")

    def load_quickly(self, timeout: float = 3.0) -> RolloutState | None:
        """load() with one short attempt: for rollback's traffic-first path, which must not
        wait on a silent API server (it moves traffic, then retries under the lock)."""
        from novactl.adapters._kube import KubeError

        kube = self.kube
        saved = (kube.retries, kube.timeout)
        kube.retries, kube.timeout = 0, min(timeout, kube.timeout)
        try:
            return self.load()
        except KubeError as exc:
            raise self._translate(exc, "read the state") from None
        finally:
            kube.retries, kube.timeout = saved

    def save(self, state: RolloutState) -> None:
        from novactl.adapters._kube import KubeConflict, KubeError

        self._check_held()
        text = json.dumps(state.to_dict(), separators=(",", ":"), ensure_ascii=False)
        if len(text.encode()) > self.chunk_bytes:
            raise StateError(f"the rollout state is {len(text.encode())} bytes: too big for "
                             "a ConfigMap")
        name = self._cm("state")
        try:
            obj = self._put_cm(name, "state", {"state.json": text}, self._state_rv)
        except KubeConflict:
            raise StateError(f"ConfigMap {name} was changed by another writer since this "
                             "novactl read it; nothing was overwritten (run again to pick up "
                             "the current state)") from None
        except KubeError as exc:
            raise self._translate(exc, f"write ConfigMap {name}") from None
        self._state_rv = (obj.get("metadata") or {}).get("resourceVersion")

    def archive(self, state: RolloutState) -> str:
        from novactl.adapters._kube import CONFIGMAP, KubeError

        target = self._cm(f"history-{state.rollout_id}"[:63 - len(self.name) - 1]
                          ).lower().rstrip("-.")
        text = json.dumps(state.to_dict(), separators=(",", ":"), ensure_ascii=False)
        try:
            self._put_cm(target, "history", {"state.json": text}, None)
            self.kube.delete(CONFIGMAP, self._cm("state"))
        except KubeError as exc:
            raise self._translate(exc, "archive the state") from None
        self._state_rv = None
        return f"ConfigMap {target}"

    # -- logs
    def _chunk_names(self, log: str) -> list[tuple[int, str]]:
        from novactl.adapters._kube import CONFIGMAP

        items = self.kube.list(CONFIGMAP, selector=f"{ROLLOUT_LABEL}={self.name},"
                               f"{KIND_LABEL}={log}")
        found = []
        prefix = self._cm(f"{log}-")
        for item in items:
            name = str((item.get("metadata") or {}).get("name", ""))
            if name.startswith(prefix) and name[len(prefix):].isdigit():
                found.append((int(name[len(prefix):]), name))
        return sorted(found)

    def _append(self, log: str, record: dict[str, Any], *, keep: int | None = None) -> None:
        from novactl.adapters._kube import CONFIGMAP, KubeConflict

        line = json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=str) + "\n"
        if len(line.encode()) > self.chunk_bytes:
            kept = ("time", "ts", "at", "rollout", "action", "actor", "reason")
            line = json.dumps({**{k: record[k] if isinstance(record[k], int | float | bool)
                                  else str(record[k])[:2000] for k in kept if k in record},
                               "truncated": True}) + "\n"
        with self._mutex:
            for _attempt in range(20):
                cached = self._chunks.get(log)
                if cached is None:
                    chunks = self._chunk_names(log)
                    index = chunks[-1][0] if chunks else 0
                    obj = self.kube.get(CONFIGMAP, self._cm(f"{log}-{index}"))
                    rv = (obj.get("metadata") or {}).get("resourceVersion") if obj else None
                    text = ((obj or {}).get("data") or {}).get("log.jsonl", "")
                    cached = (index, rv, text)
                index, rv, text = cached
                if text and len((text + line).encode()) > self.chunk_bytes:
                    index, rv, text = index + 1, None, ""
                try:
                    obj = self._put_cm(self._cm(f"{log}-{index}"), log,
                                       {"log.jsonl": text + line}, rv)
                except KubeConflict:
                    self._chunks.pop(log, None)  # another writer appended: read again
                    time.sleep(random.uniform(0.005, 0.02) * (_attempt + 1))
                    continue
                self._chunks[log] = (index, (obj.get("metadata") or {}).get("resourceVersion"),
                                     text + line)
                if keep is not None and rv is None and index >= keep:
                    for old, name in self._chunk_names(log):
                        if old <= index - keep:
                            self.kube.delete(CONFIGMAP, name)
                return
        raise StateError(f"cluster store ({self.where}): could not append to the {log} log: "
                         "too many concurrent writers")

    def _read(self, log: str) -> Iterator[dict[str, Any]]:
        from novactl.adapters._kube import CONFIGMAP

        for _index, name in self._chunk_names(log):
            obj = self.kube.get(CONFIGMAP, name)
            for raw in ((obj or {}).get("data") or {}).get("log.jsonl", "").splitlines():
                if raw.strip():
                    try:
                        yield json.loads(raw)
                    except json.JSONDecodeError:
                        continue

    def append_audit(self, record: dict[str, Any]) -> None:
        from novactl.adapters._kube import KubeError

        self._check_held()
        try:
            self._append("audit", record)
        except KubeError as exc:
            raise self._translate(exc, "append to the audit log") from None

    def read_audit(self) -> Iterator[dict[str, Any]]:
        return self._read("audit")

    def append_evaluation(self, record: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):  # history, not decisions: never block a rollout
            self._append("evals", record, keep=self.keep_evaluation_chunks)

    def read_evaluations(self) -> Iterator[dict[str, Any]]:
        return self._read("evals")

    # -- abort requests
    def request_abort(self, record: dict[str, Any]) -> None:
        from novactl.adapters._kube import KubeError

        try:
            self._put_cm(self._cm("abort"), "abort", {"abort.json": json.dumps(record)}, None)
        except KubeError as exc:
            raise self._translate(exc, "queue the rollback request") from None

    def peek_abort(self) -> dict[str, Any] | None:
        obj = self._read_cm(self._cm("abort"))
        text = ((obj or {}).get("data") or {}).get("abort.json")
        if not text:
            return None
        try:
            return dict(json.loads(text))
        except (ValueError, TypeError):
            return {"reason": "rollback requested (unreadable request)", "by": "unknown"}

    def clear_abort(self) -> None:
        from novactl.adapters._kube import CONFIGMAP

        with contextlib.suppress(Exception):
            self.kube.delete(CONFIGMAP, self._cm("abort"))

    # -- plan snapshot
    def save_plan(self, plan_json: dict[str, Any]) -> None:
        from novactl.adapters._kube import KubeError

        text = json.dumps(plan_json, indent=1)
        if len(text.encode()) > self.chunk_bytes:
            return  # a rollback can still use the plan file itself
        try:
            self._put_cm(self._cm("plan"), "plan", {"plan.json": text}, None)
        except KubeError as exc:
            raise self._translate(exc, "save the plan") from None

    def load_plan(self) -> dict[str, Any] | None:
        try:
            obj = self._read_cm(self._cm("plan"))
            text = ((obj or {}).get("data") or {}).get("plan.json")
            return json.loads(text) if text else None
        except (StateError, ValueError):
            return None


def store_for_plan(plan: Any, env: Any = None) -> KubeStore:
    """The cluster store for a plan's ``spec.state`` (flags in the environment win)."""
    import os
    import re
    from pathlib import Path

    from novactl.adapters._base import AdapterContext
    from novactl.adapters._kube import KubeConfig, connect

    spec = plan.spec.state
    env = os.environ if env is None else env
    config = KubeConfig(kubeconfig=spec.kubeconfig, context=spec.context,
                        namespace=spec.namespace)
    source = Path(plan.source)
    context = AdapterContext(plan_name=plan.name, env={**env, "NOVACTL_DRY_RUN": ""},
                             base_dir=source.parent if source.name != "<plan>" else Path.cwd())
    kube = connect(config, context, label="state store")
    kube.dry_run = False  # the store is never dry: --dry-run keeps state in memory instead
    if spec.name is not None:
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?", spec.name):
            from novactl._errors import InputError

            raise InputError(f"spec.state.name {spec.name!r}: lower-case letters, digits and "
                             "'-', at most 40 characters (it names a Lease and ConfigMaps)")
        name = spec.name
    else:
        name = re.sub(r"[^a-z0-9-]+", "-", f"novactl-{plan.name}".lower()).strip("-")
        name = name[:40].rstrip("-")
    return KubeStore(kube, name, lease_duration=spec.lease_duration)
