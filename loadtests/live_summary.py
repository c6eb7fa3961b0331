"""End of a Locust live-room run (loadtests/live_room.py): each process's figures
(`local_summary`), the server's poll voter counts (`server_polls`, as the organizer), and the
correctness summary the master (or the single process) prints (`print_summary`).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

try:
    from loadtests.live_setup import Organizer
    from loadtests.live_state import ORGANIZER, SETUP
    from loadtests.live_tasks import MIN_GAP, TALLY, VOTES
except ImportError:  # run from another directory: Locust puts the locustfile's directory on sys.path
    from live_setup import Organizer  # type: ignore
    from live_state import ORGANIZER, SETUP  # type: ignore
    from live_tasks import MIN_GAP, TALLY, VOTES  # type: ignore

log = logging.getLogger("live_room")


def local_summary() -> dict[str, Any]:
    """This process's figures: the tally, votes per poll and the shortest broadcast intervals."""
    return {"tally": dict(TALLY), "votes": {k: list(v) for k, v in VOTES.items()}, "min_gap": dict(MIN_GAP)}


def server_polls(environment: Any) -> list[dict[str, Any]] | None:
    """The event's polls as the server counts them (as the organizer); None without credentials."""
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


def print_summary(environment: Any, t: Counter[str], votes: dict[str, list[int]], min_gap: dict[str, float], *,
                   processes: int) -> bool:
    """Print the correctness summary of the whole run; False on any violation."""
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
    polls = server_polls(environment)
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
