"""Locust ticket drop against any Foyer: buyers sign up, hold, pay through the sandbox, fetch tickets.

    # 1. create the event (organizer with 2FA, published event, one ticket type), prints the ids:
    locust -f loadtests/ticket_drop.py --host http://127.0.0.1:8080 --setup-only --seats 1000
    # 2. the drop (spike shape: --spike-users arrive in --spike-seconds, then the run ends by itself):
    locust -f loadtests/ticket_drop.py --host http://127.0.0.1:8080 --headless \
           --event-id <id> --ticket-type-id <id> --spike-users 2000 --spike-seconds 10 --run-seconds 60
    # 3. the invariants:
    python loadtests/verify.py --database-url postgresql://.../foyer --event-id <id>

Without --event-id, the setup step runs at test start (one event per run). The target needs the
sandbox processor (`FOYER_PAYMENTS_SANDBOX_MOUNT=true` on the nodes, or FOYER_PAYMENTS_SANDBOX_URL
pointing at a standalone one) and a sign-up limit that fits the run (`FOYER_REGISTER_MAX_PER_IP=0`
when every simulated buyer comes from one load-generator IP). See docs/ticketing.md.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from datetime import UTC, datetime, timedelta

from locust import FastHttpUser, LoadTestShape, events, task
from locust.exception import StopUser

SALE: dict[str, str] = {}


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    parser.add_argument("--event-id", default="", help="an existing published event (skip setup)")
    parser.add_argument("--ticket-type-id", default="", help="its ticket type")
    parser.add_argument("--seats", type=int, default=1000, help="setup: capacity of the ticket type")
    parser.add_argument("--setup-only", action="store_true", help="create the event, print its ids, exit")
    parser.add_argument("--spike-users", type=int, default=1000, help="buyers arriving in the spike")
    parser.add_argument("--spike-seconds", type=float, default=10, help="how fast they arrive")
    parser.add_argument("--run-seconds", type=float, default=60, help="the whole run stops after this")
    parser.add_argument("--quantity", type=int, default=2, help="seats per order (1..quantity at random)")
    parser.add_argument("--card", default="4242424242424242", help="sandbox test card")


def setup_event(host: str, seats: int) -> tuple[str, str]:
    """Organizer (with 2FA) -> draft event -> ticket type -> publish, over the public API."""
    import pyotp
    import requests

    s = requests.Session()
    email = f"organizer-{uuid.uuid4().hex[:10]}@loadtest.example.org"
    password = "load test organizer password"
    r = s.post(f"{host}/api/auth/register", json={"email": email, "password": password, "name": "Drop organizer"})
    r.raise_for_status()
    s.headers["Authorization"] = "Bearer " + r.json()["access_token"]
    secret = s.post(f"{host}/api/auth/2fa/setup").json()["secret"]
    s.post(f"{host}/api/auth/2fa/enable", json={"code": pyotp.TOTP(secret).now()}).raise_for_status()
    starts = datetime.now(UTC) + timedelta(days=30)
    r = s.post(f"{host}/api/events", json={"title": "Load test drop", "starts_at": starts.isoformat(),
                                           "ends_at": (starts + timedelta(hours=4)).isoformat()})
    r.raise_for_status()
    event_id = r.json()["id"]
    r = s.post(f"{host}/api/events/{event_id}/ticket-types", json={
        "name": "General", "kind": "general", "price_cents": 2500, "currency": "EUR", "capacity": seats,
        "max_per_order": 4})
    r.raise_for_status()
    type_id = r.json()["id"]
    r = s.post(f"{host}/api/events/{event_id}/publish")
    r.raise_for_status()
    return event_id, type_id


@events.test_start.add_listener
def _on_start(environment, **_kw) -> None:
    opts = environment.parsed_options
    if opts.event_id:
        SALE.update(event_id=opts.event_id, ticket_type_id=opts.ticket_type_id)
    else:
        event_id, type_id = setup_event(environment.host, opts.seats)
        SALE.update(event_id=event_id, ticket_type_id=type_id)
    print(f"ticket drop: event {SALE['event_id']} ticket type {SALE['ticket_type_id']}", flush=True)
    if opts.setup_only and environment.runner is not None:
        environment.runner.quit()


class Buyer(FastHttpUser):
    """One buyer: sign up once, try to hold, pay through the sandbox, wait for tickets, leave."""

    wait_time = staticmethod(lambda: 0.0)

    def on_start(self) -> None:
        email = f"buyer-{uuid.uuid4().hex}@loadtest.example.org"
        with self.client.post("/api/auth/register", json={"email": email, "password": "buyer password 123",
                                                          "name": "Buyer"}, name="register",
                              catch_response=True) as r:
            if r.status_code != 201:
                r.failure(f"register {r.status_code}")
                raise StopUser()
            self.auth = {"Authorization": "Bearer " + r.json()["access_token"]}

    @task
    def buy(self) -> None:
        opts = self.environment.parsed_options
        qty = random.randint(1, max(1, opts.quantity))
        body = {"items": [{"ticket_type_id": SALE["ticket_type_id"], "quantity": qty}]}
        headers = {**self.auth, "Idempotency-Key": uuid.uuid4().hex}
        with self.client.post(f"/api/events/{SALE['event_id']}/orders", json=body, headers=headers,
                              name="hold", catch_response=True) as r:
            if r.status_code == 409 and r.json()["error"]["code"] == "sold_out":
                r.success()  # the expected answer once sold out
                raise StopUser()
            if r.status_code != 201:
                r.failure(f"hold {r.status_code}")
                return
            order = r.json()
        with self.client.post(f"/api/orders/{order['id']}/payments", headers=self.auth, name="payment",
                              catch_response=True) as r:
            if r.status_code != 201:
                r.failure(f"payment {r.status_code}")
                raise StopUser()
            payment = r.json()
        # The card goes to the processor, never to Foyer.
        with self.client.post(payment["confirm_url"], data={"client_secret": payment["client_secret"],
                                                            "payment_method_data[card][number]": opts.card},
                              name="sandbox confirm", catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"confirm {r.status_code}")
                raise StopUser()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with self.client.get(f"/api/orders/{order['id']}", headers=self.auth, name="order status",
                                 catch_response=True) as r:
                if r.status_code == 200 and r.json()["status"] == "paid":
                    break
            time.sleep(0.2)
        with self.client.get("/api/me/tickets", headers=self.auth, name="my tickets", catch_response=True) as r:
            if r.status_code != 200 or len(r.json()) < qty:
                r.failure("tickets missing")
        raise StopUser()


class OnSaleSpike(LoadTestShape):
    """Thousands of buyers arrive within seconds of the on-sale, then nobody new; stops by itself."""

    def tick(self):
        opts = self.runner.environment.parsed_options
        t = self.get_run_time()
        if t > opts.run_seconds:
            return None
        users = opts.spike_users if t >= opts.spike_seconds else max(1, math.ceil(opts.spike_users * t / opts.spike_seconds))
        return users, max(1.0, opts.spike_users / max(opts.spike_seconds, 0.1))
