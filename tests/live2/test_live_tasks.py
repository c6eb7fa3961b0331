"""The Locust tasks (loadtests/live_tasks.py) against a real node: every poll kind gets a valid
vote, questions are asked and upvoted, broadcasts are counted — with a plain synchronous
python-socketio client, as Locust's SocketIOUser uses."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import requests
import socketio

from loadtests.live_tasks import EngagementTasks, open_demo_polls
from tests.live2.helpers import bulk_users, create_event, create_session, grant


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []

    def fire(self, *, request_type: str, name: str, response_time: float, response_length: int, exception: Any,
             context: Any) -> None:
        self.calls.append((request_type, name, exception))


class Env:
    def __init__(self) -> None:
        self.events = type("Events", (), {})()
        self.events.request = Recorder()


def run_user(url: str, token: str, event_id: str, session_id: str, organizer_token: str) -> list:
    host = url.rstrip("/")
    org = requests.Session()
    org.headers["Authorization"] = f"Bearer {organizer_token}"
    poll_ids = open_demo_polls(org, host, event_id, session_id)
    env = Env()
    sio = socketio.Client(reconnection=False)
    room = f"session:{session_id}"
    tasks = EngagementTasks(sio, env, session_room=room)
    sio.on("*", lambda event, data=None: tasks.handle(event, data), namespace="/live")
    sio.connect(host, namespaces=["/live"], transports=["websocket"], auth={"token": token}, wait_timeout=10)
    try:
        tasks.on_join(room, sio.call("room:join", {"room": room}, namespace="/live", timeout=10))
        assert set(tasks.polls) == set(poll_ids)
        tasks.ask()
        for _ in range(12):
            tasks.vote()
        deadline = time.monotonic() + 10
        while not tasks.questions and time.monotonic() < deadline:
            time.sleep(0.02)
        tasks.upvote()
        while not any(k == "RECV" for k, _, _ in env.events.request.calls) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        sio.disconnect()
    return env.events.request.calls


async def test_locust_tasks_vote_ask_and_upvote(app_factory, settings_factory, database_url):
    node = await app_factory(settings_factory())
    url = str(node.make_url("/"))
    org, user = await bulk_users(database_url, 2, names=["Org", "Att"])
    event_id = await create_event(database_url, org.id)
    await grant(database_url, event_id, user.id, "attendee")
    session_id = await create_session(database_url, event_id)
    calls = await asyncio.to_thread(run_user, url, user.access_token, event_id, session_id, org.access_token)
    acks = [(name, exc) for kind, name, exc in calls if kind == "WSC"]
    assert ("qa:ask", None) in acks and ("qa:upvote", None) in acks
    assert [exc for name, exc in acks if name == "poll:vote"] == [None] * sum(1 for n, _ in acks if n == "poll:vote")
    assert sum(1 for n, _ in acks if n == "poll:vote") == 12
    assert any(kind == "RECV" and name == "poll:results" for kind, name, _ in calls)
