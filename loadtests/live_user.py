"""The Locust live-room user (loadtests/live_room.py): `LiveRoomUser` refreshes its token,
connects a Socket.IO client (WebSocket only) to /live, joins the event lobby and the session,
then chats, reacts, asks, upvotes and votes in bursts (live_tasks.EngagementTasks for Q&A and
polls). `RoomSeq` checks that every durable event of a room arrives exactly once, in order;
`ReconnectingClient` keeps python-socketio's reconnect loop going after a failed attempt.
"""

from __future__ import annotations

import base64
import json
import random
import time
import uuid
from collections import deque
from typing import Any

import gevent
import gevent.event
import socketio
from locust import task
from locust.contrib.socketio import SocketIOClient, SocketIOUser
from locust.exception import StopUser

try:
    from loadtests.live_state import ACCOUNTS, EPHEMERAL, NAMESPACE, SETUP, in_burst, next_burst_in
    from loadtests.live_tasks import TALLY, Budget, EngagementTasks
except ImportError:  # run from another directory: Locust puts the locustfile's directory on sys.path
    from live_state import ACCOUNTS, EPHEMERAL, NAMESPACE, SETUP, in_burst, next_burst_in  # type: ignore
    from live_tasks import TALLY, Budget, EngagementTasks  # type: ignore


# ------------------------------------------------------------------------------------------------
# Per-room sequence check
# ------------------------------------------------------------------------------------------------

class RoomSeq:
    """Every durable event of a room after the join ack's seq exactly once, in order."""

    def __init__(self, room: str, user: LiveRoomUser) -> None:
        self.room = room
        self.user = user
        self.last: int | None = None
        self.missing: set[int] = set()

    def reset(self, seq: int) -> None:
        self.last = seq
        self.missing.clear()

    def fresh(self, seq: int) -> bool:
        """Not received yet (a replay may repeat events that arrived just before its ack)."""
        return self.last is None or seq > self.last or seq in self.missing

    def seen(self, seq: int) -> None:
        last = self.last
        if last is None:
            self.last = seq
        elif seq == last + 1:
            self.last = seq
        elif seq > last + 1:
            n = seq - last - 1
            if n <= 100_000:
                self.missing.update(range(last + 1, seq))
            TALLY["seq gaps"] += 1
            TALLY["seq missing events"] += n
            self.user.fire("SEQ", "gap", 0, Exception(f"missed {n} event(s) before seq {seq}"), length=n)
            self.last = seq
        elif seq in self.missing:
            self.missing.discard(seq)
            TALLY["seq out-of-order"] += 1
            TALLY["seq missing events"] -= 1
            self.user.fire("SEQ", "out-of-order", 0, Exception(f"seq {seq} after {last}"))
        else:
            TALLY["seq duplicates"] += 1
            self.user.fire("SEQ", "duplicate", 0, Exception(f"seq {seq} again (last {last})"))


# ------------------------------------------------------------------------------------------------
# The user
# ------------------------------------------------------------------------------------------------

class ReconnectingClient(SocketIOClient):
    """locust.contrib.socketio's client reports `WS connect` but swallows a failed connect; python-
    socketio's reconnect loop then takes the first failed attempt for a success and stops trying.
    This one reports the attempt and lets the error through, so reconnection goes on."""

    def connect(self, *args: Any, **kwargs: Any) -> None:
        started = time.perf_counter()
        try:
            socketio.Client.connect(self, *args, **kwargs)
        except Exception as exc:
            self.request_event.fire(request_type="WS", name="connect", response_time=(time.perf_counter() - started)
                                    * 1000, response_length=0, exception=exc, context={})
            raise
        self.request_event.fire(request_type="WS", name="connect", response_time=(time.perf_counter() - started)
                                * 1000, response_length=0, exception=None, context={})


class LiveRoomUser(SocketIOUser):
    options = {"reconnection": True, "reconnection_delay": 0.5, "reconnection_delay_max": 5}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # replace the contrib client (its idle wait() greenlet ends by itself: it never connected)
        self.sio = ReconnectingClient(self.environment.events.request, **self.options)

    def wait_time(self) -> float:
        opts = self.environment.parsed_options
        if in_burst(opts):
            return random.uniform(1, 4)
        # between bursts: now and then; never sleep through the next burst
        return min(random.uniform(15, 45), next_burst_in(opts) + random.uniform(0, 1))

    # --- plumbing -------------------------------------------------------------------------------

    def fire(self, kind: str, name: str, ms: float, exc: Exception | None = None, length: int = 0) -> None:
        self.environment.events.request.fire(request_type=kind, name=name, response_time=ms, response_length=length,
                                             exception=exc, context={})

    def request(self, event: str, payload: dict[str, Any], *, on_ack: Any = None, expected: tuple[str, ...] = (),
                name: str | None = None, timeout: float = 30.0) -> dict[str, Any] | None:
        """Emit with an ack callback; report `WSC <name>` with the ack round trip (a failure with the
        error code on `{ok: false}`, except `expected` codes). `on_ack(ack)` runs for `ok` acks in
        the client's receive loop, before any later packet is handled (so a join's seq and replay
        are applied before the events that follow them). Returns the ack, or None without one."""
        name = name or event
        done = gevent.event.Event()
        box: dict[str, Any] = {}
        started = time.perf_counter()

        def callback(*args: Any) -> None:
            if box.get("abandoned"):
                TALLY[f"late acks ({event})"] += 1
                return
            box["ms"] = (time.perf_counter() - started) * 1000
            box["ack"] = ack = args[0] if args else None
            try:
                if on_ack is not None and isinstance(ack, dict) and ack.get("ok"):
                    on_ack(ack)
            finally:
                done.set()

        try:
            socketio.Client.emit(self.sio, event, payload, namespace=NAMESPACE, callback=callback)
        except Exception as exc:  # not connected
            self.fire("WSC", name, (time.perf_counter() - started) * 1000, exc)
            return None
        if not done.wait(timeout):
            box["abandoned"] = True
            self.fire("WSC", name, timeout * 1000, Exception("no ack (timeout)"))
            return None
        ack = box.get("ack")
        if isinstance(ack, dict) and ack.get("ok"):
            self.fire("WSC", name, box["ms"])
            return ack
        code = str((ack.get("error") or {}).get("code")) if isinstance(ack, dict) else "malformed ack"
        TALLY[f"error acks {event}: {code}"] += 1
        if code in expected:
            self.fire("WSC", f"{name} [{code}, expected]", box["ms"])
        else:
            self.fire("WSC", name, box["ms"], Exception(code))
        return ack

    def _token(self) -> dict[str, str]:
        """Socket.IO auth for (re)connects: a fresh access token when the current one is old."""
        if time.monotonic() - self.token_at > 600 and self.refresh_token:
            self._refresh()
        return {"token": self.token}

    def _refresh(self) -> bool:
        import requests

        started = time.perf_counter()
        try:
            r = requests.post(f"{self.host}/api/auth/refresh", json={"refresh_token": self.refresh_token}, timeout=30)
            r.raise_for_status()
        except Exception as exc:
            self.fire("HTTP", "refresh", (time.perf_counter() - started) * 1000, exc)
            return False
        self.fire("HTTP", "refresh", (time.perf_counter() - started) * 1000)
        body = r.json()
        self.token, self.refresh_token, self.token_at = body["access_token"], body["refresh_token"], time.monotonic()
        return True

    # --- start, stop ----------------------------------------------------------------------------

    def on_start(self) -> None:
        import requests

        opts = self.environment.parsed_options
        self.ready = False
        self.stopping = False
        if not SETUP:
            raise StopUser()
        self.token_at = 0.0
        if ACCOUNTS:
            account = ACCOUNTS.pop()
            self.refresh_token = account["refresh_token"]
            if not self._refresh():
                raise StopUser()
            self.user_id = account.get("user_id") or jwt_sub(self.token)
        else:  # no accounts left: sign up now (slow: argon2 on the server)
            started = time.perf_counter()
            r = requests.post(f"{self.host}/api/auth/register", json={
                "email": f"attendee-{uuid.uuid4().hex[:12]}@loadtest.example.org",
                "password": "keynote attendee pw", "name": "Attendee"}, timeout=60)
            self.fire("HTTP", "register", (time.perf_counter() - started) * 1000,
                      None if r.status_code == 201 else Exception(f"HTTP {r.status_code}"))
            if r.status_code != 201:
                raise StopUser()
            body = r.json()
            self.token, self.refresh_token, self.token_at = body["access_token"], body["refresh_token"], time.monotonic()
            self.user_id = body["user"]["id"]
        event_room = f"event:{SETUP['event_id']}"
        self.rooms = [event_room]
        if SETUP.get("session_id"):
            self.rooms.append(f"session:{SETUP['session_id']}")
        self.seqs = {room: RoomSeq(room, self) for room in self.rooms}
        self.epoch: dict[str, str | None] = {}
        self.messages: deque[tuple[str, str]] = deque(maxlen=50)  # recent (room, message id), for reactions
        self.budgets = {
            "chat": Budget(opts.live_chat_rate_limit, opts.live_chat_rate_window_seconds),
            "act": Budget(opts.live_action_rate_limit, opts.live_chat_rate_window_seconds),  # joins, reactions
            "qa_vote": Budget(opts.live_action_rate_limit, opts.live_chat_rate_window_seconds),
            "poll_vote": Budget(opts.live_action_rate_limit, opts.live_chat_rate_window_seconds),
            "qa_ask": Budget(opts.qa_ask_rate_limit, opts.qa_ask_rate_window_seconds),
        }
        self.engage = None
        if len(self.rooms) > 1 and not opts.chat_only:
            self.engage = EngagementTasks(self, session_room=self.rooms[1], event_room=event_room,
                                          user_id=self.user_id)
        self.joined_once = False
        self.sio.on("connect", self._on_connect, namespace=NAMESPACE)
        self.sio.on("disconnect", self._on_disconnect, namespace=NAMESPACE)
        self.sio.on("*", self._on_event, namespace=NAMESPACE)
        try:
            self.sio.connect(self.host, namespaces=[NAMESPACE], transports=["websocket"], auth=self._token,
                             wait_timeout=30)
        except Exception as exc:  # reported as a failed `WS connect`
            raise StopUser() from exc
        for room in self.rooms:
            ack = self._join(room)
            if not ack or not ack.get("ok"):
                self.sio.disconnect()
                raise StopUser()
        self.joined_once = True
        self.ready = True
        TALLY["users joined"] += 1

    def on_stop(self) -> None:
        self.stopping = True
        try:
            if getattr(self, "ready", False) and not self.environment.parsed_options.no_final_check:
                self._final_check()
        finally:
            self.ready = False
            self.sio.disconnect()

    # --- joins, reconnects ----------------------------------------------------------------------

    def _join(self, room: str, *, replay: bool = False) -> dict[str, Any] | None:
        """`room:join`; with `replay`, from the last seq seen (the missed events come in `history`)."""
        payload: dict[str, Any] = {"room": room}
        tracker = self.seqs[room]
        if replay and tracker.last is not None:
            payload["last_seq"] = tracker.last
            if self.epoch.get(room):
                payload["epoch"] = self.epoch[room]
        wait = self.budgets["act"].wait()
        if wait > 0:
            gevent.sleep(wait)
        self.budgets["act"].take()
        return self.request("room:join", payload, name="room:join (replay)" if "last_seq" in payload else None,
                            on_ack=lambda ack: self._joined(room, ack, replay="last_seq" in payload))

    def _joined(self, room: str, ack: dict[str, Any], *, replay: bool) -> None:
        tracker = self.seqs[room]
        self.epoch[room] = ack.get("epoch")
        if replay and not ack.get("resync"):
            for item in ack.get("history", []):
                data = item.get("data") or {}
                seq = data.get("seq")
                if not isinstance(seq, int) or not tracker.fresh(seq):
                    continue
                tracker.seen(seq)
                TALLY["events replayed after reconnect"] += 1
                self._dispatch(item["event"], data, live=False)
            if tracker.last is None or ack["seq"] > tracker.last:
                tracker.seen(ack["seq"])  # (a replay ending beyond what it listed would be a gap)
            return
        if replay:
            TALLY["resyncs"] += 1
        tracker.reset(ack["seq"])
        for item in ack.get("history", []):  # the last chat messages: state, not a sequence
            data = item.get("data") or {}
            if item.get("event") == "chat:message" and data.get("id"):
                self.messages.append((room, data["id"]))
        if self.engage is not None:
            self.engage.on_join(room, ack)

    def _on_connect(self, *_args: Any) -> None:
        # runs before python-socketio marks the namespace connected: join from another greenlet
        if getattr(self, "joined_once", False) and not self.stopping:
            TALLY["reconnects"] += 1
            gevent.spawn(self._rejoin)

    def _rejoin(self) -> None:
        """After a reconnect: every room from its last seq (the replay fills the hole exactly)."""
        for room in self.rooms:
            ack = self._join(room, replay=True)
            if not ack or not ack.get("ok"):
                TALLY["failed rejoins"] += 1
                return  # still broken: the next reconnect tries again
        self.ready = True

    def _on_disconnect(self, *_args: Any) -> None:
        if getattr(self, "joined_once", False) and not self.stopping:
            self.ready = False
            TALLY["disconnects"] += 1

    def _final_check(self) -> None:
        """Rejoin every room from the last seq seen: whatever the replay lists was never received.
        Older than --undelivered-grace (by its server `ts`): lost; newer or without `ts`: in flight."""
        grace_ms = self.environment.parsed_options.undelivered_grace * 1000

        def check(room: str, ack: dict[str, Any]) -> None:
            tracker = self.seqs[room]
            if ack.get("resync"):
                TALLY["final check: resync (position too old)"] += 1
                return
            now = time.time() * 1000
            for item in ack.get("history", []):
                data = item.get("data") or {}
                seq = data.get("seq")
                if not isinstance(seq, int) or not tracker.fresh(seq):
                    continue
                ts = data.get("ts")
                if isinstance(ts, (int, float)) and now - ts > grace_ms:
                    TALLY["undelivered events"] += 1
                    self.fire("SEQ", "undelivered", 0,
                              Exception(f"{item.get('event')} seq {seq} never arrived"))
                elif isinstance(ts, (int, float)):
                    TALLY["final check: in flight at stop"] += 1
                else:
                    TALLY["final check: not received at stop (no ts)"] += 1

        for room in self.rooms:
            tracker = self.seqs[room]
            if tracker.last is None or not self.budgets["act"].take():
                continue
            payload: dict[str, Any] = {"room": room, "last_seq": tracker.last}
            if self.epoch.get(room):
                payload["epoch"] = self.epoch[room]
            self.request("room:join", payload, name="room:join (final check)", timeout=10,
                         on_ack=lambda ack, r=room: check(r, ack))

    # --- room events ----------------------------------------------------------------------------

    def _on_event(self, event: str, *args: Any) -> None:
        data = args[0] if args else None
        if not isinstance(data, dict):
            return
        room = data.get("room")
        tracker = self.seqs.get(room) if isinstance(room, str) else None
        if tracker is None:
            return
        if event in EPHEMERAL:
            if event == "room:resync":
                TALLY["room:resync notices"] += 1
                gevent.spawn(self._join, room, replay=True)
            elif event == "room:kicked":
                self.fire("SEQ", "kicked", 0, Exception(f"kicked from {room}: {data.get('reason')}"))
            return
        seq = data.get("seq")
        if isinstance(seq, int):
            tracker.seen(seq)
        TALLY["room events received"] += 1
        self._dispatch(event, data, live=True)

    def _dispatch(self, event: str, data: dict[str, Any], *, live: bool) -> None:
        if live:
            ts = data.get("ts") if event in ("chat:message", "qa:question") else \
                (data.get("poll") or {}).get("opened_at") if event == "poll:opened" else None
            if isinstance(ts, (int, float)):
                self.fire("DELIVER", event, max(0.0, time.time() * 1000 - ts), length=len(data.get("text") or ""))
        if event == "chat:message" and data.get("id"):
            self.messages.append((data["room"], data["id"]))
        if self.engage is not None:
            self.engage.handle(event, data, live=live)

    # --- tasks ----------------------------------------------------------------------------------

    @task(10)
    def chat(self) -> None:
        if not self.ready:
            return
        if not self.budgets["chat"].take():
            TALLY["skipped chat:send (client budget)"] += 1
            return
        self.request("chat:send", {"room": random.choice(self.rooms), "text": random.choice(LINES),
                                   "client_id": uuid.uuid4().hex},
                     on_ack=lambda ack: TALLY.update(["chat messages acked"]))

    @task(3)
    def react(self) -> None:
        if not self.ready or not self.messages:
            return
        if not self.budgets["act"].take():
            TALLY["skipped chat:react (client budget)"] += 1
            return
        room, message_id = random.choice(self.messages)
        self.request("chat:react", {"room": room, "id": message_id, "emoji": random.choice(["👏", "🔥", "❤️", "😂"])})

    @task(2)
    def ask(self) -> None:
        if self.ready and self.engage is not None:
            self.engage.ask()

    @task(4)
    def upvote(self) -> None:
        if self.ready and self.engage is not None:
            self.engage.upvote()

    @task(4)
    def vote(self) -> None:
        if self.ready and self.engage is not None:
            self.engage.vote()


def jwt_sub(token: str) -> str:
    body = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))["sub"]


LINES = ["Great talk!", "Can you share the slides?", "👏👏👏", "Where is room B?", "Audio is a bit low",
         "Hello from Berlin", "+1 to that", "This is the best part", "Is it recorded?", "Wow"]
