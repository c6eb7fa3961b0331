"""Builders for events, sessions and speakers over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.api import Api, User

BASE = datetime(2031, 5, 12, 8, 0, tzinfo=UTC)


def at(hours: float, day: int = 0) -> str:
    return (BASE + timedelta(days=day, hours=hours)).isoformat()


def event_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "PyCon Foyer",
        "description": "A conference about async Python.",
        "starts_at": at(0),
        "ends_at": at(10, day=1),
        "timezone": "Europe/Berlin",
        "venue": {"name": "Congress Hall", "address": "Alexanderplatz 1", "city": "Berlin", "country": "DE",
                  "lat": 52.52, "lon": 13.41},
        "tags": ["python", "async"],
    }
    body.update(overrides)
    return body


async def create_event(api: Api, user: User, **overrides: Any) -> dict[str, Any]:
    status, body = await api.post("/api/events", user=user, json=event_body(**overrides))
    assert status == 201, (status, body)
    return body


async def published_event(api: Api, owner: User, **overrides: Any) -> dict[str, Any]:
    """`owner` must have 2FA enabled."""
    event = await create_event(api, owner, **overrides)
    status, body = await api.post(f"/api/events/{event['id']}/publish", user=owner)
    assert status == 200, (status, body)
    return body


async def add_session(api: Api, user: User, event_id: str, **overrides: Any) -> dict[str, Any]:
    body = {"title": "Talk", "starts_at": at(1), "ends_at": at(2), "room": "Hall A"}
    body.update(overrides)
    status, out = await api.post(f"/api/events/{event_id}/sessions", user=user, json=body)
    assert status == 201, (status, out)
    return out


async def add_speaker(api: Api, user: User, event_id: str, **overrides: Any) -> dict[str, Any]:
    body = {"name": "Grace Hopper", "bio": "Compilers."}
    body.update(overrides)
    status, out = await api.post(f"/api/events/{event_id}/speakers", user=user, json=body)
    assert status == 201, (status, out)
    return out


def errors_of(body: dict[str, Any]) -> dict[str, str]:
    return {d["field"]: d["message"] for d in body["error"].get("details") or []}
