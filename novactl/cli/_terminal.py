"""All command output goes through here.

Text goes to stdout, diagnostics to stderr.  On a terminal we use rich
(colour, tables, the live view); when stdout is not a TTY (CI logs, pipes,
cron mail) output stays plain and quiet: no colour, no spinners, no live
redraws, one line per thing that happened.  ``--output json`` prints exactly
one JSON document on stdout and nothing else there.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

__all__ = ["Terminal", "term"]

_STYLES = {
    "info": "",
    "ok": "green",
    "warning": "yellow",
    "critical": "bold red",
    "error": "bold red",
    "dim": "dim",
}


class Terminal:
    def __init__(self) -> None:
        self.output = "text"
        self.debug = bool(os.environ.get("NOVACTL_DEBUG"))
        self._console: Any = None
        self._err_console: Any = None

    # -- capabilities
    @property
    def interactive(self) -> bool:
        """A human is watching: stdout is a terminal and not in JSON mode."""
        return self.output == "text" and sys.stdout.isatty() and not os.environ.get("CI")

    @property
    def console(self) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(highlight=False, soft_wrap=False,
                                    no_color=not self.interactive or None)
        return self._console

    @property
    def err_console(self) -> Any:
        if self._err_console is None:
            from rich.console import Console

            self._err_console = Console(stderr=True, highlight=False,
                                        no_color=not sys.stderr.isatty() or None)
        return self._err_console

    # -- plain lines
    def line(self, text: str = "", style: str = "") -> None:
        """One line on stdout (suppressed in JSON mode)."""
        if self.output == "json":
            return
        if self.interactive and style:
            self.console.print(text, style=_STYLES.get(style, style), markup=False)
        else:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    def info(self, text: str) -> None:
        self.line(text)

    def ok(self, text: str) -> None:
        self.line(text, "ok")

    def warn(self, text: str) -> None:
        """A warning on stderr (visible in JSON mode too)."""
        self._stderr(f"novactl: warning: {text}", "warning")

    def note(self, text: str) -> None:
        """A diagnostic line on stderr (adapter logs with --debug)."""
        self._stderr(f"novactl: {text}", "dim")

    def error(self, text: str) -> None:
        for line in text.splitlines() or [""]:
            self._stderr(f"novactl: error: {line}", "error")

    def _stderr(self, text: str, style: str) -> None:
        if sys.stderr.isatty():
            self.err_console.print(text, style=_STYLES.get(style, ""), markup=False)
        else:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    # -- structured
    def json(self, data: Any) -> None:
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
        sys.stdout.flush()

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[Any]], *,
              title: str | None = None, styles: Sequence[str] | None = None) -> None:
        if self.output == "json":
            return
        if not self.interactive:
            if title:
                sys.stdout.write(title + "\n")
            widths = [len(c) for c in columns]
            text_rows = [[_plain(cell) for cell in row] for row in rows]
            for row in text_rows:
                for i, cell in enumerate(row):
                    widths[i] = min(max(widths[i], len(cell)), 80)
            sys.stdout.write("  ".join(c.ljust(widths[i]) for i, c in enumerate(columns))
                             .rstrip() + "\n")
            for row in text_rows:
                sys.stdout.write("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row))
                                 .rstrip() + "\n")
            sys.stdout.flush()
            return
        self.console.print(build_table(columns, rows, title=title, styles=styles))

    @contextmanager
    def live(self, render: Any) -> Iterator[Any]:
        """A live-updating view on a terminal; a no-op handle elsewhere."""
        if not self.interactive:
            yield None
            return
        from rich.live import Live

        with Live(render(), console=self.console, refresh_per_second=4,
                  transient=False) as live:
            yield live


def build_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], *,
                title: str | None = None, styles: Sequence[str] | None = None) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left", header_style="bold")
    for i, column in enumerate(columns):
        table.add_column(column, style=(styles[i] if styles and i < len(styles) else None),
                         overflow="fold")
    for row in rows:
        table.add_row(*[cell if hasattr(cell, "__rich__") or hasattr(cell, "__rich_console__")
                        else _plain(cell) for cell in row])
    return table


def _plain(cell: Any) -> str:
    if cell is None:
        return ""
    plain = getattr(cell, "plain", None)  # rich Text
    return plain if isinstance(plain, str) else str(cell)


term = Terminal()
