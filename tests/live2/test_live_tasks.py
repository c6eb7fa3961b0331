"""The Locust tasks (loadtests/live_tasks.py) against a real node: every poll kind gets a valid
vote, questions are asked and upvoted, broadcasts are counted — with a plain synchronous
python-socketio client, as Locust's SocketIOUser uses."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import requests
import socketio

from loadtests.live_tasks import Budget, EngagementTasks, open_demo_polls
from tests.live2.helpers import bulk_users, create_event, create_session, grant


class TaskUser:
    """What EngagementTasks needs from the Locust user (loadtests/live_user.py), over a plain
    synchronous python-socketio client: acked requests, reports, client-side budgets."""

    def __init__(self, sio: socketio.Client) -> None:
        self.sio = sio
        self.calls: list[tuple[str, str, Any]] = []
        self.budgets = {name: Budget(1000, 1.0) for name in ("qa_ask", "qa_vote", "poll_vote", "chat", "act")}

    def fire(self, kind: str, name: str, ms: float, exc: Exception | None = None, length: int = 0) -> None:
        self.calls.append((kind, name, exc))

    def request(self, event: str, payload: dict[str, Any], *, on_ack: Any = None, expected: tuple[str, ...] = (),
                name: str | None = None, timeout: float = 10.0) -> dict[str, Any] | None:
        ack = self.sio.call(event, payload, namespace="/live", timeout=timeout)
        error = None if ack.get("ok") else (ack.get("error") or {}).get("code", "error")
        self.fire("WSC", name or event, 0, None if error is None or error in expected else RuntimeError(error))
        if error is None and on_ack is not None:
            on_ack(ack)
        return ack


def run_user(url: str, token: str, user_id: str, event_id: str, session_id: str, organizer_token: str) -> list:
    host = url.rstrip("/")
    org = requests.Session()
    org.headers["Authorization"] = f"Bearer {organizer_token}"
    polls = open_demo_polls(org, host, event_id, session_id)
    sio = socketio.Client(reconnection=False)
    user = TaskUser(sio)
    room, lobby = f"session:{session_id}", f"event:{event_id}"
    tasks = EngagementTasks(user, session_room=room, event_room=lobby, user_id=user_id)
    sio.on("*", lambda event, data=None: tasks.handle(event, data or {}), namespace="/live")
    sio.connect(host, namespaces=["/live"], transports=["websocket"], auth={"token": token}, wait_timeout=10)
    try:
        for r in (room, lobby):
            tasks.on_join(r, sio.call("room:join", {"room": r}, namespace="/live", timeout=10))
        assert set(tasks.polls) == {p["id"] for p in polls}
        tasks.ask()
        for _ in range(12):
            tasks.vote()
        deadline = time.monotonic() + 10
        while not any(k == "RECV" for k, _, _ in user.calls) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        sio.disconnect()
    return user.calls


def run_upvoter(url: str, token: str, user_id: str, session_id: str, event_id: str) -> list:
    """A second attendee sees the first one's question (join snapshot) and upvotes it."""
    sio = socketio.Client(reconnection=False)
    user = TaskUser(sio)
    room = f"session:{session_id}"
    tasks = EngagementTasks(user, session_room=room, event_room=f"event:{event_id}", user_id=user_id)
    sio.connect(url.rstrip("/"), namespaces=["/live"], transports=["websocket"], auth={"token": token},
                wait_timeout=10)
    try:
        tasks.on_join(room, sio.call("room:join", {"room": room}, namespace="/live", timeout=10))
        tasks.upvote()
    finally:
        sio.disconnect()
    return user.calls


async def test_locust_tasks_vote_ask_and_upvote(app_factory, settings_factory, database_url):
    node = await app_factory(settings_factory())
    url = str(node.make_url("/"))
    org, user, other = await bulk_users(database_url, 3, names=["Org", "Att", "Other"])
    event_id = await create_event(database_url, org.id)
    await grant(database_url, event_id, user.id, "attendee")
    await grant(database_url, event_id, other.id, "attendee")
    session_id = await create_session(database_url, event_id)
    calls = await asyncio.to_thread(run_user, url, user.access_token, str(user.id), event_id, session_id,
                                    org.access_token)
    acks = [(name, exc) for kind, name, exc in calls if kind == "WSC"]
    assert ("qa:ask", None) in acks
    votes = [exc for name, exc in acks if name == "poll:vote"]
    assert votes and votes == [None] * len(votes)  # every kind got a valid vote (12 tries over the open polls)
    assert any(kind == "RECV" and name == "poll:results" for kind, name, _ in calls)
    upvotes = await asyncio.to_thread(run_upvoter, url, other.access_token, str(other.id), session_id, event_id)
    assert [(kind, name, exc) for kind, name, exc in upvotes if kind == "WSC"] == [("WSC", "qa:upvote", None)]
