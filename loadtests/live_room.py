"""Locust live room: a keynote — thousands join within seconds, then bursts of chat (and, once
they exist, questions, upvotes and votes) — with delivery latency from the server timestamp.

    # 1. once per run: an organizer, a published event with live_access=public, a session, and
    #    N attendee accounts (refresh tokens in a file; each is used once, so re-run before every run):
    locust -f loadtests/live_room.py --host http://127.0.0.1:8080 --setup-only --accounts 2000 \
           --accounts-file var/live_accounts.json
    # 2. the keynote (LiveKeynote shape: --keynote-users join in --join-seconds, then quiet/burst
    #    phases until --run-seconds; the run stops by itself):
    locust -f loadtests/live_room.py --host http://127.0.0.1:8080 --headless --processes 2 \
           --accounts-file var/live_accounts.json --keynote-users 2000 --join-seconds 10 --run-seconds 120

Targets: Socket.IO over WebSocket on /live (standard python-socketio client, as
locust.contrib.socketio wraps it). Statistics: `WSC room:join` / `WSC chat:send` are ack round
trips; `RECV chat:message` is the delivery latency of every message received (client receive
time minus the server's `ts`, same clock on one machine; across machines keep clocks in NTP);
`SEQ gap` failures count room events a client missed (there should be none: the server replays
after a reconnect). Nodes need `FOYER_REGISTER_MAX_PER_IP=0` for the setup step and chat rate
limits that fit the burst (`FOYER_LIVE_CHAT_RATE_LIMIT`). Q&A / polls tasks run when
`--with-qa-polls` is given (events `qa:ask`, `qa:upvote`, `poll:vote`, see docs/protocol.md).
"""

from __future__ import annotations

import json
import random
import time
import uuid
from pathlib import Path
from typing import Any

from locust import LoadTestShape, events, task
from locust.contrib.socketio import SocketIOUser
from locust.exception import StopUser

NAMESPACE = "/live"
SETUP: dict[str, Any] = {}
ACCOUNTS: list[dict[str, str]] = []
START = time.time()


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    parser.add_argument("--event-id", default="", help="an existing event whose lobby everyone joins")
    parser.add_argument("--session-id", default="", help="a session of it (its room is joined too)")
    parser.add_argument("--setup-only", action="store_true", help="create event, session and accounts, exit")
    parser.add_argument("--accounts", type=int, default=200, help="setup: attendee accounts to create")
    parser.add_argument("--accounts-file", default="", help="accounts (refresh tokens) from --setup-only")
    parser.add_argument("--keynote-users", type=int, default=200, help="users joining at the keynote start")
    parser.add_argument("--join-seconds", type=float, default=10, help="how fast they all join")
    parser.add_argument("--run-seconds", type=float, default=120, help="the whole run stops after this")
    parser.add_argument("--burst-every", type=float, default=30, help="seconds between chat bursts")
    parser.add_argument("--burst-seconds", type=float, default=8, help="length of a burst")
    parser.add_argument("--with-qa-polls", action="store_true", help="also ask, upvote and vote")


# ------------------------------------------------------------------------------------------------
# Setup over the public API
# ------------------------------------------------------------------------------------------------

def setup_event(host: str) -> dict[str, str]:
    from datetime import UTC, datetime, timedelta

    import pyotp
    import requests

    s = requests.Session()
    email = f"keynote-org-{uuid.uuid4().hex[:10]}@loadtest.example.org"
    r = s.post(f"{host}/api/auth/register", json={"email": email, "password": "keynote organizer pw", "name": "Org"})
    r.raise_for_status()
    s.headers["Authorization"] = "Bearer " + r.json()["access_token"]
    secret = s.post(f"{host}/api/auth/2fa/setup").json()["secret"]
    s.post(f"{host}/api/auth/2fa/enable", json={"code": pyotp.TOTP(secret).now()}).raise_for_status()
    starts = datetime.now(UTC) + timedelta(minutes=5)
    r = s.post(f"{host}/api/events", json={"title": "Load test keynote", "starts_at": starts.isoformat(),
                                           "ends_at": (starts + timedelta(hours=8)).isoformat(),
                                           "live_access": "public"})
    r.raise_for_status()
    event_id = r.json()["id"]
    r = s.post(f"{host}/api/events/{event_id}/sessions", json={
        "title": "Opening keynote", "starts_at": starts.isoformat(),
        "ends_at": (starts + timedelta(hours=1)).isoformat()})
    r.raise_for_status()
    session_id = r.json()["id"]
    s.post(f"{host}/api/events/{event_id}/publish").raise_for_status()
    return {"event_id": event_id, "session_id": session_id}


def create_accounts(host: str, n: int) -> list[dict[str, str]]:
    import concurrent.futures

    import requests

    def one(i: int) -> dict[str, str]:
        email = f"attendee-{uuid.uuid4().hex[:12]}@loadtest.example.org"
        r = requests.post(f"{host}/api/auth/register",
                          json={"email": email, "password": "keynote attendee pw", "name": f"Attendee {i}"})
        r.raise_for_status()
        return {"email": email, "refresh_token": r.json()["refresh_token"]}

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(n)))


@events.init.add_listener
def _on_init(environment, **_kw) -> None:
    opts = environment.parsed_options
    if opts is None:
        return
    if opts.setup_only:
        ids = setup_event(environment.host)
        accounts = create_accounts(environment.host, opts.accounts)
        out = {**ids, "accounts": accounts}
        path = Path(opts.accounts_file or "live_accounts.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out))
        print(f"event {ids['event_id']} session {ids['session_id']}; {len(accounts)} accounts in {path}", flush=True)
        raise SystemExit(0)
    if opts.accounts_file:
        data = json.loads(Path(opts.accounts_file).read_text())
        SETUP.update(event_id=opts.event_id or data["event_id"], session_id=opts.session_id or data["session_id"])
        accounts = data["accounts"]
        runner = environment.runner
        index = getattr(runner, "worker_index", 0) or 0
        count = max(1, getattr(runner, "worker_count", 1) or 1) if hasattr(runner, "worker_index") else 1
        ACCOUNTS.extend(accounts[index::count])  # each refresh token is used by one process only
        random.shuffle(ACCOUNTS)
    elif opts.event_id:
        SETUP.update(event_id=opts.event_id, session_id=opts.session_id)


def in_burst(opts: Any) -> bool:
    t = time.time() - START - opts.join_seconds
    return t > 0 and (t % opts.burst_every) < opts.burst_seconds


# ------------------------------------------------------------------------------------------------
# The user
# ------------------------------------------------------------------------------------------------

class LiveRoomUser(SocketIOUser):
    options = {"reconnection": True, "reconnection_delay": 0.5, "reconnection_delay_max": 5}

    def wait_time(self) -> float:
        opts = self.environment.parsed_options
        return random.uniform(1, 4) if in_burst(opts) else random.uniform(15, 45)

    def on_start(self) -> None:
        import requests

        if not SETUP:
            raise StopUser()
        if ACCOUNTS:
            account = ACCOUNTS.pop()
            r = requests.post(f"{self.host}/api/auth/refresh", json={"refresh_token": account["refresh_token"]})
        else:  # no accounts file: sign up now (slow: argon2 on the server)
            r = requests.post(f"{self.host}/api/auth/register", json={
                "email": f"attendee-{uuid.uuid4().hex[:12]}@loadtest.example.org",
                "password": "keynote attendee pw", "name": "Attendee"})
        if r.status_code not in (200, 201):
            raise StopUser()
        self.token = r.json()["access_token"]
        self.rooms = [f"event:{SETUP['event_id']}"]
        if SETUP.get("session_id"):
            self.rooms.append(f"session:{SETUP['session_id']}")
        self.last_seq: dict[str, int] = {}
        self.epoch: dict[str, str | None] = {}
        self.messages: list[str] = []
        self.sio.on("connect", self._rejoin, namespace=NAMESPACE)
        self.sio.on("chat:message", self._chat_message, namespace=NAMESPACE)
        self.sio.on("*", self._any_event, namespace=NAMESPACE)
        self.sio.connect(self.host, namespaces=[NAMESPACE], transports=["websocket"],
                         auth={"token": self.token}, wait_timeout=30)

    def on_stop(self) -> None:
        self.sio.disconnect()

    # --- joins (and rejoins after a reconnect: replay from the last seq) -----------------------

    def _rejoin(self) -> None:
        for room in getattr(self, "rooms", []):
            payload: dict[str, Any] = {"room": room}
            if room in self.last_seq:
                payload["last_seq"] = self.last_seq[room]
                if self.epoch.get(room):
                    payload["epoch"] = self.epoch[room]
            ack = self.sio.call("room:join", payload, namespace=NAMESPACE, timeout=30)
            if not ack or not ack.get("ok"):
                continue
            self.epoch[room] = ack.get("epoch")
            for item in ack.get("history", []) if not ack.get("resync") else []:
                self._seen(room, item["data"]["seq"])
            self.last_seq[room] = max(self.last_seq.get(room, 0), ack["seq"])

    def _seen(self, room: str, seq: int) -> None:
        last = self.last_seq.get(room)
        if last is not None and seq > last + 1:
            self.environment.events.request.fire(request_type="SEQ", name="gap", response_time=0,
                                                 response_length=seq - last - 1,
                                                 exception=Exception(f"{room}: missed {seq - last - 1}"), context={})
        if last is None or seq > last:
            self.last_seq[room] = seq

    def _chat_message(self, data: dict[str, Any]) -> None:
        latency = max(0.0, time.time() * 1000 - data.get("ts", 0))
        self.environment.events.request.fire(request_type="RECV", name="chat:message", response_time=latency,
                                             response_length=len(data.get("text", "")), exception=None, context={})
        self._seen(data["room"], data["seq"])
        if len(self.messages) < 50:
            self.messages.append(data["id"])

    def _any_event(self, event: str, data: Any = None) -> None:
        if isinstance(data, dict) and "seq" in data and "room" in data and event != "presence:update":
            self._seen(data["room"], data["seq"])

    # --- tasks ----------------------------------------------------------------------------------

    @task(10)
    def chat(self) -> None:
        room = random.choice(self.rooms)
        self.sio.call("chat:send", {"room": room, "text": random.choice(LINES), "client_id": uuid.uuid4().hex},
                      namespace=NAMESPACE, timeout=30)

    @task(3)
    def react(self) -> None:
        if self.messages:
            self.sio.call("chat:react", {"room": self.rooms[0], "id": random.choice(self.messages),
                                         "emoji": random.choice(["👏", "🔥", "❤️", "😂"])}, namespace=NAMESPACE, timeout=30)

    @task(2)
    def ask(self) -> None:
        if self.environment.parsed_options.with_qa_polls and len(self.rooms) > 1:
            self.sio.call("qa:ask", {"room": self.rooms[1], "text": random.choice(QUESTIONS),
                                     "client_id": uuid.uuid4().hex}, namespace=NAMESPACE, timeout=30)

    @task(4)
    def vote(self) -> None:
        if self.environment.parsed_options.with_qa_polls and len(self.rooms) > 1:
            self.sio.call("poll:vote", {"room": self.rooms[1], "poll_id": "current", "choice": random.randint(0, 3)},
                          namespace=NAMESPACE, timeout=30)


LINES = ["Great talk!", "Can you share the slides?", "👏👏👏", "Where is room B?", "Audio is a bit low",
         "Hello from Berlin", "+1 to that", "This is the best part", "Is it recorded?", "Wow"]
QUESTIONS = ["How does this scale?", "What about offline mode?", "When is the release?", "Any plans for mobile?"]


class LiveKeynote(LoadTestShape):
    """Everyone joins within --join-seconds (the keynote starts), then stays until --run-seconds;
    chat comes in bursts (LiveRoomUser.wait_time) every --burst-every seconds."""

    def tick(self) -> tuple[int, float] | None:
        opts = self.runner.environment.parsed_options
        t = self.get_run_time()
        if t > opts.run_seconds:
            return None
        users = opts.keynote_users
        return users, max(1.0, users / max(0.1, opts.join_seconds))

