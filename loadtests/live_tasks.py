"""Q&A and poll tasks for the Locust live-room user (loadtests/live_room.py): ask, upvote, vote —
with ack round trips and result-broadcast rates as Locust statistics.

Wiring (in live_room.py):

    from loadtests.live_tasks import EngagementTasks, open_demo_polls

    # setup_event(), with the organizer's requests.Session `s`, after publishing:
    ids["poll_ids"] = open_demo_polls(s, host, event_id, session_id)

    class LiveRoomUser(SocketIOUser):
        def on_start(self):
            ...
            self.engage = EngagementTasks(self.sio, self.environment, session_room=f"session:{session_id}")
        def _rejoin(self):             # for every room:join ack
            ... self.engage.on_join(room, ack)
        def _any_event(self, event, data=None):
            ... self.engage.handle(event, data)
        @task(2)
        def ask(self): self.engage.ask()
        @task(4)
        def upvote(self): self.engage.upvote()
        @task(4)
        def vote(self): self.engage.vote()

Statistics: `WSC qa:ask`, `WSC qa:upvote`, `WSC poll:vote` are ack round trips (failures carry
the error code; `already_voted` is not a failure: a user votes once per poll); `RECV poll:results`
and `RECV qa:votes` count the coalesced broadcasts each client receives (their number per second
stays at `poll_result_max_hz` / `qa_votes_max_hz` per poll or session, however many vote), with
the time since the previous one as response time. The node needs rate limits that fit the run
(`FOYER_QA_ASK_RATE_LIMIT`, `FOYER_LIVE_ACTION_RATE_LIMIT`).
"""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

NAMESPACE = "/live"
QUESTIONS = ["How does this scale?", "What about offline mode?", "When is the release?", "Any plans for mobile?",
             "Is the code open source?", "How do you test this?", "What was the hardest part?"]
WORDS = ["fast", "Fast!", "fun", "inspiring", "Inspiring", "long", "café", "Cafe", "scalable", "wow"]
BENIGN = {"already_voted", "poll_closed"}


def open_demo_polls(session: Any, host: str, event_id: str, session_id: str) -> list[str]:
    """Create and open one poll of each kind in the session (organizer's `requests.Session`)."""
    bodies = [
        {"kind": "single", "question": "Where are you from?", "options": ["Europe", "Americas", "Asia", "Other"]},
        {"kind": "multiple", "question": "Which tracks?", "options": ["Web", "Data", "Ops", "Mobile"],
         "max_choices": 2, "allow_change": True},
        {"kind": "rating", "question": "How is the keynote?", "scale_min": 1, "scale_max": 5, "allow_change": True},
        {"kind": "word_cloud", "question": "One word for today?"},
        {"kind": "quiz", "question": "Year of the first web page?", "options": ["1989", "1991", "1995"],
         "correct": [1], "show_results": "after_close"},
    ]
    ids = []
    for body in bodies:
        r = session.post(f"{host}/api/events/{event_id}/polls", json={**body, "session_id": session_id})
        r.raise_for_status()
        poll_id = r.json()["id"]
        session.post(f"{host}/api/polls/{poll_id}/open").raise_for_status()
        ids.append(poll_id)
    return ids


class EngagementTasks:
    """Per-user state: the questions and open polls this client knows of (from join snapshots
    and room events), and the tasks that act on them."""

    def __init__(self, sio: Any, environment: Any, *, session_room: str) -> None:
        self.sio = sio
        self.environment = environment
        self.room = session_room
        self.questions: list[str] = []
        self.polls: dict[str, dict[str, Any]] = {}
        self.voted: set[str] = set()
        self.upvoted: set[str] = set()
        self._last_broadcast: dict[str, float] = {}

    # --- state from the room --------------------------------------------------------------------

    def on_join(self, room: str, ack: dict[str, Any]) -> None:
        snapshot = ack.get("snapshot") or {}
        if room == self.room and snapshot.get("qa"):
            self.questions = [q["id"] for q in snapshot["qa"].get("questions", [])][:200]
        for poll in (snapshot.get("polls") or {}).get("polls", []):
            if poll.get("room") == self.room and poll.get("state") == "open":
                self.polls[poll["id"]] = poll
        for item in ack.get("history", []):
            self.handle(item.get("event", ""), item.get("data"))

    def handle(self, event: str, data: Any) -> None:
        if not isinstance(data, dict) or data.get("room") != self.room:
            return
        if event == "qa:question" and len(self.questions) < 500:
            self.questions.append(data["id"])
        elif event == "poll:opened":
            self.polls[data["poll"]["id"]] = data["poll"]
        elif event == "poll:closed":
            self.polls.pop(data["poll_id"], None)
        elif event in ("poll:results", "qa:votes"):
            key = f"{event}:{data.get('poll_id', '')}"
            now = time.monotonic()
            since = (now - self._last_broadcast[key]) * 1000 if key in self._last_broadcast else 0.0
            self._last_broadcast[key] = now
            self._fire("RECV", event, since, None)

    # --- tasks ------------------------------------------------------------------------------------

    def ask(self) -> None:
        self._call("qa:ask", {"room": self.room, "text": random.choice(QUESTIONS), "client_id": uuid.uuid4().hex,
                              "anonymous": random.random() < 0.2})

    def upvote(self) -> None:
        fresh = [q for q in self.questions if q not in self.upvoted]
        if not fresh:
            return
        qid = random.choice(fresh[-50:])
        self.upvoted.add(qid)
        self._call("qa:upvote", {"room": self.room, "id": qid})

    def vote(self) -> None:
        choices = [p for p in self.polls.values() if p["id"] not in self.voted or p.get("allow_change")]
        if not choices:
            return
        poll = random.choice(choices)
        self.voted.add(poll["id"])
        self._call("poll:vote", {"room": self.room, "poll_id": poll["id"], "client_id": uuid.uuid4().hex,
                                 **vote_for(poll)})

    # --- plumbing ---------------------------------------------------------------------------------

    def _call(self, event: str, payload: dict[str, Any]) -> None:
        started = time.perf_counter()
        try:
            ack = self.sio.call(event, payload, namespace=NAMESPACE, timeout=30)
        except Exception as exc:  # timeouts, disconnects
            self._fire("WSC", event, (time.perf_counter() - started) * 1000, exc)
            return
        elapsed = (time.perf_counter() - started) * 1000
        error = None
        if not isinstance(ack, dict) or (not ack.get("ok") and ack.get("error", {}).get("code") not in BENIGN):
            error = Exception((ack or {}).get("error", {}).get("code", "no ack") if isinstance(ack, dict) else "no ack")
        self._fire("WSC", event, elapsed, error)

    def _fire(self, kind: str, name: str, ms: float, exc: Exception | None) -> None:
        self.environment.events.request.fire(request_type=kind, name=name, response_time=ms, response_length=0,
                                             exception=exc, context={})


def vote_for(poll: dict[str, Any]) -> dict[str, Any]:
    """A valid vote for a poll as described in `poll:opened` / snapshots."""
    kind = poll["kind"]
    ids = [o["id"] for o in poll.get("options", [])]
    if kind == "single" or (kind == "quiz" and not poll.get("multiple")):
        return {"option": random.choice(ids)}
    if kind in ("multiple", "quiz"):
        k = random.randint(1, poll.get("max_choices") or len(ids))
        return {"options": random.sample(ids, k)}
    if kind == "rating":
        return {"value": random.randint(poll["scale"]["min"], poll["scale"]["max"])}
    return {"text": random.choice(WORDS)}
