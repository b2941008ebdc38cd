"""The novactl command line.  One module per command; heavy imports inside them."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from novactl import __version__
from novactl.cli import (
    approve,
    demo,
    deploy,
    history,
    pause,
    probe,
    promote,
    report,
    rollback,
    run,
    sandbox,
    schema,
    signal,
    status,
    validate,
    verify_split,
)
from novactl.cli._terminal import term

__all__ = ["app", "main"]

app = typer.Typer(
    name="novactl",
    help="Progressive delivery from the command line: staged canary rollouts with honest "
    "gates, durable state and a rollback that works when everything else is broken.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"novactl {__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", envvar="NOVACTL_DEBUG",
                                        help="Show tracebacks of internal errors.")] = False,
    kubeconfig: Annotated[str | None, typer.Option(
        "--kubeconfig", envvar="NOVACTL_KUBECONFIG", show_default=False,
        help="Kubernetes adapters and store: kubeconfig file (default: KUBECONFIG, "
        "~/.kube/config, in-cluster).")] = None,
    kube_context: Annotated[str | None, typer.Option(
        "--context", envvar="NOVACTL_KUBE_CONTEXT", show_default=False,
        help="Kubernetes: kubeconfig context (overrides the plan's).")] = None,
    namespace: Annotated[str | None, typer.Option(
        "--namespace", "-n", envvar="NOVACTL_NAMESPACE", show_default=False,
        help="Kubernetes: namespace (overrides the plan's).")] = None,
    store: Annotated[str | None, typer.Option(
        "--store", envvar="NOVACTL_STORE", metavar="local|kubernetes", show_default=False,
        help="Where rollout state and the lock live (overrides spec.state.type).")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", envvar="NOVACTL_DRY_RUN",
        help="Show the changes (Kubernetes writes are sent with dryRun=All) without making "
        "them or saving state: run (one pass), deploy, promote, approve, pause, resume, "
        "signal. rollback refuses it.")] = False,
) -> None:
    import os

    term.debug = term.debug or debug
    # Adapters and stores read these from the environment (their AdapterContext.env).
    for key, value in (("NOVACTL_KUBECONFIG", kubeconfig), ("NOVACTL_KUBE_CONTEXT", kube_context),
                       ("NOVACTL_NAMESPACE", namespace), ("NOVACTL_STORE", store)):
        if value:
            os.environ[key] = value
    if dry_run:
        os.environ["NOVACTL_DRY_RUN"] = "1"


_COMMANDS = [
    ("run", run.command, "Run the rollout: reconcile until it ends (or once, for cron/CI)."),
    ("status", status.command, "Where the rollout is: stage, weight, checks, what it waits for."),
    ("deploy", deploy.command, "Put the canary at a stage's weight now (canary-deploy.sh)."),
    ("verify-split", verify_split.command, "Measure the traffic split through the router."),
    ("probe", probe.command,
     "Run the plan's metric queries once: canary and stable side by side."),
    ("rollback", rollback.command,
     "Send all traffic back to stable, verify, scale the canary down."),
    ("promote", promote.command, "Promote the canary to stable now."),
    ("approve", approve.command, "Record a GO (or NO-GO) for a stage, by role."),
    ("pause", pause.command, "Pause the rollout (Plan A); triggers stay armed."),
    ("resume", pause.resume_command, "Resume a paused rollout."),
    ("signal", signal.command, "Raise a plan signal (security incident, high-severity bug...)."),
    ("history", history.command, "The audit log: every action, who, when and why."),
    ("report", report.command, "Success metrics per stage, baseline vs. after, MTTR."),
    ("validate", validate.command, "Check a plan; print it normalised."),
    ("schema", schema.command, "Print the plan's JSON Schema (for editors)."),
    ("demo", demo.command, "Run a rollout against a local sandbox; no services needed."),
    ("sandbox", sandbox.command, "Run the local sandbox in the foreground."),
]
for _name, _fn, _help in _COMMANDS:
    app.command(_name, help=_help, short_help=_help)(_fn)  # type: ignore[type-var]


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, turn every error into one line and an exit code."""
    try:
        # without standalone mode click returns typer.Exit's code instead of raising it
        code = app(args=argv, prog_name="novactl", standalone_mode=False)
        return code if isinstance(code, int) else 0
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        term.error("aborted")
        return 130
    except KeyboardInterrupt:
        term.error("interrupted")
        return 130
    except Exception as exc:
        return _handle(exc)


def _handle(exc: Exception) -> int:
    from novactl._errors import NovactlError
    from novactl.exitcodes import ExitCode

    # click's usage errors (typer may vendor click, so match by shape, not by class)
    show = getattr(exc, "show", None)
    if callable(show) and isinstance(getattr(exc, "exit_code", None), int):
        show()
        return int(exc.exit_code)  # type: ignore[attr-defined]
    if isinstance(exc, NovactlError):
        term.error(exc.message)
        if term.debug:
            import traceback

            traceback.print_exception(exc)
        return int(exc.exit_code)
    if term.debug:
        import traceback

        traceback.print_exception(exc)
    else:
        term.error(f"internal error: {type(exc).__name__}: {exc} (run with --debug for details)")
    return int(ExitCode.INTERNAL)
