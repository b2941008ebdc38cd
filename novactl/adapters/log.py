"""Log notifier: one line per message, to a file or to stderr.

::

    notifications:
      targets:
        audit: {type: log, config: {path: notifications.log, format: json}}
        console: {type: log}

A relative ``path`` is resolved against the state directory when there is one,
else against the plan file's directory; missing parent directories are
created.  Lines are appended and flushed one message at a time.

``format: text``::

    2026-01-01T00:00:00Z [critical] rollback.started novacron-v3 stage=canary: Title — text

(``stage=`` and ``— text`` are left out when empty; newlines become spaces so
one message is always one line).  ``format: json`` writes ``message.to_dict()``
as one JSON object per line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from novactl._clock import iso
from novactl._errors import NotifyError
from novactl.adapters._base import Adapter, AdapterConfig, AdapterContext, Message

__all__ = ["LogNotifier", "format_text"]


def _flat(text: str) -> str:
    return " ".join(text.split())


def format_text(message: Message) -> str:
    """The text-format line for ``message`` (without the newline)."""
    line = f"{iso(message.at)} [{message.severity}] {message.event} {_flat(message.rollout)}"
    if message.stage:
        line += f" stage={_flat(message.stage)}"
    line += f": {_flat(message.title)}"
    if message.text:
        line += f" — {_flat(message.text)}"
    return line


class LogNotifier(Adapter):
    """Appends each message as one line (see the module docstring)."""

    class Config(AdapterConfig):
        path: str | None = Field(None, description="File to append to; none: stderr.")
        format: Literal["text", "json"] = "text"

    def __init__(self, name: str, config: Any = None, context: AdapterContext | None = None
                 ) -> None:
        if not isinstance(config, self.Config):
            config = self.Config.model_validate(config or {})
        super().__init__(name, config, context or AdapterContext())

    @property
    def path(self) -> Path | None:
        """Where lines go (None: stderr)."""
        if self.config.path is None:
            return None
        path = Path(self.config.path).expanduser()
        if path.is_absolute():
            return path
        base = self.context.state_dir if self.context.state_dir is not None \
            else self.context.base_dir
        return Path(base) / path

    def line(self, message: Message) -> str:
        if self.config.format == "json":
            return json.dumps(message.to_dict(), default=str, ensure_ascii=False)
        return format_text(message)

    def notify(self, message: Message) -> None:
        text = self.line(message) + "\n"
        path = self.path
        try:
            if path is None:
                sys.stderr.write(text)
                sys.stderr.flush()
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
        except OSError as exc:
            where = str(path) if path is not None else "stderr"
            raise NotifyError(f"cannot write to {where}: {exc.strerror or exc}",
                              adapter=self.label) from exc
