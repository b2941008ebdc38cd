"""The webhook and log notifiers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from pydantic import ValidationError

from novactl._clock import FakeClock
from novactl._errors import NotifyError
from novactl.adapters._base import AdapterContext, Message
from novactl.adapters._registry import create
from novactl.adapters.log import LogNotifier
from novactl.adapters.webhook import MAX_WAIT, WebhookNotifier

URL = "https://hooks.example.com/services/T000/B000/XXXXsecretXXXX"
TOKEN = "tok-abcdef-123456"

MESSAGE = Message(
    id="r1-7-slack", event="rollback.started", severity="critical",
    title="Rolling back", text="error_rate 2.1% > 1% for 5m", rollout="novacron-v3",
    at=1_767_225_600.0, stage="canary", fields={"error_rate": 0.021, "weight": 10},
)


def context(**env: str) -> AdapterContext:
    return AdapterContext(plan_name="novacron-v3", clock=FakeClock(),
                          env={"HOOK_URL": URL, "HOOK_TOKEN": TOKEN, **env})


def webhook(ctx: AdapterContext | None = None, **config: Any) -> WebhookNotifier:
    config.setdefault("url_env", "HOOK_URL")
    return WebhookNotifier("slack", config, ctx or context())


# ---------------------------------------------------------------- webhook


@respx.mock
def test_json_payload_and_headers() -> None:
    route = respx.post(URL).mock(return_value=httpx.Response(200))
    notifier = webhook(token_env="HOOK_TOKEN", headers={"X-Team": "payments"})
    notifier.notify(MESSAGE)
    request = route.calls.last.request
    assert json.loads(request.content) == {**MESSAGE.to_dict(), "source": "novactl"}
    assert request.headers["Idempotency-Key"] == "r1-7-slack"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["X-Team"] == "payments"
    assert request.headers["Content-Type"] == "application/json"
    notifier.close()


@respx.mock
def test_slack_payload() -> None:
    route = respx.post(URL).mock(return_value=httpx.Response(200, text="ok"))
    webhook(format="slack").notify(MESSAGE)
    body = json.loads(route.calls.last.request.content)
    assert body["text"].startswith(":rotating_light: [critical] Rolling back (novacron-v3")
    (attachment,) = body["attachments"]
    assert attachment["color"] == "#E01E5A"
    section, context_block, fields = attachment["blocks"]
    assert "*Rolling back*" in section["text"]["text"]
    assert "error_rate 2.1% &gt; 1% for 5m" in section["text"]["text"]
    where = context_block["elements"][0]["text"]
    assert "novacron-v3" in where and "stage *canary*" in where
    assert "rollback.started" in where
    assert [f["text"] for f in fields["fields"]] == ["*error_rate*\n0.021", "*weight*\n10"]


@respx.mock
def test_retries_on_503_then_succeeds_without_real_sleeping() -> None:
    route = respx.post(URL).mock(side_effect=[httpx.Response(503), httpx.Response(503),
                                              httpx.Response(204)])
    ctx = context()
    start = ctx.clock.now()
    webhook(ctx, backoff="1s").notify(MESSAGE)
    assert route.call_count == 3
    assert ctx.clock.now() - start == pytest.approx(1 + 2)  # backoff doubles
    keys = {call.request.headers["Idempotency-Key"] for call in route.calls}
    assert keys == {"r1-7-slack"}  # the same key on every attempt


@respx.mock
def test_retry_after_is_honoured_within_bounds() -> None:
    route = respx.post(URL).mock(side_effect=[
        httpx.Response(429, headers={"Retry-After": "3"}),
        httpx.Response(429, headers={"Retry-After": "3600"}),
        httpx.Response(200),
    ])
    ctx = context()
    start = ctx.clock.now()
    webhook(ctx, backoff=0.1).notify(MESSAGE)
    assert route.call_count == 3
    assert ctx.clock.now() - start == pytest.approx(3 + MAX_WAIT)


@respx.mock
def test_no_retry_on_400() -> None:
    route = respx.post(URL).mock(return_value=httpx.Response(400, text="invalid_payload"))
    with pytest.raises(NotifyError, match=r"HTTP 400 \(not retried\): invalid_payload"):
        webhook().notify(MESSAGE)
    assert route.call_count == 1


@respx.mock
def test_redirects_are_not_followed() -> None:
    respx.post(URL).mock(return_value=httpx.Response(301, headers={"Location": URL + "/x"}))
    with pytest.raises(NotifyError, match="HTTP 301: redirects are not followed"):
        webhook().notify(MESSAGE)


@respx.mock
def test_giving_up_never_shows_url_or_token() -> None:
    route = respx.post(URL).mock(return_value=httpx.Response(503, text=f"bad {URL}"))
    with pytest.raises(NotifyError) as err:
        webhook(token_env="HOOK_TOKEN", retries=2).notify(MESSAGE)
    assert route.call_count == 3
    message = str(err.value)
    assert "HTTP 503" in message and "3 attempts" in message
    for secret in (URL, TOKEN, "XXXXsecretXXXX", "hooks.example.com"):
        assert secret not in message


@respx.mock
def test_transport_errors_are_retried_and_redacted() -> None:
    route = respx.post(URL).mock(side_effect=httpx.ConnectError(f"cannot reach {URL}"))
    with pytest.raises(NotifyError) as err:
        webhook(token_env="HOOK_TOKEN", retries=1, backoff=0).notify(MESSAGE)
    assert route.call_count == 2
    message = str(err.value)
    assert "transport error (ConnectError: cannot reach ***)" in message
    assert "secret" not in message and TOKEN not in message


@respx.mock
def test_plain_url_config_and_registry() -> None:
    route = respx.post(URL).mock(return_value=httpx.Response(200))
    notifier = create("notifier", "webhook", "hook", {"url": URL}, context())
    notifier.notify(MESSAGE)
    assert route.called
    assert URL not in repr(notifier.config)


def test_missing_url_env_is_a_clear_error() -> None:
    notifier = webhook(AdapterContext(env={}))
    with pytest.raises(NotifyError, match="environment variable HOOK_URL is not set"):
        notifier.notify(MESSAGE)
    with pytest.raises(NotifyError, match="HOOK_TOKEN is not set"):
        webhook(AdapterContext(env={"HOOK_URL": URL}), token_env="HOOK_TOKEN").notify(MESSAGE)


def test_url_env_must_hold_an_http_url() -> None:
    notifier = webhook(context(HOOK_URL="ftp://hooks.example.com/secret-path"))
    with pytest.raises(NotifyError) as err:
        notifier.notify(MESSAGE)
    assert "not an http(s) URL" in str(err.value)
    assert "secret-path" not in str(err.value)


@pytest.mark.parametrize(("config", "message"), [
    ({}, "exactly one of url and url_env"),
    ({"url": URL, "url_env": "HOOK_URL"}, "exactly one of url and url_env"),
    ({"url": "hooks.example.com/XXXXsecretXXXX"}, "must start with http"),
    ({"url_env": "H", "format": "teams"}, "json"),
    ({"url_env": "H", "retries": -1}, "greater than or equal to 0"),
    ({"url_env": "H", "headers": {"Idempotency-Key": "x"}}, "set by novactl"),
    ({"url_env": "H", "token_env": "T", "headers": {"authorization": "x"}}, "not both"),
])
def test_webhook_config_validation(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message) as err:
        WebhookNotifier.Config.model_validate(config)
    assert "XXXXsecretXXXX" not in str(err.value)


def test_client_is_lazy_and_closed() -> None:
    notifier = webhook()
    assert notifier._client is None
    client = notifier.client
    notifier.close()
    assert client.is_closed and notifier._client is None
    notifier.close()  # twice is fine


# ---------------------------------------------------------------- log


def test_log_text_lines_relative_to_state_dir(tmp_path: Path) -> None:
    ctx = AdapterContext(base_dir=tmp_path / "plan", state_dir=tmp_path / "state")
    notifier = LogNotifier("log", {"path": "logs/notify.log"}, ctx)
    notifier.notify(MESSAGE)
    quiet = Message(id="2", event="stage.started", severity="info", title="Stage\nbegins",
                    text="", rollout="novacron-v3", at=1_767_225_660.0)
    notifier.notify(quiet)
    lines = (tmp_path / "state" / "logs" / "notify.log").read_text().splitlines()
    assert lines == [
        "2026-01-01T00:00:00Z [critical] rollback.started novacron-v3 stage=canary: "
        "Rolling back — error_rate 2.1% > 1% for 5m",
        "2026-01-01T00:01:00Z [info] stage.started novacron-v3: Stage begins",
    ]


def test_log_json_lines_relative_to_plan_dir(tmp_path: Path) -> None:
    notifier = create("notifier", "log", "log", {"path": "notify.jsonl", "format": "json"},
                      AdapterContext(base_dir=tmp_path))
    notifier.notify(MESSAGE)
    notifier.notify(MESSAGE)
    lines = (tmp_path / "notify.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [MESSAGE.to_dict()] * 2


def test_log_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    LogNotifier("log").notify(MESSAGE)
    assert capsys.readouterr().err.startswith("2026-01-01T00:00:00Z [critical] rollback.started")


def test_log_write_failure_is_a_notify_error(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    notifier = LogNotifier("log", {"path": str(tmp_path / "taken")}, AdapterContext())
    with pytest.raises(NotifyError, match="cannot write to"):
        notifier.notify(MESSAGE)


def test_log_config_validation() -> None:
    with pytest.raises(ValidationError):
        LogNotifier.Config.model_validate({"format": "yaml"})
