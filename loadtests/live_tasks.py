"""Q&A and poll engagement for the Locust live-room user (loadtests/live_user.py): ask, upvote,
vote — the state each client learns from join snapshots and room events, the tasks that act on
it, the polls the organizer opens, and client-side rate budgets that keep a correct run clear of
the node's per-user limits.

Used by live_user.py and live_setup.py; nothing here starts a test by itself:

    polls = open_demo_polls(organizer_session, host, event_id, session_id)   # at setup
    engage = EngagementTasks(user, session_room=..., event_room=..., user_id=...)
    engage.on_join(room, ack); engage.handle(event, data)                     # state
    engage.ask(); engage.upvote(); engage.vote()                              # tasks

Every task goes through `user.request(event, payload, expected=...)` (an acked Socket.IO call,
reported to Locust as `WSC <event>` with the ack round trip, a failure carrying the error code
when the ack is `{ok: false}`) and first takes a token from the matching `Budget`; a task without
a token (or without a target: no foreign question to upvote, no open poll left to vote in) sends
nothing and is counted in the end-of-run summary as skipped.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter, deque
from typing import Any

QUESTIONS = ["How does this scale?", "What about offline mode?", "When is the release?", "Any plans for mobile?",
             "Is the code open source?", "How do you test this?", "What was the hardest part?"]
WORDS = ["fast", "Fast!", "fun", "inspiring", "Inspiring", "long", "café", "Cafe", "scalable", "wow"]

# Per load-generator process; live_room.py sends them to the master, live_summary.py prints the summary.
TALLY: Counter[str] = Counter()
# poll id -> [users whose vote was acked, users whose vote is unknown (no ack: timeout/disconnect)]
VOTES: dict[str, list[int]] = {}
# event -> shortest interval (ms) one client saw between two coalesced broadcasts of one poll/session
MIN_GAP: dict[str, float] = {}


class Budget:
    """Client-side sliding window: at most `limit` actions in any `window` seconds. The node's
    limits are GCRA (storage/live_limits.py: a burst of `limit`, refilled over `window`); a
    sequence with at most `limit` actions in every window of `window` seconds always conforms
    to it, so with a little slack for network jitter (`slack`) the node never answers
    `rate_limited` to a client that keeps its budget."""

    def __init__(self, limit: int, window: float, *, slack: float = 0.1) -> None:
        self.limit = max(1, int(limit))
        self.window = window * (1 + slack) + 0.25
        self.times: deque[float] = deque()

    def wait(self) -> float:
        """Seconds until a token is free (0: now)."""
        now = time.monotonic()
        while self.times and now - self.times[0] >= self.window:
            self.times.popleft()
        if len(self.times) < self.limit:
            return 0.0
        return self.window - (now - self.times[0])

    def take(self) -> bool:
        if self.wait() > 0:
            return False
        self.times.append(time.monotonic())
        return True


def create_poll(session: Any, host: str, event_id: str, body: dict[str, Any], *, open_it: bool = True) -> dict:
    """Create a poll as the organizer (`requests.Session` with its bearer token) and open it:
    `POST /api/events/{id}/polls` then `POST /api/polls/{id}/open` (emits `poll:opened`)."""
    r = session.post(f"{host}/api/events/{event_id}/polls", json=body, timeout=30)
    r.raise_for_status()
    poll = r.json()
    if open_it:
        r = session.post(f"{host}/api/polls/{poll['id']}/open", timeout=30)
        r.raise_for_status()
        poll = r.json()
    return poll


def open_demo_polls(session: Any, host: str, event_id: str, session_id: str) -> list[dict[str, str]]:
    """One open poll of each kind in the session room, plus an event-wide single-choice poll in
    the lobby (`event:{id}`). Returns [{id, room, kind}]."""
    bodies = [
        {"kind": "single", "question": "Where are you from?", "options": ["Europe", "Americas", "Asia", "Other"],
         "session_id": session_id},
        {"kind": "multiple", "question": "Which tracks?", "options": ["Web", "Data", "Ops", "Mobile"],
         "max_choices": 2, "allow_change": True, "session_id": session_id},
        {"kind": "rating", "question": "How is the keynote?", "scale_min": 1, "scale_max": 5, "allow_change": True,
         "session_id": session_id},
        {"kind": "word_cloud", "question": "One word for today?", "session_id": session_id},
        {"kind": "quiz", "question": "Year of the first web page?", "options": ["1989", "1991", "1995"],
         "correct": [1], "show_results": "after_close", "session_id": session_id},
        {"kind": "single", "question": "Which day are you here?", "options": ["Day 1", "Day 2", "Both"]},
    ]
    return [{"id": p["id"], "room": p["room"], "kind": p["kind"]}
            for p in (create_poll(session, host, event_id, body) for body in bodies)]


class EngagementTasks:
    """Per-user state: the visible questions of the session (own ones excluded from upvoting) and
    the open polls of the user's rooms, from join snapshots and room events; the tasks."""

    def __init__(self, user: Any, *, session_room: str, event_room: str, user_id: str) -> None:
        self.user = user
        self.room = session_room
        self.rooms = {session_room, event_room}
        self.user_id = user_id
        self.questions: deque[str] = deque(maxlen=500)
        self.own: set[str] = set()
        self.upvoted: set[str] = set()
        self.polls: dict[str, dict[str, Any]] = {}
        self.voted: dict[str, str] = {}  # poll id -> "acked" | "unknown" | "refused"
        self._last_broadcast: dict[str, float] = {}

    # --- state from the rooms ---------------------------------------------------------------------

    def on_join(self, room: str, ack: dict[str, Any]) -> None:
        """A fresh join or a resync: take the state from the snapshot (a replay's history goes
        through `handle`, event by event, like live events)."""
        snapshot = ack.get("snapshot")
        if snapshot is None:
            return
        if room == self.room:
            self.questions.clear()
            for q in (snapshot.get("qa") or {}).get("questions", []):
                self._question(q)
        for poll_id in [p for p, poll in self.polls.items() if poll.get("room") == room]:
            del self.polls[poll_id]
        for poll in (snapshot.get("polls") or {}).get("polls", []):
            if poll.get("room") == room and poll.get("state") == "open":
                self.polls[poll["id"]] = poll

    def handle(self, event: str, data: dict[str, Any], *, live: bool = True) -> None:
        room = data.get("room")
        if room not in self.rooms:
            return
        if event == "qa:question" and room == self.room:
            self._question(data)
        elif event == "qa:dismissed" and data.get("id"):
            try:
                self.questions.remove(data["id"])
            except ValueError:
                pass
        elif event == "poll:opened":
            poll = data["poll"]
            if poll.get("room") == room:
                self.polls[poll["id"]] = poll
        elif event == "poll:closed":
            self.polls.pop(data["poll_id"], None)
        elif event in ("poll:results", "qa:votes") and live:
            # coalesced count broadcasts (no timestamp: counted, not timed); the shortest interval
            # between two for one poll / session at one client goes into the summary
            key = f"{event}:{data.get('poll_id', room)}"
            now = time.monotonic()
            if key in self._last_broadcast:
                gap = (now - self._last_broadcast[key]) * 1000
                MIN_GAP[event] = min(MIN_GAP.get(event, gap), gap)
            self._last_broadcast[key] = now
            self.user.fire("RECV", event, 0)

    def _question(self, q: dict[str, Any]) -> None:
        author = q.get("author") or {}
        if author.get("id") == self.user_id:
            self.own.add(q["id"])
        elif q["id"] not in self.questions:
            self.questions.append(q["id"])

    # --- tasks ------------------------------------------------------------------------------------

    def ask(self) -> None:
        if not self.user.budgets["qa_ask"].take():
            TALLY["skipped qa:ask (client budget)"] += 1
            return

        def asked(ack: dict[str, Any]) -> None:
            self.own.add(ack["id"])
            TALLY[f"questions {ack.get('status', '?')}"] += 1

        self.user.request("qa:ask", {"room": self.room, "text": random.choice(QUESTIONS),
                                     "client_id": uuid.uuid4().hex, "anonymous": random.random() < 0.2},
                          on_ack=asked)

    def upvote(self) -> None:
        fresh = [q for q in self.questions if q not in self.upvoted and q not in self.own]
        if not fresh:
            TALLY["skipped qa:upvote (no foreign question yet)"] += 1
            return
        if not self.user.budgets["qa_vote"].take():
            TALLY["skipped qa:upvote (client budget)"] += 1
            return
        qid = random.choice(fresh[-50:])
        self.upvoted.add(qid)
        self.user.request("qa:upvote", {"room": self.room, "id": qid},
                          on_ack=lambda ack: TALLY.update(["upvotes counted" if ack.get("changed") else
                                                           "upvotes unchanged"]))

    def vote(self) -> None:
        choices = [p for p in self.polls.values() if p["id"] not in self.voted or p.get("allow_change")]
        if not choices:
            TALLY["skipped poll:vote (no open poll left to vote in)"] += 1
            return
        if not self.user.budgets["poll_vote"].take():
            TALLY["skipped poll:vote (client budget)"] += 1
            return
        poll = random.choice(choices)
        poll_id = poll["id"]
        tally = VOTES.setdefault(poll_id, [0, 0])
        state = self.voted.get(poll_id)  # None | "unknown" (may have counted) | "acked" | "refused"
        if state in (None, "refused"):
            # in flight: counts as "may have counted" until its ack says otherwise (a user stopped
            # mid-call never sees the ack, but the server may well have counted the vote)
            tally[1] += 1
            self.voted[poll_id] = "unknown"

        def acked(ack: dict[str, Any]) -> None:
            if self.voted.get(poll_id) != "acked":
                tally[0] += 1
                tally[1] -= 1
                self.voted[poll_id] = "acked"

        ack = self.user.request("poll:vote", {"room": poll["room"], "poll_id": poll_id,
                                              "client_id": uuid.uuid4().hex, **vote_for(poll)},
                                on_ack=acked, expected=("poll_closed",))
        if isinstance(ack, dict) and not ack.get("ok"):
            if state in (None, "refused") and self.voted.get(poll_id) == "unknown":
                tally[1] -= 1  # refused: this vote did not count
                self.voted[poll_id] = "refused"
            if (ack.get("error") or {}).get("code") == "poll_closed":
                self.polls.pop(poll_id, None)


def vote_for(poll: dict[str, Any]) -> dict[str, Any]:
    """A valid `poll:vote` field for a poll as described in `poll:opened` / join snapshots."""
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
