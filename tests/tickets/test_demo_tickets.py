"""`run.py demo` with the ticketing hook: a conference ready to sell, idempotently."""

from __future__ import annotations

from domain.tickets.demo import SPEAKER_CODE, add_demo_tickets
from server.demo import run_demo
from tests.tickets.support import key


async def test_demo_adds_ticket_types_once(api, settings, db, capsys):
    assert await run_demo(settings, password="demo-password-1", hooks=[add_demo_tickets]) == 0
    out = capsys.readouterr().out
    assert "Tickets (created" in out and SPEAKER_CODE in out
    event_id = await db.fetchval("SELECT id FROM events")
    assert await run_demo(settings, password="demo-password-1", hooks=[add_demo_tickets]) == 0
    assert "Tickets (already there" in capsys.readouterr().out
    rows = await db.fetch("SELECT name, kind, visibility, quota_id FROM ticket_types ORDER BY name")
    assert len(rows) == 6 and {r["kind"] for r in rows} == {"general", "vip", "early_bird", "free"}
    assert sum(r["quota_id"] is not None for r in rows) == 2
    assert await db.fetchval("SELECT capacity FROM ticket_quotas") == 150
    buyer = await api.register()
    status, public = await api.get(f"/api/events/{event_id}/ticket-types", user=buyer)
    assert status == 200 and len(public) == 5  # the hidden one needs its code
    status, with_code = await api.get(f"/api/events/{event_id}/ticket-types?access_code={SPEAKER_CODE}", user=buyer)
    assert len(with_code) == 6
    free = next(t for t in public if t["kind"] == "free")
    status, body = await api.post(f"/api/events/{event_id}/orders", user=buyer, headers={"Idempotency-Key": key()},
                                  json={"items": [{"ticket_type_id": free["id"], "quantity": 1}]})
    assert status == 201 and body["status"] == "confirmed", body
