"""Locust live room: a keynote. Thousands join within seconds, then bursts of chat, questions,
upvotes and votes, with delivery latency from the server's timestamps and an exactly-once,
in-order check of every room event each client receives.

    # 1. before every run (each refresh token is used once): an organizer (2FA), a published
    #    event with live_access=public, a session, open polls (one of each kind in the session,
    #    one single-choice poll in the lobby) and N attendee accounts, written to the accounts file
    locust -f loadtests/live_room.py --host http://127.0.0.1:8080 --setup-only --accounts 2000 \\
           --accounts-file var/live_accounts.json
    # 2. the keynote (LiveKeynote shape: --keynote-users join in --join-seconds, then a burst every
    #    --burst-every s lasting --burst-seconds, until --run-seconds; -u / -r / -t override
    #    users, spawn rate and run time). Ends by itself and prints the correctness summary.
    locust -f loadtests/live_room.py --host http://127.0.0.1:8080 --headless --processes 2 \\
           --accounts-file var/live_accounts.json --keynote-users 2000 --join-seconds 10 --run-seconds 120

Without --accounts-file (and without --event-id) a single-process run does step 1 itself at
start and its users sign up as they start (argon2 on the server: slow, fine for small runs).
With --processes N each process takes its own slice of the accounts; with separate --worker
processes, give each worker --expect-workers N for the same.

Each user refreshes its token over HTTP, connects a Socket.IO client (WebSocket only) to /live,
joins `event:{id}` and `session:{id}` (`room:join`), then chats (`chat:send`), reacts
(`chat:react`), asks (`qa:ask`), upvotes questions of others it has seen in `qa:question`
events or join snapshots (`qa:upvote`), and votes in the open polls it learned of from join
snapshots and `poll:opened` events (`poll:vote`, a valid choice for each kind, with a
`client_id`). At the start of every burst the organizer opens a new single-choice poll in the
session (`POST /api/events/{id}/polls` + `/open`, so everyone gets `poll:opened` at once) and
closes the previous one (`--no-keynote-polls` turns this off; `--chat-only` leaves out Q&A and
polls entirely).

Statistics:
- `WSC <event>`: ack round trip of every client → server event; an `{ok: false}` ack is a failure
  whose message is the error code. The only expected error is `poll_closed` for a vote in flight
  while the organizer closes a poll: reported as `WSC poll:vote [poll_closed, expected]`.
- `DELIVER chat:message` / `qa:question` / `poll:opened`: delivery latency of each live event
  received, client receive time minus the server's `ts` (`opened_at` for polls). One machine has
  one clock; across machines keep the load generators in NTP.
- `RECV poll:results` / `qa:votes`: the coalesced count broadcasts (at most `poll_result_max_hz`
  / `qa_votes_max_hz` per poll / session; no timestamp, so counted only; the summary shows the
  shortest interval a client saw between two of them).
- `SEQ gap` / `SEQ duplicate` / `SEQ out-of-order` (failures): per client and room, every durable
  event must arrive exactly once, in `seq` order (presence, kicks and resync notices are
  ephemeral and not counted); after a reconnect the client rejoins with `last_seq` and the
  replay must fill the hole exactly. `SEQ undelivered` (failure): at stop each client rejoins
  with its `last_seq` once more; an event it never received that the server accepted more than
  --undelivered-grace seconds earlier (chat messages carry `ts`) was lost.
- `HTTP refresh` / `HTTP open poll` / `HTTP close poll`: the user's token refresh and the organizer.

At test stop the master (or the single process) prints a summary: events received, gaps,
duplicates, out-of-order events, resyncs, reconnects, undelivered events, error acks by code,
and, per poll, the server's voter count (`GET /api/events/{id}/polls`) against the votes acked
to the clients (acked ≤ voters ≤ acked + votes without an ack). Any violation sets exit code 1.

Rate limits: the node limits each user (docs/protocol.md): chat `live_chat_rate_limit` per
`live_chat_rate_window_seconds`; joins and reactions, upvotes, and votes each
`live_action_rate_limit` per that window; questions `qa_ask_rate_limit` per
`qa_ask_rate_window_seconds`. Every user keeps a client-side budget under each (from the
FOYER_* variables of the same names when set, else Foyer's defaults, or the --live-* / --qa-*
options) and skips an action rather than exceed it, so a correct run has no `rate_limited`;
one that shows up means the options do not match the node. Nodes also need
`FOYER_REGISTER_MAX_PER_IP=0` for the setup step.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import random
import time
import uuid
from collections import Counter, deque
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import socketio
from locust import LoadTestShape, events, task
from locust.contrib.socketio import SocketIOClient, SocketIOUser
from locust.exception import StopUser
from locust.runners import LocalRunner, MasterRunner, WorkerRunner

try:
    from loadtests.live_tasks import (
        MIN_GAP,
        TALLY,
        VOTES,
        Budget,
        EngagementTasks,
        create_poll,
        open_demo_polls,
    )
except ImportError:  # run from another directory: Locust puts the locustfile's directory on sys.path
    from live_tasks import MIN_GAP, TALLY, VOTES, Budget, EngagementTasks, create_poll, open_demo_polls  # type: ignore

log = logging.getLogger("live_room")

NAMESPACE = "/live"
EPHEMERAL = {"presence:update", "room:kicked", "room:resync"}  # not sequenced: carry the last durable seq
SETUP: dict[str, Any] = {}
ACCOUNTS: list[dict[str, str]] = []
START = time.time()  # reset at test start
ORGANIZER: dict[str, Any] = {}
SUMMARIES: dict[str, dict[str, Any]] = {}  # master: the workers' end-of-run figures
COMMON: dict[str, Any] = {}  # -u / -r / -t from the command line, for the shape


def _env_num(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value not in (None, "") else default


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    g = parser.add_argument_group("live room (loadtests/live_room.py)")
    g.add_argument("--event-id", default="", help="an existing event whose lobby everyone joins")
    g.add_argument("--session-id", default="", help="a session of it (its room is joined too)")
    g.add_argument("--setup-only", action="store_true",
                   help="create organizer, event, session, open polls and accounts; write --accounts-file; exit")
    g.add_argument("--accounts", type=int, default=200, help="setup: attendee accounts to create")
    g.add_argument("--accounts-file", default="", help="accounts (refresh tokens) from --setup-only")
    g.add_argument("--keynote-users", type=int, default=200, help="users joining at the keynote start (-u overrides)")
    g.add_argument("--join-seconds", type=float, default=10, help="how fast they all join")
    g.add_argument("--run-seconds", type=float, default=120, help="the whole run stops after this (-t overrides)")
    g.add_argument("--burst-every", type=float, default=30, help="seconds between bursts (after the join)")
    g.add_argument("--burst-seconds", type=float, default=8, help="length of a burst")
    g.add_argument("--chat-only", action="store_true", help="no Q&A and no polls: join, chat and react only")
    g.add_argument("--with-qa-polls", action="store_true", help="(the default now; kept for old command lines)")
    g.add_argument("--no-keynote-polls", action="store_true",
                   help="the organizer does not open (and close) a poll at each burst")
    g.add_argument("--no-final-check", action="store_true",
                   help="skip the rejoin at stop that finds events a client never received")
    g.add_argument("--undelivered-grace", type=float, default=5.0,
                   help="final check: an event not received this long after the server accepted it is lost")
    g.add_argument("--live-chat-rate-limit", type=int,
                   default=int(_env_num("FOYER_LIVE_CHAT_RATE_LIMIT", 10)), help="the node's setting (client budget)")
    g.add_argument("--live-chat-rate-window-seconds", type=float,
                   default=_env_num("FOYER_LIVE_CHAT_RATE_WINDOW_SECONDS", 10.0), help="the node's setting")
    g.add_argument("--live-action-rate-limit", type=int,
                   default=int(_env_num("FOYER_LIVE_ACTION_RATE_LIMIT", 60)), help="the node's setting")
    g.add_argument("--qa-ask-rate-limit", type=int,
                   default=int(_env_num("FOYER_QA_ASK_RATE_LIMIT", 5)), help="the node's setting")
    g.add_argument("--qa-ask-rate-window-seconds", type=float,
                   default=_env_num("FOYER_QA_ASK_RATE_WINDOW_SECONDS", 60.0), help="the node's setting")


# ------------------------------------------------------------------------------------------------
# Setup over the public API
# ------------------------------------------------------------------------------------------------

def setup_event(host: str, *, polls: bool = True) -> dict[str, Any]:
    """An organizer with 2FA, a published event (live_access=public) starting in 5 minutes, its
    keynote session and, with `polls`, open polls (live_tasks.open_demo_polls)."""
    import pyotp
    import requests

    s = requests.Session()
    email = f"keynote-org-{uuid.uuid4().hex[:10]}@loadtest.example.org"
    r = s.post(f"{host}/api/auth/register", json={"email": email, "password": "keynote organizer pw", "name": "Org"})
    r.raise_for_status()
    reg = r.json()
    s.headers["Authorization"] = "Bearer " + reg["access_token"]
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
    out: dict[str, Any] = {"event_id": event_id, "session_id": session_id,
                           "organizer": {"email": email, "user_id": reg["user"]["id"],
                                         "refresh_token": reg["refresh_token"]}}
    out["polls"] = open_demo_polls(s, host, event_id, session_id) if polls else []
    return out


def create_accounts(host: str, n: int) -> list[dict[str, str]]:
    import concurrent.futures

    import requests

    def one(i: int) -> dict[str, str]:
        email = f"attendee-{uuid.uuid4().hex[:12]}@loadtest.example.org"
        r = requests.post(f"{host}/api/auth/register",
                          json={"email": email, "password": "keynote attendee pw", "name": f"Attendee {i}"})
        r.raise_for_status()
        body = r.json()
        return {"email": email, "user_id": body["user"]["id"], "refresh_token": body["refresh_token"]}

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(n)))


def _slices(opts: Any) -> int:
    """How many load-generator processes share the accounts file (each takes its own slice)."""
    return max(1, int(getattr(opts, "processes", 0) or 0) or int(getattr(opts, "expect_workers", 1) or 1))


@events.init.add_listener
def _on_init(environment, **_kw) -> None:
    opts = environment.parsed_options
    if opts is None:
        return
    runner = environment.runner
    # -u / -r / -t as given (headless Locust later fills in 1 for missing -u and -r)
    COMMON.update(users=opts.num_users, spawn_rate=opts.spawn_rate, run_time=opts.run_time)
    if isinstance(runner, MasterRunner):
        runner.register_message("live_summary", _on_worker_summary)
    if opts.setup_only:
        data = setup_event(environment.host, polls=not opts.chat_only)
        data["accounts"] = create_accounts(environment.host, opts.accounts)
        path = Path(opts.accounts_file or "live_accounts.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data))
        print(f"event {data['event_id']} session {data['session_id']}; polls "
              f"{', '.join(p['kind'] + ' ' + p['id'] for p in data['polls']) or 'none'}; "
              f"{len(data['accounts'])} accounts in {path}", flush=True)
        raise SystemExit(0)
    if opts.accounts_file:
        data = json.loads(Path(opts.accounts_file).read_text())
        SETUP.update(event_id=opts.event_id or data["event_id"], session_id=opts.session_id or data["session_id"],
                     polls=data.get("polls", []))
        ORGANIZER.update(data.get("organizer") or {})
        if isinstance(runner, WorkerRunner):
            accounts = data["accounts"][runner.worker_index::_slices(opts)]  # each refresh token in one process
        else:
            accounts = data["accounts"]
        ACCOUNTS.extend(accounts)
        random.shuffle(ACCOUNTS)
    elif opts.event_id:
        SETUP.update(event_id=opts.event_id, session_id=opts.session_id, polls=[])
    elif isinstance(runner, LocalRunner) and environment.host:
        data = setup_event(environment.host, polls=not opts.chat_only)
        SETUP.update(event_id=data["event_id"], session_id=data["session_id"], polls=data["polls"])
        ORGANIZER.update(data["organizer"])
        print(f"live room: set up event {data['event_id']} session {data['session_id']} with "
              f"{len(data['polls'])} open polls; users sign up as they start", flush=True)
    elif not isinstance(runner, MasterRunner):
        log.error("live room: give --accounts-file (from --setup-only) or --event-id; users will stop at once")


def in_burst(opts: Any, now: float | None = None) -> bool:
    t = (now or time.time()) - START - opts.join_seconds
    return t > 0 and (t % opts.burst_every) < opts.burst_seconds


def next_burst_in(opts: Any) -> float:
    t = time.time() - START - opts.join_seconds
    if t < 0:
        return -t
    return opts.burst_every - (t % opts.burst_every)


# ------------------------------------------------------------------------------------------------
# The organizer: a new poll at every burst (master or single process only)
# ------------------------------------------------------------------------------------------------

class Organizer:
    def __init__(self, host: str, refresh_token: str) -> None:
        import requests

        self.host = host
        self.refresh_token = refresh_token
        self.http = requests.Session()
        self.token_at = 0.0

    def session(self) -> Any:
        if time.monotonic() - self.token_at > 600:  # access tokens live 15 minutes by default
            r = self.http.post(f"{self.host}/api/auth/refresh", json={"refresh_token": self.refresh_token}, timeout=30)
            r.raise_for_status()
            body = r.json()
            self.refresh_token = body["refresh_token"]
            self.http.headers["Authorization"] = "Bearer " + body["access_token"]
            self.token_at = time.monotonic()
        return self.http


def _timed(environment: Any, name: str, fn: Any) -> Any:
    started = time.perf_counter()
    try:
        result = fn()
    except Exception as exc:
        environment.events.request.fire(request_type="HTTP", name=name, response_time=(time.perf_counter() - started)
                                        * 1000, response_length=0, exception=exc, context={})
        raise
    environment.events.request.fire(request_type="HTTP", name=name, response_time=(time.perf_counter() - started)
                                    * 1000, response_length=0, exception=None, context={})
    return result


def _keynote_polls(environment: Any) -> None:
    """At the start of every burst: close the previous keynote poll, open a new single-choice one
    in the session room (everyone gets `poll:opened`, then votes)."""
    opts = environment.parsed_options
    org = ORGANIZER["client"]
    host, event_id, session_id = environment.host, SETUP["event_id"], SETUP["session_id"]
    previous = None
    k = 0
    while True:
        gevent.sleep(max(0.0, START + opts.join_seconds + k * opts.burst_every - time.time()))
        try:
            s = org.session()
            if previous is not None:
                _timed(environment, "close poll",
                       lambda p=previous, s=s: s.post(f"{host}/api/polls/{p}/close", timeout=30).raise_for_status())
                TALLY["keynote polls closed"] += 1
            poll = _timed(environment, "open poll", lambda n=k, s=s: create_poll(s, host, event_id, {
                "kind": "single", "question": f"Keynote question {n + 1}?", "session_id": session_id,
                "options": ["Yes", "No", "Maybe"]}))
            previous = poll["id"]
            SETUP["polls"].append({"id": poll["id"], "room": poll["room"], "kind": poll["kind"]})
            TALLY["keynote polls opened"] += 1
        except Exception as exc:
            log.warning("keynote poll %d: %s", k + 1, exc)
            TALLY["keynote poll errors"] += 1
        k += 1


@events.test_start.add_listener
def _on_test_start(environment, **_kw) -> None:
    global START
    START = time.time()
    for figures in (TALLY, VOTES, MIN_GAP, SUMMARIES):
        figures.clear()
    opts = environment.parsed_options
    if isinstance(environment.runner, WorkerRunner) or opts is None:
        return
    if ORGANIZER.get("refresh_token") and SETUP.get("session_id") and not opts.chat_only \
            and not opts.no_keynote_polls:
        ORGANIZER["client"] = Organizer(environment.host, ORGANIZER["refresh_token"])
        ORGANIZER["greenlet"] = gevent.spawn(_keynote_polls, environment)


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
            self.user_id = account.get("user_id") or _jwt_sub(self.token)
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


def _jwt_sub(token: str) -> str:
    body = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))["sub"]


LINES = ["Great talk!", "Can you share the slides?", "👏👏👏", "Where is room B?", "Audio is a bit low",
         "Hello from Berlin", "+1 to that", "This is the best part", "Is it recorded?", "Wow"]


class LiveKeynote(LoadTestShape):
    """Everyone joins within --join-seconds (the keynote starts), then stays until --run-seconds;
    chat, questions, upvotes and votes come in bursts (LiveRoomUser.wait_time) every --burst-every
    seconds. -u, -r and -t, when given, override --keynote-users, the spawn rate and --run-seconds."""

    use_common_options = True

    def tick(self) -> tuple[int, float] | None:
        opts = self.runner.environment.parsed_options
        t = self.get_run_time()
        if t > (COMMON.get("run_time") or opts.run_seconds):
            return None
        users = COMMON.get("users") or opts.keynote_users
        return users, COMMON.get("spawn_rate") or max(1.0, users / max(0.1, opts.join_seconds))


# ------------------------------------------------------------------------------------------------
# End of run: the correctness summary
# ------------------------------------------------------------------------------------------------

def _local_summary() -> dict[str, Any]:
    return {"tally": dict(TALLY), "votes": {k: list(v) for k, v in VOTES.items()}, "min_gap": dict(MIN_GAP)}


def _on_worker_summary(environment: Any, msg: Any, **_kw) -> None:
    SUMMARIES[msg.node_id] = msg.data


@events.test_stop.add_listener
def _on_test_stop(environment, **_kw) -> None:
    runner = environment.runner
    greenlet = ORGANIZER.pop("greenlet", None)
    if greenlet is not None:
        greenlet.kill(block=True)
    if isinstance(runner, WorkerRunner):
        runner.send_message("live_summary", _local_summary())  # sent before this worker reports "stopped"
        return
    if isinstance(runner, MasterRunner):
        # A headless run ends with quit(), which fires test_stop here before the workers are told
        # anything: stop them now (their users' on_stop runs the final check) and wait for their figures.
        for client in runner.clients.all:
            if client.id not in SUMMARIES:
                runner.send_message("stop", client_id=client.id)
        deadline = time.monotonic() + (environment.stop_timeout or 0) + 60
        while any(c.id not in SUMMARIES for c in runner.clients.all) and time.monotonic() < deadline:
            gevent.sleep(0.2)
        missing = [c.id for c in runner.clients.all if c.id not in SUMMARIES]
        if missing:
            log.error("live room: no end-of-run figures from workers %s", ", ".join(missing))
    parts = [_local_summary(), *SUMMARIES.values()]
    tally: Counter[str] = Counter()
    votes: dict[str, list[int]] = {}
    min_gap: dict[str, float] = {}
    for part in parts:
        tally.update(part["tally"])
        for event, gap in part.get("min_gap", {}).items():
            min_gap[event] = min(min_gap.get(event, gap), gap)
        for poll_id, (acked, unknown) in part["votes"].items():
            v = votes.setdefault(poll_id, [0, 0])
            v[0] += acked
            v[1] += unknown
    ok = _print_summary(environment, tally, votes, min_gap, processes=max(1, len(SUMMARIES)))
    if not ok:
        environment.process_exit_code = 1


def _server_polls(environment: Any) -> list[dict[str, Any]] | None:
    client = ORGANIZER.get("client")
    if client is None and ORGANIZER.get("refresh_token"):
        client = ORGANIZER["client"] = Organizer(environment.host, ORGANIZER["refresh_token"])
    if client is None or not SETUP.get("event_id"):
        return None
    try:
        r = client.session().get(f"{environment.host}/api/events/{SETUP['event_id']}/polls", timeout=30)
        r.raise_for_status()
        return r.json()["polls"]
    except Exception as exc:
        log.warning("live room: could not read the polls: %s", exc)
        return None


def _print_summary(environment: Any, t: Counter[str], votes: dict[str, list[int]], min_gap: dict[str, float], *,
                   processes: int) -> bool:
    problems = []
    lines = [f"==== live room: correctness ({t['users joined']} users joined, {processes} load-generator "
             f"process{'es' if processes > 1 else ''}) ===="]
    lines.append(f"room events received live: {t['room events received']}, replayed after a reconnect: "
                 f"{t['events replayed after reconnect']}; chat messages acked: {t['chat messages acked']}, "
                 f"questions asked: {t['questions visible'] + t['questions pending']}, upvotes counted: "
                 f"{t['upvotes counted']}, votes acked: {sum(v[0] for v in votes.values())}")
    lines.append(f"seq: gaps {t['seq gaps']} ({t['seq missing events']} events never arrived), duplicates "
                 f"{t['seq duplicates']}, out of order {t['seq out-of-order']}; resyncs {t['resyncs']}, "
                 f"room:resync notices {t['room:resync notices']}, disconnects {t['disconnects']}, "
                 f"reconnects {t['reconnects']}, failed rejoins {t['failed rejoins']}")
    lines.append(f"final check: undelivered {t['undelivered events']} (accepted > "
                 f"{environment.parsed_options.undelivered_grace:g} s before stop), in flight at stop "
                 f"{t['final check: in flight at stop']}, not yet received (no ts) "
                 f"{t['final check: not received at stop (no ts)']}, resync {t['final check: resync (position too old)']}")
    for key, label in (("seq gaps", "gaps"), ("seq duplicates", "duplicates"), ("seq out-of-order", "out of order"),
                       ("undelivered events", "undelivered events")):
        if t[key]:
            problems.append(f"{t[key]} {label}")
    errors = {k: v for k, v in t.items() if k.startswith("error acks ")}
    lines.append("error acks: " + (", ".join(f"{k[len('error acks '):]} ×{v}" for k, v in sorted(errors.items()))
                                   or "none"))
    polls = _server_polls(environment)
    if polls is None:
        lines.append("polls: not checked (no organizer credentials or event)")
    else:
        lines.append("polls: server voters vs votes acked to clients (+ votes without an ack)")
        for poll in sorted(polls, key=lambda p: p.get("opened_at") or 0):
            acked, unknown = votes.get(poll["id"], [0, 0])
            voters = poll.get("voters") or 0
            good = acked <= voters <= acked + unknown
            if not good:
                problems.append(f"poll {poll['id']}: {voters} voters, {acked} acked (+{unknown} unknown)")
            lines.append(f"  {poll['id'][:8]} {poll['kind']:<10} {poll['state']:<6} {poll['room'].split(':')[0]:<7} "
                         f"voters {voters:>5}  acked {acked:>5} (+{unknown} unknown)  {'OK' if good else 'MISMATCH'}")
    if min_gap:
        lines.append("coalesced broadcasts, shortest interval one client saw for one poll/session (delivery "
                     "jitter included): " + ", ".join(f"{k} {v:.0f} ms" for k, v in sorted(min_gap.items())))
    skipped = {k: v for k, v in t.items() if k.startswith("skipped ")}
    if skipped:
        lines.append("not sent: " + ", ".join(f"{k[len('skipped '):]} ×{v}" for k, v in sorted(skipped.items())))
    if t["keynote polls opened"] or t["keynote poll errors"]:
        lines.append(f"organizer: keynote polls opened {t['keynote polls opened']}, closed {t['keynote polls closed']}, "
                     f"errors {t['keynote poll errors']}")
    lines.append("CORRECTNESS: " + ("OK" if not problems else "FAILED: " + "; ".join(problems))
                 + " (ordering, delivery and vote counts; request failures are in Locust's tables below)")
    print("\n".join(lines), flush=True)
    return not problems
