"""Kubernetes: novactl's own part of a rollback, and of taking the cluster lock.

Against the Kubernetes-speaking test server (tests/_kubeapi.py) on loopback, so the
figures are novactl + the official client, without a real API server's latency:

* traffic first: build the ingress-nginx shifter (imports and connects the client),
  set the canary weight to 0 and read it back — what `novactl rollback` does first;
* the same on a warm connection (a running `novactl run` reacting to a trigger);
* taking and releasing the Lease of the cluster store.

Usage: python benchmarks/kube_rollback.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

COLD = """
import sys, time
started = time.perf_counter()
from novactl.adapters._base import AdapterContext
from novactl.adapters._registry import create
ctx = AdapterContext(env={"KUBECONFIG": sys.argv[1]})
shifter = create("traffic", "ingress-nginx", "traffic", {
    "namespace": "novacron", "stable_ingress": "novacron-api",
    "canary_service": "novacron-api-canary"}, ctx)
shifter.set_weight(0.0)
assert shifter.get_weight() == 0.0
print(time.perf_counter() - started)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs

    from _kubeapi import FakeKube

    from novactl.adapters._base import AdapterContext
    from novactl.adapters._kube import KubeConfig, connect
    from novactl.adapters._registry import create
    from novactl.store.kube import KubeStore

    with FakeKube() as kube, tempfile.TemporaryDirectory() as tmp:
        kubeconfig = kube.kubeconfig(Path(tmp) / "kubeconfig", namespace="novacron")
        kube.put({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                  "metadata": {"name": "novacron-api", "namespace": "novacron"},
                  "spec": {"rules": [{"host": "api", "http": {"paths": [{
                      "path": "/", "pathType": "Prefix", "backend": {"service": {
                          "name": "novacron-api", "port": {"number": 80}}}}]}}]}})
        ctx = AdapterContext(env={"KUBECONFIG": str(kubeconfig)})
        shifter = create("traffic", "ingress-nginx", "traffic", {
            "namespace": "novacron", "stable_ingress": "novacron-api",
            "canary_service": "novacron-api-canary"}, ctx)
        shifter.set_weight(10)

        cold = []
        for _ in range(runs):
            shifter.set_weight(10)
            out = subprocess.run([sys.executable, "-c", COLD, str(kubeconfig)], check=True,
                                 capture_output=True, text=True, cwd=ROOT).stdout
            cold.append(float(out.strip()))

        warm = []
        for _ in range(runs):
            shifter.set_weight(10)
            started = time.perf_counter()
            shifter.set_weight(0.0)
            assert shifter.get_weight() == 0.0
            warm.append(time.perf_counter() - started)

        store = KubeStore(connect(KubeConfig(namespace="novacron"), ctx, label="store"),
                          "novactl-bench")
        lease = []
        for _ in range(runs):
            started = time.perf_counter()
            with store.lock("benchmark"):
                pass
            lease.append(time.perf_counter() - started)

    def row(name: str, values: list[float]) -> str:
        return (f"{name:<58} {statistics.median(values) * 1000:7.1f} ms "
                f"{max(values) * 1000:7.1f} ms")

    print(f"{'figure':<58} {'median':>10} {'worst':>10}   ({runs} runs)")
    print(row("traffic first, fresh process (imports, kubeconfig, 0%)", cold))
    print(row("traffic first, warm connection (patch 0% + read back)", warm))
    print(row("take and release the Lease (cluster store)", lease))


if __name__ == "__main__":
    main()
