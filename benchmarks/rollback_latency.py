"""How fast traffic leaves a bad canary, on a real nginx.

    python benchmarks/rollback_latency.py [--runs 5] [--rps 200]

Two sample services (stable, canary) behind a real nginx driven by the nginx traffic
shifter (with check_url, so a change counts once nginx serves it), and a client that
records, for every request, when it was sent and which version answered.

1. Automatic: a rollout at 50% whose metrics turn bad; the rollback trigger has no
   `for` window, so it fires at the first evaluation that sees the errors.  Measured:
   from the moment novactl decided (the trigger fired: `rollback.detected_at`) to the
   send time of the last request the canary answered.
2. By hand: `novactl rollback PLAN --reason ...` as a separate process at 50%.  Measured:
   the command's wall time, and from its start to the last request the canary answered.

Prints median and worst over the runs.  Needs nginx (Debian nginx-light).
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

PLAN = """\
apiVersion: novactl.dev/v1
kind: RolloutPlan
metadata: {{name: bench}}
spec:
  versions: {{stable: v2.9.0, canary: v3.0.0}}
  traffic:
    type: nginx
    config:
      include_file: "{include}"
      stable: ["{stable}"]
      canary: ["{canary}"]
      nginx: "{nginx}"
      args: {args}
      check_url: "{router}/-/novactl-weight"
  workload: {{type: fake, config: {{world: "{world}"}}}}
  probes: {{m: {{type: fake}}}}
  metrics:
    error_rate: {{probe: m, kind: ratio, query: {{numerator: e, denominator: t}}}}
  defaults: {{interval: 250ms}}
  stages:
    - name: half
      weight: 50
      duration: 1h
      criteria: {{mandatory: [error_rate < 1%]}}
      rollback: [{{name: error-rate-threshold, check: error_rate > 5%}}]
"""


class Recorder:
    """Closed-loop clients through the router; every answer is (sent at, version)."""

    def __init__(self, port: int, clients: int = 8) -> None:
        self.port = port
        self.clients = clients
        self.answers: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> Recorder:
        for _ in range(self.clients):
            thread = threading.Thread(target=self._run, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            sent = time.time()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/")
                response = conn.getresponse()
                response.read()
                version = response.getheader("X-Version") or "?"
                conn.close()
            except OSError:
                continue
            with self._lock:
                self.answers.append((sent, version))
            time.sleep(0.002)

    def last_canary(self, after: float = 0.0) -> float | None:
        with self._lock:
            times = [sent for sent, version in self.answers
                     if version == "v3.0.0" and sent >= after]
        return max(times) if times else None

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs

    from _nginx import NginxServer

    from novactl.adapters._base import AdapterContext
    from novactl.adapters.fake import FakeProbe
    from novactl.adapters.nginx import NginxTrafficShifter
    from novactl.core.state import Phase
    from novactl.plan import load_plan
    from novactl.runner import AdapterSet, Runner, context_for
    from novactl.sandbox.app import SampleApp
    from novactl.store import LocalStore

    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        sys.exit("nginx is not installed (apt-get install nginx-light)")
    base = Path(tempfile.mkdtemp(prefix="novactl-bench-"))
    stable = SampleApp("v2.9.0", "stable", base_latency=(0.001, 0.003)).start()
    canary = SampleApp("v3.0.0", "canary", base_latency=(0.001, 0.003)).start()
    nginx = NginxServer(base / "nginx", base / "nginx" / "split.conf")
    hostport = {app.role: app.url.removeprefix("http://").rstrip("/") for app in (stable, canary)}
    shifter_config = NginxTrafficShifter.Config.model_validate(nginx.shifter_config(
        stable=[hostport["stable"]], canary=[hostport["canary"]]))
    NginxTrafficShifter("t", shifter_config, AdapterContext()).write_file(0.0)
    nginx.start()
    recorder = Recorder(nginx.port).start()
    automatic: list[float] = []
    manual_wall: list[float] = []
    manual_traffic: list[float] = []
    try:
        for run in range(runs):
            directory = base / f"run{run}"
            directory.mkdir()
            plan_path = directory / "plan.yaml"
            plan_path.write_text(PLAN.format(
                include=nginx.include_file, stable=hostport["stable"],
                canary=hostport["canary"], nginx=nginx.binary, args=json.dumps(nginx.args),
                router=f"http://127.0.0.1:{nginx.port}", world=directory / "world.json"))
            plan = load_plan(plan_path)

            # 1. automatic: the canary's metrics turn bad 2 s into the stage
            bad_after = time.time() + 2.0

            def metrics(query, bad_after=bad_after):
                if query.version != "v3.0.0":
                    return (0, 1000)
                if time.time() < bad_after:
                    return (0, 1000)
                return (500, 1000)

            context = context_for(plan)
            adapters = AdapterSet(plan, context, probes={"m": FakeProbe("m", script=metrics)})
            runner = Runner(plan, LocalStore(directory / "state"), adapters, actor="bench")
            give_up = bad_after + 20
            result = runner.run(poll=0.05, until=lambda r, end=give_up: time.time() > end)
            adapters.close()
            assert result.state.phase is Phase.ROLLED_BACK, result.state.phase
            detected = result.state.rollback.detected_at
            time.sleep(0.5)  # let in-flight requests finish before reading the record
            last = recorder.last_canary()
            automatic.append(max(0.0, (last or detected) - detected))

            # 2. by hand: back to 50%, then `novactl rollback` as a separate process
            shifter = NginxTrafficShifter("t", shifter_config, AdapterContext())
            shifter.set_weight(50)
            time.sleep(1.0)
            state_dir = directory / "manual-state"
            started = time.time()
            done = subprocess.run(
                [sys.executable, "-m", "novactl", "rollback", str(plan_path), "--reason",
                 "benchmark", "--state-dir", str(state_dir)], capture_output=True, text=True,
                timeout=60)
            finished = time.time()
            if done.returncode != 0:
                sys.exit(f"novactl rollback failed: {done.stderr}")
            time.sleep(0.5)
            last = recorder.last_canary(after=started - 1.0)
            manual_wall.append(finished - started)
            manual_traffic.append(max(0.0, (last or started) - started))
    finally:
        recorder.stop()
        nginx.stop()
        stable.stop()
        canary.stop()
        shutil.rmtree(base, ignore_errors=True)

    def row(label: str, values: list[float]) -> str:
        return (f"{label:58} median {statistics.median(values) * 1000:7.0f} ms   "
                f"worst {max(values) * 1000:7.0f} ms")

    print(f"rollback latency on a real nginx ({runs} runs, {len(recorder.answers):,} "
          "requests recorded)")
    print(row("trigger fired → last request the canary answered", automatic))
    print(row("`novactl rollback` started → last request the canary answered",
              manual_traffic))
    print(row("`novactl rollback` wall time (whole process)", manual_wall))


if __name__ == "__main__":
    main()
