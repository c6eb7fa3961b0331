"""Fixtures of the notify area: a local FCM-compatible server, a real SMTP server, and a Foyer node
configured to use both."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from integrations.push.fake_fcm import FakeFcm, make_service_account
from tests.notify.support import SmtpSink, start_smtp

PROJECT = "foyer-test"


@dataclass
class FcmServer:
    fake: FakeFcm
    info: dict[str, Any]
    base_url: str

    def settings(self) -> dict[str, Any]:
        return {"fcm_credentials": json.dumps(self.info), "fcm_endpoint": f"{self.base_url}/v1/projects",
                "fcm_token_uri": f"{self.base_url}/token"}


@pytest.fixture(scope="session")
def service_account() -> tuple[dict, bytes]:
    # RSA key generation is slow-ish: one key per test session is enough.
    return make_service_account(project_id=PROJECT, token_uri="http://placeholder/token")


@pytest.fixture
async def fcm(aiohttp_server, service_account) -> FcmServer:
    info, public_pem = service_account
    fake = FakeFcm(project_id=PROJECT, public_key_pem=public_pem, client_email=info["client_email"])
    server = await aiohttp_server(fake.app())
    base = str(server.make_url("")).rstrip("/")
    return FcmServer(fake=fake, info={**info, "token_uri": f"{base}/token"}, base_url=base)


@pytest.fixture
def smtp() -> SmtpSink:
    controller, sink, port = start_smtp()
    sink.port = port  # type: ignore[attr-defined]
    yield sink
    controller.stop()


@pytest.fixture
def notify_settings(settings_factory, fcm: FcmServer, smtp: SmtpSink):
    def make(**overrides: Any):
        values: dict[str, Any] = {
            **fcm.settings(),
            "smtp_host": "127.0.0.1", "smtp_port": smtp.port, "smtp_tls": "none",  # type: ignore[attr-defined]
            "email_from": "Foyer Events <events@foyer.test>",
            "public_url": "https://foyer.test",
            "scheduler_interval_seconds": 3600.0,  # tests drive the scheduler by hand
            "push_poll_seconds": 0.2,
            "push_retry_base_seconds": 0.05,
            "email_poll_seconds": 0.2,
            "email_retry_base_seconds": 0.05,
            "argon2_time_cost": 1, "argon2_memory_kib": 8192,
        }
        values.update(overrides)
        return settings_factory(**values)

    return make


@pytest.fixture
async def node(app_factory, notify_settings):
    """A Foyer node wired to the local FCM server and the local SMTP server."""
    return await app_factory(notify_settings())


@pytest.fixture
async def napi(node, http):
    from tests.support.api import Api

    return Api(str(node.make_url("/")), http)


@pytest.fixture
def ndb(node):
    from handlers.api import CORE

    return node.app[CORE].db
