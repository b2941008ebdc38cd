"""novactl sandbox"""

from __future__ import annotations

from typing import Annotated

import typer

from novactl.cli._terminal import term


def command(
    router_port: Annotated[int, typer.Option("--router-port", min=0, max=65535)] = 8400,
    control_port: Annotated[int, typer.Option("--control-port", min=0, max=65535)] = 8401,
    rps: Annotated[int, typer.Option("--rps", min=0, max=1000, help="Load to send through "
                                     "the router (0: none).")] = 100,
) -> None:
    """Run the local sandbox until Ctrl-C: a weighted router (with its admin API) and the
    stable sample service, plus load.  Then, in another terminal:
    novactl run plans/demo.yaml"""
    import threading

    from novactl.sandbox import Sandbox

    sandbox = Sandbox(stable_version="v2.9.0", router_port=router_port,
                      control_port=control_port)
    sandbox.start()
    load = sandbox.start_load(rps) if rps else None
    term.info(f"router  {sandbox.router_url}   (admin: {sandbox.router_url}/-/weight)")
    term.info(f"control {sandbox.control_url}  (metrics: {sandbox.control_url}/metrics)")
    term.info("in another terminal: novactl run plans/demo.yaml    (Ctrl-C here to stop)")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        if load is not None:
            load.stop()
        sandbox.stop()
    term.info("sandbox stopped")
