"""How fast novactl starts, and that heavy libraries stay out of `--help`.

    python benchmarks/startup.py [--runs N]

Prints the median and best wall time of `novactl --help`, `novactl --version`
and `python -c pass` (the interpreter alone), and which heavy modules importing
the CLI pulls in (should be none).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

HEAVY = ("httpx", "kubernetes", "yaml", "pydantic", "tenacity", "rich")


def timed(args: list[str], runs: int) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), min(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    python = sys.executable
    rows = [
        ("python -c pass", [python, "-c", "pass"]),
        ("novactl --version", [python, "-m", "novactl", "--version"]),
        ("novactl --help", [python, "-m", "novactl", "--help"]),
        ("novactl validate --help", [python, "-m", "novactl", "validate", "--help"]),
    ]
    print(f"{'command':28} {'median':>9} {'best':>9}   ({runs} runs)")
    for label, args in rows:
        median, best = timed(args, runs)
        print(f"{label:28} {median * 1000:7.0f}ms {best * 1000:7.0f}ms")
    probe = ("import sys, novactl.cli; "
             f"print(','.join(m for m in {HEAVY!r} if m in sys.modules) or 'none')")
    loaded = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True)
    print(f"heavy modules imported by the CLI at start-up: {loaded.stdout.strip()}")


if __name__ == "__main__":
    main()
