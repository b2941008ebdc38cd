"""The adapter registry: built-ins load lazily, plugins come from entry points,
unknown types fail loudly."""

from __future__ import annotations

import sys
import types
from importlib import metadata

import pytest

from novactl.adapters import (
    Adapter,
    AdapterConfig,
    AdapterContext,
    AdapterError,
    TrafficShifter,
    UnknownAdapter,
    create,
    known_types,
    load_class,
)


def test_unknown_types_fail_loudly() -> None:
    with pytest.raises(UnknownAdapter) as info:
        load_class("traffic", "nginx-plus")
    assert str(info.value) == ("unknown traffic type 'nginx-plus' "
                               "(known: command, fake, gateway-api, haproxy, ingress-nginx, istio, "
                               "local, nginx, smi)")
    assert info.value.exit_code == 2


class Envoy(Adapter):
    class Config(AdapterConfig):
        admin: str

    def set_weight(self, weight: float) -> None:
        self.weight = weight

    def get_weight(self) -> float | None:
        return getattr(self, "weight", None)

    def set_header_route(self, header: str, value: str) -> bool:
        return False


def test_third_party_adapters_come_from_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("novactl_envoy_test")
    module.Envoy = Envoy  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "novactl_envoy_test", module)
    point = metadata.EntryPoint("envoy", "novactl_envoy_test:Envoy", "novactl.traffic")
    real = metadata.entry_points

    def fake_entry_points(**kwargs):
        if kwargs.get("group") == "novactl.traffic":
            return metadata.EntryPoints([point])
        return real(**kwargs)

    monkeypatch.setattr(metadata, "entry_points", fake_entry_points)
    assert "envoy" in known_types("traffic")
    shifter = create("traffic", "envoy", "traffic", {"admin": "http://127.0.0.1:9901"},
                     AdapterContext())
    assert isinstance(shifter, TrafficShifter)
    shifter.set_weight(10)
    assert shifter.get_weight() == 10 and shifter.config.admin == "http://127.0.0.1:9901"
    with pytest.raises(Exception, match="admin"):
        create("traffic", "envoy", "traffic", {}, AdapterContext())


def test_secrets_come_from_the_environment_and_hide_themselves() -> None:
    context = AdapterContext(env={"TOKEN": "s3cr3t"})
    secret = context.secret("TOKEN", adapter="probe")
    assert secret == "s3cr3t" and "s3cr3t" not in repr(secret)
    with pytest.raises(AdapterError, match="environment variable MISSING is not set"):
        context.secret("MISSING", adapter="probe")
