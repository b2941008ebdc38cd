"""novactl verify-split PLAN --expected-canary-percent P"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from novactl.cli._common import Output, OutputOpt, PlanArg, StateDirOpt, VarOpt, load, open_store
from novactl.cli._terminal import term


def command(
    plan: PlanArg,
    expected: Annotated[float | None, typer.Option(
        "--expected-canary-percent", min=0, max=100, show_default=False,
        help="The share the canary should get (default: the rollout's current weight).")]
    = None,
    requests: Annotated[int | None, typer.Option(
        "--requests", "-n", min=1, max=100_000, show_default=False,
        help="How many requests (default: enough for the tolerance).")] = None,
    tolerance: Annotated[float | None, typer.Option(
        "--tolerance", min=0, max=100, show_default=False,
        help="Allowed difference in percentage points (default: spec.traffic.verify).")] = None,
    url: Annotated[str | None, typer.Option("--url", help="Where to send requests "
                                            "(default: spec.traffic.verify.url).",
                                            show_default=False)] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, max=64)] = 8,
    header_probes: Annotated[int, typer.Option(
        "--header-probes", min=0, max=1000,
        help="Requests with the debug header that must all reach the canary.")] = 20,
    state_dir: StateDirOpt = None,
    var: VarOpt = None,
    output: OutputOpt = Output.text,
) -> None:
    """Send requests through the router without the debug header, count which version
    answered (response header), and compare the canary's share with what is expected,
    with a 95% Wilson interval.  Then check the debug header reaches the canary.
    Exit 0 when the split holds, 7 when it does not, 6 when the router cannot be reached."""
    from novactl._errors import InputError
    from novactl.core.stats import requests_for_tolerance

    term.output = output.value
    loaded = load(plan, var)
    verify = loaded.spec.traffic.verify
    target = url or (verify.url if verify else None)
    if not target:
        raise InputError("no URL: pass --url or set spec.traffic.verify.url")
    _check_url(target)
    if expected is None:
        state = open_store(loaded, state_dir).load()
        if state is None or state.weight_desired is None:
            raise InputError("no rollout weight to compare with: pass "
                             "--expected-canary-percent")
        expected = state.weight_desired
    tol = tolerance if tolerance is not None else (verify.tolerance if verify else 2.0)
    if requests:
        count = requests
    elif verify is not None and "requests" in verify.model_fields_set:
        count = verify.requests
    else:
        count = requests_for_tolerance(expected / 100, tol / 100)
    header = verify.version_header if verify else "X-Version"
    debug = loaded.spec.traffic.debug_header
    result = measure(target, count, concurrency, header, loaded.spec.versions.canary,
                     loaded.spec.versions.stable, expected, tol,
                     (debug.name, debug.value) if debug else None, header_probes)
    _report(result)
    raise typer.Exit(result["exit_code"])


MAX_FAILED_SHARE = 0.05  # more failed/unknown answers than this: the split is not judged


def _check_url(url: str) -> None:
    import httpx

    from novactl._errors import InputError
    from novactl.adapters._http import redacted

    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise InputError(f"URL {redacted(url)!r}: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InputError(f"URL {redacted(url)!r}: expected http://host/... or https://...")


def measure(url: str, count: int, concurrency: int, version_header: str, canary: str,
            stable: str, expected: float, tolerance: float,
            debug: tuple[str, str] | None, header_probes: int) -> dict[str, Any]:
    """Send the requests (bounded concurrency) and judge the split."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from novactl.adapters._http import one_line, redacted
    from novactl.core.stats import wilson_interval
    from novactl.exitcodes import ExitCode

    counts: dict[str, int] = {"canary": 0, "stable": 0, "other": 0, "error": 0}
    errors: list[str] = []
    lock = threading.Lock()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    def classify(response: httpx.Response) -> str:
        if response.status_code >= 500:
            return "error"
        version = response.headers.get(version_header, "")
        if version == canary:
            return "canary"
        if version == stable:
            return "stable"
        return "other"

    with httpx.Client(timeout=5.0, limits=limits, follow_redirects=False) as client:
        def one(headers: dict[str, str] | None) -> str:
            try:
                kind = classify(client.get(url, headers=headers))
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                with lock:
                    if len(errors) < 3:
                        errors.append(f"{type(exc).__name__}: {one_line(exc)}")
                kind = "error"
            return kind

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            for kind in pool.map(lambda _i: one(None), range(count)):
                counts[kind] += 1
            header_counts = {"canary": 0, "stable": 0, "other": 0, "error": 0}
            if debug is not None and header_probes:
                for kind in pool.map(lambda _i: one({debug[0]: debug[1]}), range(header_probes)):
                    header_counts[kind] += 1
    answered = counts["canary"] + counts["stable"]
    share = counts["canary"] / answered if answered else None
    low, high = wilson_interval(counts["canary"], answered) if answered else (0.0, 1.0)
    band = ((expected - tolerance) / 100, (expected + tolerance) / 100)
    failed = counts["error"] + counts["other"]
    if answered == 0:
        verdict, code = "unreachable", ExitCode.ACTION_FAILED
    elif high < band[0] or low > band[1]:
        verdict, code = "fail", ExitCode.CHECK_FAILED
    elif failed > MAX_FAILED_SHARE * count:
        # what failed is not a random sample of the split: the share cannot be trusted
        verdict, code = "inconclusive", ExitCode.ACTION_FAILED
    else:
        verdict, code = "pass", ExitCode.OK
    header_ok = None
    if debug is not None and header_probes:
        header_ok = header_counts["canary"] == header_probes
        if not header_ok and code == ExitCode.OK:
            verdict, code = "fail", ExitCode.CHECK_FAILED
    return {
        "url": redacted(url),
        "requests": count,
        "counts": counts,
        "canary_share": share,
        "interval95": [low, high],
        "expected": expected / 100,
        "tolerance": tolerance / 100,
        "verdict": verdict,
        "debug_header": None if debug is None or not header_probes else {
            "header": debug[0], "value": debug[1], "requests": header_probes,
            "counts": header_counts, "all_canary": header_ok},
        "errors": errors,
        "exit_code": int(code),
    }


def _report(result: dict[str, Any]) -> None:
    if term.output == "json":
        term.json(result)
        return
    counts = result["counts"]
    share = result["canary_share"]
    low, high = result["interval95"]
    term.info(f"{result['requests']} requests to {result['url']}: canary {counts['canary']}, "
              f"stable {counts['stable']}, other {counts['other']}, errors {counts['error']}")
    if share is not None:
        term.info(f"canary share {share * 100:.2f}% (95% interval {low * 100:.2f}–"
                  f"{high * 100:.2f}%), expected {result['expected'] * 100:g}% ± "
                  f"{result['tolerance'] * 100:g} points")
    debug = result["debug_header"]
    if debug is not None:
        term.info(f"{debug['header']}: {debug['value']} → canary on "
                  f"{debug['counts']['canary']}/{debug['requests']} requests")
    for error in result["errors"]:
        term.warn(error)
    if result["verdict"] == "pass":
        term.ok("split verified")
    elif result["verdict"] == "unreachable":
        term.error("no request was answered by a known version")
    elif result["verdict"] == "inconclusive":
        failed = counts["error"] + counts["other"]
        term.error(f"inconclusive: {failed} of {result['requests']} requests failed or were "
                   f"answered by an unknown version (more than {MAX_FAILED_SHARE:.0%})")
    else:
        term.error("the split does not match")
