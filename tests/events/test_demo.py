"""`run.py demo`: accounts and a published sample conference, idempotent, logins that work."""

from __future__ import annotations

import re

import pyotp

from server.demo import DemoResult, run_demo


async def test_demo_twice(api, settings, db, capsys):
    seen: list[DemoResult] = []

    async def hook(core, result: DemoResult) -> None:
        seen.append(result)
        result.lines.append("hook was here")

    assert await run_demo(settings, password="demo-password-1", hooks=[hook]) == 0
    first = capsys.readouterr().out
    assert "Created the demo event: FoyerConf Demo" in first and "hook was here" in first
    assert first.count("demo-password-1") == 3
    secret = re.search(r"two-factor secret: ([A-Z2-7]+)", first).group(1)
    result = seen[0]
    eid = str(result.event_id)
    counts = await db.fetchrow(
        """SELECT (SELECT count(*) FROM events) AS events, (SELECT count(*) FROM sessions) AS sessions,
                  (SELECT count(*) FROM speakers) AS speakers, (SELECT count(*) FROM users) AS users,
                  (SELECT count(*) FROM event_members) AS members, (SELECT count(*) FROM agenda_items) AS agenda""")
    assert dict(counts) == {"events": 1, "sessions": 8, "speakers": 4, "users": 3, "members": 3, "agenda": 2}

    status, schedule = await api.get(f"/api/events/{eid}/schedule")
    assert status == 200 and schedule["event"]["status"] == "published"
    assert {s["room"] for s in schedule["sessions"]} == {"Main Hall", "Workshop Room"}
    status, listing = await api.get("/api/events", params={"q": "foyerconf"})
    assert [e["id"] for e in listing["items"]] == [eid]

    # run again, without --password: nothing duplicated, fresh passwords printed and working
    assert await run_demo(settings, hooks=[]) == 0
    second = capsys.readouterr().out
    assert "Found the demo event" in second and "demo-password-1" not in second
    assert f"two-factor secret: {secret}" in second
    again = await db.fetchrow(
        """SELECT (SELECT count(*) FROM events) AS events, (SELECT count(*) FROM sessions) AS sessions,
                  (SELECT count(*) FROM speakers) AS speakers, (SELECT count(*) FROM users) AS users,
                  (SELECT count(*) FROM event_members) AS members, (SELECT count(*) FROM agenda_items) AS agenda""")
    assert again == counts
    passwords = dict(re.findall(r"^  (\w+)\s+\S+@foyer-demo\.example\.org\s+password: (\S+)", second, re.M))
    assert set(passwords) == {"organizer", "moderator", "attendee"}
    status, body = await api.post("/api/auth/login", json={"email": "moderator@foyer-demo.example.org",
                                                           "password": passwords["moderator"]})
    assert status == 200, body
    status, body = await api.post("/api/auth/login", json={"email": "organizer@foyer-demo.example.org",
                                                           "password": passwords["organizer"]})
    assert status == 401 and body["error"]["code"] == "totp_required"
    status, tokens = await api.post("/api/auth/login", json={
        "email": "organizer@foyer-demo.example.org", "password": passwords["organizer"],
        "totp_code": pyotp.TOTP(secret).now()})
    assert status == 200, tokens
    status, mine = await api.get("/api/me/events", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert [e["id"] for e in mine["items"]] == [eid]
