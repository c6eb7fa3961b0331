"""Setup and the organizer of the Locust live room (loadtests/live_room.py), over the public API:
`setup_event` (an organizer with 2FA, a published event, its keynote session, open polls),
`create_accounts` (attendees, for the accounts file), and the organizer during the run
(`Organizer`: a session that refreshes its token; `keynote_polls`: a new poll at every burst).
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import gevent

try:
    from loadtests.live_state import ORGANIZER, SETUP, burst_at
    from loadtests.live_tasks import TALLY, create_poll, open_demo_polls
except ImportError:  # run from another directory: Locust puts the locustfile's directory on sys.path
    from live_state import ORGANIZER, SETUP, burst_at  # type: ignore
    from live_tasks import TALLY, create_poll, open_demo_polls  # type: ignore

log = logging.getLogger("live_room")


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


# ------------------------------------------------------------------------------------------------
# The organizer: a new poll at every burst (master or single process only)
# ------------------------------------------------------------------------------------------------

class Organizer:
    """The organizer's HTTP session during the run; `session()` refreshes its access token first
    when it is older than 10 minutes."""

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


def timed(environment: Any, name: str, fn: Any) -> Any:
    """Call `fn()` and report it to Locust as `HTTP <name>` (a failure if it raises)."""
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


def keynote_polls(environment: Any) -> None:
    """At the start of every burst: close the previous keynote poll, open a new single-choice one
    in the session room (everyone gets `poll:opened`, then votes)."""
    opts = environment.parsed_options
    org = ORGANIZER["client"]
    host, event_id, session_id = environment.host, SETUP["event_id"], SETUP["session_id"]
    previous = None
    k = 0
    while True:
        gevent.sleep(max(0.0, burst_at(opts, k) - time.time()))
        try:
            s = org.session()
            if previous is not None:
                timed(environment, "close poll",
                      lambda p=previous, s=s: s.post(f"{host}/api/polls/{p}/close", timeout=30).raise_for_status())
                TALLY["keynote polls closed"] += 1
            poll = timed(environment, "open poll", lambda n=k, s=s: create_poll(s, host, event_id, {
                "kind": "single", "question": f"Keynote question {n + 1}?", "session_id": session_id,
                "options": ["Yes", "No", "Maybe"]}))
            previous = poll["id"]
            SETUP["polls"].append({"id": poll["id"], "room": poll["room"], "kind": poll["kind"]})
            TALLY["keynote polls opened"] += 1
        except Exception as exc:
            log.warning("keynote poll %d: %s", k + 1, exc)
            TALLY["keynote poll errors"] += 1
        k += 1
