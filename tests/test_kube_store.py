"""The cluster store (novactl/store/kube.py) against a server speaking the Kubernetes API.

Every test talks HTTP through the official client (novactl.adapters._kube.Kube) to
tests/_kubeapi.FakeKube on 127.0.0.1 and checks the objects the cluster ends with: the
state, plan and abort ConfigMaps, the chunked audit and evaluation logs, and the Lease
used as the lock — with stale writers, concurrent appenders, expired and stolen Leases,
throttling, 5xx, dropped connections and conflicts.  The last tests run two real
``novactl run --once`` processes against one Lease.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _kubeapi import FakeKube
from conftest import run_novactl, write_fake_plan

from novactl._errors import LockHeld, StateError
from novactl.adapters._base import AdapterContext
from novactl.adapters._kube import LEASE, KubeConfig, KubeError, connect
from novactl.core.state import Phase, RolloutState, StageRecord
from novactl.store.kube import HOLDER_ANNOTATION, KubeStore, store_for_plan

NS = "ns1"
NAME = "novactl-test"
COORD = "coordination.k8s.io/v1"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FakeKube]:
    with FakeKube() as fake:
        fake.kubeconfig_path = fake.kubeconfig(tmp_path / "kubeconfig", namespace=NS)
        yield fake


def make_store(server: FakeKube, name: str = NAME, *, sleeps: list[float] | None = None,
               **options: Any) -> KubeStore:
    """A KubeStore on its own connection; retries record their sleeps instead of sleeping."""
    ctx = AdapterContext(env={"KUBECONFIG": str(server.kubeconfig_path)})
    kube = connect(KubeConfig(namespace=NS), ctx, label="store")
    recorded = sleeps if sleeps is not None else []
    kube.sleep = recorded.append
    options.setdefault("lease_duration", 2.0)
    return KubeStore(kube, name, **options)


def _state(rollout_id: str = "r1", step: str = "") -> RolloutState:
    state = RolloutState(rollout_id, "plan", phase=Phase.STAGE, step=step)
    state.stages.append(StageRecord("one", 0, 10.0, 1.0))
    return state


def configmap(server: FakeKube, name: str) -> dict[str, Any] | None:
    return server.get("v1", "ConfigMap", NS, name)


def configmap_names(server: FakeKube) -> list[str]:
    return [o["metadata"]["name"] for o in server.list("v1", "ConfigMap", NS)]


def lease(server: FakeKube, name: str = NAME) -> dict[str, Any] | None:
    return server.get(COORD, "Lease", NS, name)


def labels(kind: str, name: str = NAME) -> dict[str, str]:
    return {"app.kubernetes.io/managed-by": "novactl", "novactl.io/rollout": name,
            "novactl.io/kind": kind}


def micro(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + ".000000Z"


def wait_for(predicate: Callable[[], bool], timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def writes(server: FakeKube, path_part: str) -> list[tuple[str, str]]:
    return [(m, p) for m, p, _ct, _b in server.requests
            if m in ("POST", "PATCH", "PUT", "DELETE") and path_part in p]


# --------------------------------------------------------------------------- state


def test_empty_namespace_then_exact_round_trip_and_objects(server: FakeKube) -> None:
    store = make_store(server)
    assert store.load() is None
    assert configmap_names(server) == []  # reading creates nothing
    state = _state()
    store.save(state)
    assert store.load() == state
    state.step = "bake"
    store.save(state)  # the second save replaces, guarded by the version just written
    assert make_store(server).load() == state  # a fresh reader sees it too

    assert configmap_names(server) == [f"{NAME}-state"]
    cm = configmap(server, f"{NAME}-state")
    assert cm is not None
    assert cm["metadata"]["labels"] == labels("state")
    assert list(cm["data"]) == ["state.json"]
    assert json.loads(cm["data"]["state.json"]) == state.to_dict()
    assert str(store) == f"kubernetes:{NS}/{NAME}"
    # nothing but the state ConfigMap was written, and no Lease exists without lock()
    assert lease(server) is None
    assert {p for _m, p in writes(server, "")} <= {
        f"/api/v1/namespaces/{NS}/configmaps", f"/api/v1/namespaces/{NS}/configmaps/{NAME}-state"}


def test_corrupt_or_foreign_state_is_a_clear_error(server: FakeKube) -> None:
    store = make_store(server)
    cm = {"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": {"name": f"{NAME}-state", "namespace": NS},
          "data": {"state.json": "{not json"}}
    server.put(cm)
    with pytest.raises(StateError, match="ConfigMap novactl-test-state is not valid JSON"):
        store.load()
    cm["data"]["state.json"] = json.dumps({"schema": 99, "rollout_id": "x", "plan_name": "p"})
    server.put(cm)
    with pytest.raises(StateError, match="newer novactl"):
        store.load()


def test_a_stale_writer_overwrites_nothing(server: FakeKube) -> None:
    first, second = make_store(server), make_store(server)
    # both start from an empty namespace: only one may create the state
    assert first.load() is None and second.load() is None
    first.save(_state("r1", "first"))
    with pytest.raises(StateError, match="changed by another writer"):
        second.save(_state("r2", "second"))
    assert json.loads(configmap(server, f"{NAME}-state")["data"]["state.json"])[
        "rollout_id"] == "r1"

    # both read the same version: the first write wins, the second is refused
    first.load()
    second.load()
    first.save(_state("r1", "first-again"))
    with pytest.raises(StateError, match="nothing was overwritten"):
        second.save(_state("r1", "second-again"))
    assert make_store(server).load() == _state("r1", "first-again")
    # after reading again, the second writer may write
    second.load()
    second.save(_state("r1", "second-after-reload"))
    assert make_store(server).load() == _state("r1", "second-after-reload")


def test_a_stale_writer_does_not_resurrect_an_archived_state(server: FakeKube) -> None:
    first, second = make_store(server), make_store(server)
    first.load()
    first.save(_state("r1", "done"))
    assert first.load() is not None and second.load() is not None
    first.archive(_state("r1", "done"))  # `run --restart` under the lock
    with pytest.raises(StateError):
        second.save(_state("r1", "stale"))  # a writer that read before the archive
    assert configmap(server, f"{NAME}-state") is None
    assert make_store(server).load() is None


# --------------------------------------------------------------------------- audit log


def _record(i: int, who: str = "w") -> dict[str, Any]:
    return {"time": "2026-01-01T00:00:00Z", "actor": who, "action": "test.line",
            "reason": f"{who} line {i:04d}", "pad": "x" * 40}


def test_audit_log_spans_chunks_in_order(server: FakeKube) -> None:
    store = make_store(server, chunk_bytes=2000)
    assert list(store.read_audit()) == []
    records = [_record(i) for i in range(60)]  # ~130 bytes a line: ~4 chunks
    for record in records:
        store.append_audit(record)
    assert list(store.read_audit()) == records
    assert list(make_store(server, chunk_bytes=2000).read_audit()) == records

    chunks = [n for n in configmap_names(server) if n.startswith(f"{NAME}-audit-")]
    assert len(chunks) >= 3
    assert sorted(chunks, key=lambda n: int(n.rsplit("-", 1)[1])) == [
        f"{NAME}-audit-{i}" for i in range(len(chunks))]
    total = 0
    for name in chunks:
        cm = configmap(server, name)
        assert cm["metadata"]["labels"] == labels("audit")
        text = cm["data"]["log.jsonl"]
        assert 0 < len(text.encode()) <= 2000 and text.endswith("\n")
        total += len(text.splitlines())
    assert total == len(records)  # every line stored exactly once


def test_a_record_bigger_than_a_chunk_is_truncated_not_lost(server: FakeKube) -> None:
    store = make_store(server, chunk_bytes=500)
    store.append_audit({"at": 1, "action": "big", "actor": "me", "blob": "y" * 2000})
    store.append_audit({"action": "small"})
    assert list(store.read_audit()) == [
        {"at": 1, "action": "big", "actor": "me", "truncated": True}, {"action": "small"}]


def test_two_stores_appending_concurrently_lose_no_line(server: FakeKube) -> None:
    per_writer = 40
    stores = {who: make_store(server, chunk_bytes=2000) for who in ("a", "b")}
    errors: list[BaseException] = []
    start = threading.Barrier(len(stores))

    def writer(who: str) -> None:
        try:
            start.wait(timeout=5)
            for i in range(per_writer):
                stores[who].append_audit(_record(i, who))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(who,)) for who in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    lines = list(make_store(server).read_audit())
    assert len(lines) == 2 * per_writer
    for who in stores:  # each writer's lines, each exactly once, in the order it wrote them
        assert [r["reason"] for r in lines if r["actor"] == who] == [
            f"{who} line {i:04d}" for i in range(per_writer)]
    attempts = [p for m, p, _c, _b in server.requests
                if m in ("POST", "PATCH") and ("-audit-" in p or p.endswith("/configmaps"))]
    assert len(attempts) > 2 * per_writer  # the writers did collide (409s were retried)


# --------------------------------------------------------------------------- evaluations


def test_evaluations_keep_only_the_newest_chunks(server: FakeKube) -> None:
    store = make_store(server, chunk_bytes=500, keep_evaluation_chunks=2)
    records = [{"n": i, "pad": "z" * 60} for i in range(40)]  # ~80 bytes: 6 a chunk
    for record in records:
        store.append_evaluation(record)
    chunks = sorted((n for n in configmap_names(server) if "-evals-" in n),
                    key=lambda n: int(n.rsplit("-", 1)[1]))
    assert len(chunks) == 2
    last = int(chunks[-1].rsplit("-", 1)[1])
    assert last >= 5 and chunks == [f"{NAME}-evals-{last - 1}", f"{NAME}-evals-{last}"]
    assert all(configmap(server, n)["metadata"]["labels"] == labels("evals") for n in chunks)
    kept = list(store.read_evaluations())
    assert kept and kept == records[-len(kept):]  # the newest, contiguous, in order
    stored = sum(len(configmap(server, n)["data"]["log.jsonl"].splitlines()) for n in chunks)
    assert stored == len(kept)
    assert list(store.read_audit()) == []  # the two logs are separate


def test_alternating_writers_keep_the_evaluation_log_consistent(server: FakeKube) -> None:
    # two `novactl run` processes taking turns (each holds the Lease for a pass)
    first = make_store(server, chunk_bytes=300, keep_evaluation_chunks=2)
    second = make_store(server, chunk_bytes=300, keep_evaluation_chunks=2)
    records = [{"n": i, "pad": "x" * 80} for i in range(12)]
    first.append_evaluation(records[0])
    for record in records[1:11]:
        second.append_evaluation(record)
    first.append_evaluation(records[11])
    chunks = [n for n in configmap_names(server) if "-evals-" in n]
    assert len(chunks) <= 2
    kept = list(make_store(server).read_evaluations())
    assert kept == records[-len(kept):]


# --------------------------------------------------------------------------- abort, plan, archive


def test_abort_requests(server: FakeKube) -> None:
    store = make_store(server)
    assert store.peek_abort() is None
    store.request_abort({"reason": "r", "by": "me"})
    assert store.peek_abort() == {"reason": "r", "by": "me"}
    assert make_store(server).peek_abort() == {"reason": "r", "by": "me"}
    cm = configmap(server, f"{NAME}-abort")
    assert cm["metadata"]["labels"] == labels("abort")
    assert json.loads(cm["data"]["abort.json"]) == {"reason": "r", "by": "me"}
    store.request_abort({"reason": "again", "by": "you"})  # a second request replaces it
    assert store.peek_abort() == {"reason": "again", "by": "you"}
    store.clear_abort()
    store.clear_abort()  # clearing twice is fine
    assert store.peek_abort() is None
    assert configmap(server, f"{NAME}-abort") is None


def test_plan_snapshot(server: FakeKube) -> None:
    store = make_store(server)
    assert store.load_plan() is None
    plan = {"apiVersion": "novactl.dev/v1", "metadata": {"name": "p"}, "spec": {"x": [1, 2]}}
    store.save_plan(plan)
    assert store.load_plan() == plan
    plan["spec"]["x"].append(3)
    store.save_plan(plan)  # the snapshot is replaced (plan.changed)
    assert make_store(server).load_plan() == plan
    cm = configmap(server, f"{NAME}-plan")
    assert cm["metadata"]["labels"] == labels("plan")
    assert json.loads(cm["data"]["plan.json"]) == plan


def test_archive_keeps_finished_rollouts(server: FakeKube) -> None:
    store = make_store(server)
    store.load()
    state = _state("abc123", "done")
    store.save(state)
    target = store.archive(state)
    assert target == f"ConfigMap {NAME}-history-abc123"
    assert store.load() is None
    assert configmap(server, f"{NAME}-state") is None
    history = configmap(server, f"{NAME}-history-abc123")
    assert history["metadata"]["labels"] == labels("history")
    assert RolloutState.from_dict(json.loads(history["data"]["state.json"])) == state
    # a new rollout starts afresh in the same store
    store.save(_state("def456"))
    assert store.load() == _state("def456")
    assert sorted(configmap_names(server)) == [f"{NAME}-history-abc123", f"{NAME}-state"]


# --------------------------------------------------------------------------- the Lease


def test_lease_is_held_described_and_released(server: FakeKube) -> None:
    holder, other = make_store(server), make_store(server)
    assert holder.lock_holder() == {}
    with holder.lock("novactl run demo"):
        held = lease(server)
        assert held["metadata"]["labels"] == labels("lock")
        assert held["spec"]["holderIdentity"] == holder.identity
        assert held["spec"]["leaseDurationSeconds"] == 2
        assert held["spec"]["renewTime"] and held["spec"]["acquireTime"]
        who = json.loads(held["metadata"]["annotations"][HOLDER_ANNOTATION])
        assert who["pid"] == os.getpid() and who["command"] == "novactl run demo"
        with pytest.raises(LockHeld) as info, other.lock("second"):
            pass
        message = str(info.value)
        assert f"pid {os.getpid()}" in message and who["host"] in message
        assert who["user"] in message and "novactl run demo" in message
        assert f"Lease {NS}/{NAME}" in message
        assert info.value.exit_code == 5
        assert other.lock_holder()["command"] == "novactl run demo"
    released = lease(server)
    assert "holderIdentity" not in released["spec"]
    assert HOLDER_ANNOTATION not in (released["metadata"].get("annotations") or {})
    assert holder.lock_holder() == {} and other.lock_holder() == {}
    with other.lock("second"):  # free again: taken at once
        assert lease(server)["spec"]["holderIdentity"] == other.identity


def test_lock_waits_for_the_holder_to_release(server: FakeKube) -> None:
    first, second = make_store(server), make_store(server)
    taken, errors = threading.Event(), []

    def hold() -> None:
        try:
            with first.lock("first"):
                taken.set()
                time.sleep(0.3)
        except BaseException as exc:
            errors.append(exc)
            taken.set()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert taken.wait(5)
        started = time.monotonic()
        with second.lock("second", wait=1.5):
            waited = time.monotonic() - started
            assert lease(server)["spec"]["holderIdentity"] == second.identity
    finally:
        thread.join(timeout=5)
    assert errors == []
    assert 0.1 < waited < 1.5


def _race_for_the_lock(stores: list[KubeStore]) -> dict[int, str]:
    """Every store tries lock(wait=0) at the same moment; a winner holds the Lease until
    every contender has tried.  Returns {index: "won" | "locked"}."""
    start, tried = threading.Barrier(len(stores)), threading.Barrier(len(stores))
    outcome: dict[int, str] = {}
    errors: list[BaseException] = []

    def contender(i: int) -> None:
        try:
            start.wait(timeout=5)
            try:
                with stores[i].lock(f"contender {i}"):
                    outcome[i] = "won"
                    tried.wait(timeout=5)
            except LockHeld:
                outcome[i] = "locked"
                tried.wait(timeout=5)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=contender, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert errors == [] and not any(t.is_alive() for t in threads)
    return outcome


def test_stores_racing_for_the_lease_never_both_win(server: FakeKube) -> None:
    stores = [make_store(server), make_store(server)]
    for _round in range(8):  # the first round races to create the Lease, later ones to patch
        outcome = _race_for_the_lock(stores)
        assert sorted(outcome.values()) == ["locked", "won"], outcome
        assert "holderIdentity" not in lease(server)["spec"]


def test_lock_is_reentrant_in_one_store(server: FakeKube) -> None:
    store = make_store(server)
    with store.lock("outer"):
        identity = store.identity
        with store.lock("inner"):
            assert lease(server)["spec"]["holderIdentity"] == identity
            assert store.lock_holder()["command"] == "outer"
            store.save(_state())
        # leaving the inner lock released nothing
        assert lease(server)["spec"]["holderIdentity"] == identity
        store.save(_state("r1", "after inner"))
    assert "holderIdentity" not in lease(server)["spec"]
    assert store.lock_holder() == {}


def test_the_lease_is_renewed_while_held(server: FakeKube) -> None:
    store = make_store(server, lease_duration=0.6)  # renewed every 0.2 s
    with store.lock("renewing"):
        first = lease(server)["spec"]["renewTime"]
        assert wait_for(lambda: lease(server)["spec"]["renewTime"] != first)
        assert lease(server)["spec"]["holderIdentity"] == store.identity
        store.save(_state())  # renewals do not make the holder lose its lock
    assert "holderIdentity" not in lease(server)["spec"]


def _seed_lease(server: FakeKube, *, renewed: float, transitions: int = 2) -> None:
    server.put({
        "apiVersion": COORD, "kind": "Lease",
        "metadata": {"name": NAME, "namespace": NS, "annotations": {HOLDER_ANNOTATION: json.dumps(
            {"pid": 4242, "host": "ci-runner-7", "user": "deployer", "command": "novactl run x",
             "since": renewed})}},
        "spec": {"holderIdentity": "deployer@ci-runner-7/4242/abcd", "leaseDurationSeconds": 15,
                 "acquireTime": micro(renewed), "renewTime": micro(renewed),
                 "leaseTransitions": transitions},
    })


def test_a_live_lease_of_another_machine_is_respected(server: FakeKube) -> None:
    _seed_lease(server, renewed=time.time())
    store = make_store(server)
    with pytest.raises(LockHeld) as info, store.lock("mine", wait=0.2):
        pass
    message = str(info.value)
    assert "pid 4242 on ci-runner-7 (deployer: novactl run x)" in message
    assert lease(server)["spec"]["holderIdentity"] == "deployer@ci-runner-7/4242/abcd"


def test_an_expired_lease_is_taken_over(server: FakeKube) -> None:
    _seed_lease(server, renewed=time.time() - 3600, transitions=2)
    store = make_store(server)
    with store.lock("takeover"):
        spec = lease(server)["spec"]
        assert spec["holderIdentity"] == store.identity
        assert spec["leaseTransitions"] == 3
        assert spec["leaseDurationSeconds"] == 2
        assert store.lock_holder()["command"] == "takeover"
        store.save(_state())
    assert "holderIdentity" not in lease(server)["spec"]


def test_a_writer_that_lost_the_lease_stops(server: FakeKube) -> None:
    store = make_store(server, lease_duration=0.6)  # renewed every 0.2 s
    with store.lock("loser"):
        store.load()
        store.save(_state("r1", "before"))
        # another machine takes the Lease (e.g. after this one was paused too long)
        stolen = lease(server)
        stolen["spec"].update(holderIdentity="thief@elsewhere/1/ffff",
                              renewTime=micro(time.time() + 60))
        stolen["metadata"]["annotations"] = {}
        server.put(stolen)
        # the renewal notices within a few renewals (bounded wait)
        assert wait_for(lambda: store._lost is not None, timeout=2.0)
        with pytest.raises(StateError, match="lock was lost") as info:
            store.save(_state("r1", "after"))
        assert "thief@elsewhere/1/ffff" in str(info.value)
    # nothing overwritten, and the new holder's Lease is left alone on the way out
    assert make_store(server).load() == _state("r1", "before")
    assert lease(server)["spec"]["holderIdentity"] == "thief@elsewhere/1/ffff"


def test_a_holder_whose_lease_expired_unseen_stops(server: FakeKube,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    first = make_store(server, lease_duration=1.0)
    second = make_store(server, lease_duration=1.0)
    with first.lock("first"):
        first.load()
        first.save(_state("r1", "first"))
        real_patch = first.kube.patch

        def partitioned(res: Any, name: str, patch: dict[str, Any], **kw: Any) -> Any:
            if res == LEASE:  # this machine cannot reach the API server to renew
                raise KubeError("transport error: partition", adapter="store")
            return real_patch(res, name, patch, **kw)

        monkeypatch.setattr(first.kube, "patch", partitioned)
        time.sleep(1.2)  # the Lease expires: another machine takes over
        with second.lock("second", wait=3.0):  # it watches the Lease stay unrenewed
            assert second.load() == _state("r1", "first")
            # the partition heals before the first holder's renewer saw a 409
            with pytest.raises(StateError):
                first.save(_state("r1", "stale first"))
            second.save(_state("r1", "second"))
        monkeypatch.setattr(first.kube, "patch", real_patch)
    assert make_store(server).load() == _state("r1", "second")


# --------------------------------------------------------------------------- faults


def test_throttling_and_server_errors_on_state_writes_are_retried(server: FakeKube) -> None:
    sleeps: list[float] = []
    store = make_store(server, sleeps=sleeps)
    store.load()
    state_cm = rf"/configmaps/{NAME}-state$"
    server.inject("POST", r"/namespaces/ns1/configmaps$", 429, retry_after=0.25)
    server.inject("POST", r"/namespaces/ns1/configmaps$", 500)
    store.save(_state("r1", "created"))
    assert sleeps == [0.25, 0.4]  # Retry-After honoured, then backoff (2nd attempt)
    assert make_store(server).load() == _state("r1", "created")

    sleeps.clear()
    server.inject("PATCH", state_cm, 500, times=2)
    server.inject("PATCH", state_cm, 429, retry_after=1)
    server.inject("PATCH", state_cm, "drop")
    store.save(_state("r1", "patched"))
    assert len(sleeps) == 4 and sleeps[2] == 1.0
    assert make_store(server).load() == _state("r1", "patched")
    # the write guarded by the version read is still guarded: a later save works
    store.save(_state("r1", "again"))
    assert make_store(server).load() == _state("r1", "again")
    assert len(writes(server, f"{NAME}-state")) == 6  # 4 refused + 2 applied


def test_persistent_server_errors_are_a_bounded_state_error(server: FakeKube) -> None:
    sleeps: list[float] = []
    store = make_store(server, sleeps=sleeps)
    store.load()
    store.save(_state("r1", "kept"))
    server.inject("PATCH", rf"/configmaps/{NAME}-state$", 503, times=5)
    with pytest.raises(StateError, match=r"write ConfigMap .*failed after 5 attempts"):
        store.save(_state("r1", "lost"))
    assert len(sleeps) == 4  # bounded: 1 + 4 retries, then it gives up
    assert len(writes(server, f"{NAME}-state")) == 5  # created by POST, then 5 PATCHes
    assert make_store(server).load() == _state("r1", "kept")


def test_a_conflict_on_an_audit_chunk_is_retried_once_per_line(server: FakeKube) -> None:
    store = make_store(server)
    chunk = rf"/configmaps/{NAME}-audit-0$"
    server.inject("POST", r"/namespaces/ns1/configmaps$", 409)  # creating the first chunk
    store.append_audit({"action": "one"})
    server.inject("PATCH", chunk, 409)  # appending to it
    store.append_audit({"action": "two"})
    server.inject("PATCH", chunk, 409, times=3)
    server.inject("PATCH", chunk, 500)
    store.append_audit({"action": "three"})
    assert [r["action"] for r in store.read_audit()] == ["one", "two", "three"]
    text = configmap(server, f"{NAME}-audit-0")["data"]["log.jsonl"]
    assert text.splitlines() == ['{"action":"one"}', '{"action":"two"}', '{"action":"three"}']


def test_throttled_lease_acquisition_is_retried(server: FakeKube) -> None:
    sleeps: list[float] = []
    store = make_store(server, sleeps=sleeps)
    server.inject("POST", r"/leases$", 429, retry_after=0.5)
    with store.lock("throttled"):
        assert lease(server)["spec"]["holderIdentity"] == store.identity
    assert sleeps == [0.5]


# --------------------------------------------------------------------------- the plan's store


def _kube_plan(directory: Path, extra: str = "") -> Path:
    plan = write_fake_plan(directory)
    plan.write_text(plan.read_text() + "  state: {type: kubernetes, namespace: ns1, "
                    f"lease_duration: 5s{extra}}}\n")
    return plan


def test_store_for_plan(server: FakeKube, tmp_path: Path) -> None:
    from novactl.plan import load_plan

    plan = load_plan(_kube_plan(tmp_path, ", kubeconfig: kubeconfig"))
    store = store_for_plan(plan, env={})  # the plan's kubeconfig, relative to the plan
    assert store.name == "novactl-fake-plan" and store.kube.namespace == NS
    assert store.lease_duration == 5.0 and store.kube.dry_run is False
    store.load()
    store.save(_state())
    assert configmap(server, "novactl-fake-plan-state")["metadata"]["labels"] == labels(
        "state", "novactl-fake-plan")
    dry = store_for_plan(plan, env={"NOVACTL_DRY_RUN": "1"})
    assert dry.kube.dry_run is False  # the store is never dry


# --------------------------------------------------------------------------- two CLI processes


def _start_all(server: FakeKube, runs: list[list[Any]]) -> Callable[[], list[Any]]:
    """Start every ``novactl`` invocation at the same moment; returns a function that waits
    for them and gives their CompletedProcess."""
    env = {"KUBECONFIG": str(server.kubeconfig_path), "NOVACTL_STORE": ""}
    results: list[Any] = [None] * len(runs)
    start = threading.Barrier(len(runs))

    def one(i: int) -> None:
        start.wait(timeout=10)
        results[i] = run_novactl(*runs[i], timeout=60, env=env)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(runs))]
    for thread in threads:
        thread.start()

    def join() -> list[Any]:
        for thread in threads:
            thread.join(timeout=70)
        assert all(r is not None for r in results)
        return results

    return join


def _check_no_interleaving(server: FakeKube, results: list[Any], actors: list[str]) -> None:
    store = make_store(server, "novactl-fake-plan")
    audit = list(store.read_audit())
    state = store.load()
    assert state is not None
    # one rollout only: two processes that both found no state would create two
    assert [r["action"] for r in audit].count("rollout.created") == 1
    assert {r["rollout"] for r in audit} == {state.rollout_id}
    # what each process did is one contiguous block: no A B A
    mine = [r for r in audit if r["actor"] in actors]
    blocks = [r["actor"] for i, r in enumerate(mine)
              if i == 0 or mine[i - 1]["actor"] != r["actor"]]
    assert len(blocks) == len(set(blocks)), blocks
    # every intent is followed by its outcome from the same process before anything else acts
    acts = [r for r in audit if r["action"].split(".")[0] in ("intent", "done", "failed")]
    for i in range(0, len(acts), 2):
        intent, outcome = acts[i], acts[i + 1] if i + 1 < len(acts) else None
        assert intent["action"].startswith("intent."), acts
        assert outcome is not None, acts
        assert outcome["action"] in (f"done.{intent['action'][7:]}",
                                     f"failed.{intent['action'][7:]}")
        assert outcome["actor"] == intent["actor"]
    assert acts, "nobody did the work"
    for result, actor in zip(results, actors, strict=True):
        if result.returncode == 5:  # locked out: it wrote nothing
            assert not any(r["actor"] == actor for r in audit)
            assert "rollout is locked by pid" in result.stderr
            assert "novactl run fake-plan" in result.stderr
    released = lease(server, "novactl-fake-plan")
    assert released is not None and "holderIdentity" not in released["spec"]


def test_two_cli_runs_started_together_never_hold_the_lease_together(
        server: FakeKube, tmp_path: Path) -> None:
    plan = _kube_plan(tmp_path)
    actors = ["A", "B"]
    results = _start_all(server, [["run", "--once", plan, "--by", who] for who in actors])()
    codes = [r.returncode for r in results]
    detail = [(r.returncode, r.stderr[-500:]) for r in results]
    assert set(codes) <= {0, 4, 5}, detail  # 5: the other one held the Lease
    assert any(c in (0, 4) for c in codes), detail
    _check_no_interleaving(server, results, [f"novactl ({who})" for who in actors])


def test_two_cli_runs_waiting_for_the_lease_take_turns(server: FakeKube,
                                                       tmp_path: Path) -> None:
    plan = _kube_plan(tmp_path)
    actors = ["A", "B"]
    gate = make_store(server, "novactl-fake-plan", lease_duration=5.0)

    def lease_reads() -> int:
        return sum(1 for m, p, _c, _b in server.requests
                   if m == "GET" and p.endswith("/leases/novactl-fake-plan"))

    with gate.lock("the test, until both runs wait"):
        before = lease_reads()
        join = _start_all(server, [["run", "--once", plan, "--by", who, "--lock-wait", "10s"]
                                   for who in actors])
        # both are polling the held Lease (each polls about twice a second); then let go
        wait_for(lambda: lease_reads() - before >= 3, timeout=2.0)
    results = join()
    detail = [(r.returncode, r.stderr[-500:]) for r in results]
    assert all(r.returncode in (0, 4) for r in results), detail  # both got their turn
    _check_no_interleaving(server, results, [f"novactl ({who})" for who in actors])


def test_a_cli_run_names_the_holder_of_the_lease(server: FakeKube, tmp_path: Path) -> None:
    plan = _kube_plan(tmp_path)
    env = {"KUBECONFIG": str(server.kubeconfig_path), "NOVACTL_STORE": ""}
    holder = make_store(server, "novactl-fake-plan", lease_duration=5.0)
    with holder.lock("novactl rollback by the test"):
        result = run_novactl("run", "--once", plan, timeout=60, env=env)
        assert result.returncode == 5, result.stderr
        assert f"pid {os.getpid()}" in result.stderr
        assert "novactl rollback by the test" in result.stderr
        assert f"Lease {NS}/novactl-fake-plan" in result.stderr
        assert lease(server, "novactl-fake-plan")["spec"]["holderIdentity"] == holder.identity
        assert configmap_names(server) == []  # it touched nothing
    result = run_novactl("run", "--once", plan, timeout=60, env=env)
    assert result.returncode in (0, 4), result.stderr
    assert make_store(server, "novactl-fake-plan").load() is not None


def test_a_fast_clock_does_not_take_a_lease_that_is_being_renewed(server: FakeKube) -> None:
    """Expiry tolerates clock skew between machines (10 s, or the Lease duration if
    longer): a runner whose clock is 8 s ahead must not take a live 3 s Lease."""
    holder = make_store(server, "novactl-skew", lease_duration=3.0)
    ahead = make_store(server, "novactl-skew", lease_duration=3.0)
    ahead.wall = lambda: time.time() + 8.0
    with holder.lock("holder"), pytest.raises(LockHeld), ahead.lock("ahead", wait=1.5):
        pass


def test_load_quickly_gives_up_after_one_short_attempt(server: FakeKube) -> None:
    store = make_store(server, "novactl-quick")
    server.inject("GET", "configmaps/novactl-quick-state$", 503, times=10)
    started = time.monotonic()
    with pytest.raises(StateError):
        store.load_quickly()
    assert time.monotonic() - started < 2.0
    gets = [p for m, p, _c, _b in server.requests if m == "GET" and "quick-state" in p]
    assert len(gets) == 1
    assert store.kube.retries > 0  # the store's normal retries are back
