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

This file is the entry point (options, event listeners, the LiveKeynote shape); the rest lives
beside it: live_state.py (the run's shared state and keynote clock), live_setup.py (setup over
the API, the organizer), live_user.py (LiveRoomUser and the per-room seq check), live_tasks.py
(Q&A, polls and client-side rate budgets) and live_summary.py (the end-of-run summary).
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import gevent
from locust import LoadTestShape, events
from locust.runners import LocalRunner, MasterRunner, WorkerRunner

try:
    from loadtests.live_setup import Organizer, create_accounts, keynote_polls, setup_event
    from loadtests.live_state import ACCOUNTS, COMMON, ORGANIZER, SETUP, SUMMARIES, restart_clock
    from loadtests.live_summary import local_summary, print_summary
    from loadtests.live_tasks import MIN_GAP, TALLY, VOTES
    from loadtests.live_user import LiveRoomUser
except ImportError:  # run from another directory: Locust puts the locustfile's directory on sys.path
    from live_setup import Organizer, create_accounts, keynote_polls, setup_event  # type: ignore
    from live_state import ACCOUNTS, COMMON, ORGANIZER, SETUP, SUMMARIES, restart_clock  # type: ignore
    from live_summary import local_summary, print_summary  # type: ignore
    from live_tasks import MIN_GAP, TALLY, VOTES  # type: ignore
    from live_user import LiveRoomUser  # type: ignore

__all__ = ["LiveKeynote", "LiveRoomUser"]  # what Locust runs: the user and the shape

log = logging.getLogger("live_room")


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


# ------------------------------------------------------------------------------------------------
# Test start: the keynote clock and the organizer (a new poll at every burst: master or single
# process only); the shape
# ------------------------------------------------------------------------------------------------

@events.test_start.add_listener
def _on_test_start(environment, **_kw) -> None:
    restart_clock()
    for figures in (TALLY, VOTES, MIN_GAP, SUMMARIES):
        figures.clear()
    opts = environment.parsed_options
    if isinstance(environment.runner, WorkerRunner) or opts is None:
        return
    if ORGANIZER.get("refresh_token") and SETUP.get("session_id") and not opts.chat_only \
            and not opts.no_keynote_polls:
        ORGANIZER["client"] = Organizer(environment.host, ORGANIZER["refresh_token"])
        ORGANIZER["greenlet"] = gevent.spawn(keynote_polls, environment)


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

def _on_worker_summary(environment: Any, msg: Any, **_kw) -> None:
    SUMMARIES[msg.node_id] = msg.data


@events.test_stop.add_listener
def _on_test_stop(environment, **_kw) -> None:
    runner = environment.runner
    greenlet = ORGANIZER.pop("greenlet", None)
    if greenlet is not None:
        greenlet.kill(block=True)
    if isinstance(runner, WorkerRunner):
        runner.send_message("live_summary", local_summary())  # sent before this worker reports "stopped"
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
    parts = [local_summary(), *SUMMARIES.values()]
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
    ok = print_summary(environment, tally, votes, min_gap, processes=max(1, len(SUMMARIES)))
    if not ok:
        environment.process_exit_code = 1

