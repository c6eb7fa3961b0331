"""Registration forms over HTTP: questions, validation at order time, holders' edits."""

from __future__ import annotations

from domain.forms import validate_answers
from tests.door.support import buy_free, new_door
from tests.tickets.support import create_type, key, order


async def _question(api, door, **body):
    status, out = await api.post(f"/api/events/{door.event_id}/form/questions", user=door.organizer, json=body)
    assert status == 201, out
    return out


def _fields(body):
    return {d["field"]: d["message"] for d in body["error"]["details"]}


async def test_questions_validation_at_order_time_and_holder_edits(api, db):
    door = await new_door(api, db)
    vip = await create_type(api, door.sale, name="VIP", kind="free", price_cents=0, capacity=10)
    name = await _question(api, door, label="Name on badge", kind="text", required=True, max_length=20)
    age = await _question(api, door, label="Age", kind="number", min_value=0, max_value=120)
    diet = await _question(api, door, label="Diet", kind="single_choice", options=["vegan", "vegetarian", "any"],
                           required=True)
    topics = await _question(api, door, label="Topics", kind="multiple_choice", options=["web", "data", "ops"])
    terms = await _question(api, door, label="I accept the code of conduct", kind="checkbox", required=True)
    birthday = await _question(api, door, label="Birthday", kind="date")
    plus_one = await _question(api, door, label="Plus one", kind="text", required=True, ticket_type_ids=[vip["id"]])
    # organizers' mistakes and strangers
    for bad in ({"label": "X", "kind": "single_choice"}, {"label": "X", "kind": "text", "options": ["a"]},
                {"label": "X", "kind": "text", "ticket_type_ids": [door.event_id]},
                {"label": "X", "kind": "number", "min_value": 5, "max_value": 1},
                {"label": "X", "kind": "color"}):
        status, body = await api.post(f"/api/events/{door.event_id}/form/questions", user=door.organizer, json=bad)
        assert status == 422, (bad, body)
    stranger = await api.register()
    status, _ = await api.post(f"/api/events/{door.event_id}/form/questions", user=stranger,
                               json={"label": "X", "kind": "text"})
    assert status == 403
    status, listed = await api.get(f"/api/events/{door.event_id}/form/questions",
                                   params={"ticket_type_id": door.free_type["id"]})
    assert status == 200 and [q["id"] for q in listed] == [q["id"] for q in (name, age, diet, topics, terms, birthday)]

    buyer = await api.register("Buyer")
    general = [{"ticket_type_id": door.free_type["id"], "quantity": 2}]
    status, body = await order(api, door.sale, buyer, general, key=key())
    assert status == 422 and body["error"]["code"] == "validation_failed"
    assert _fields(body) == {f"answers.{name['id']}": "required", f"answers.{diet['id']}": "required",
                             f"answers.{terms['id']}": "required"}
    wrong = {name["id"]: "x" * 21, age["id"]: 130, diet["id"]: "meat", topics["id"]: ["web", "web"],
             terms["id"]: False, birthday["id"]: "31/12/1990", "nope": 1, plus_one["id"]: "Bob"}
    status, body = await order(api, door.sale, buyer, general, key=key(), answers=wrong)
    assert status == 422
    assert _fields(body) == {
        f"answers.{name['id']}": "at most 20 characters", f"answers.{age['id']}": "at most 120",
        f"answers.{diet['id']}": "must be one of the options", f"answers.{topics['id']}": "an option is chosen twice",
        f"answers.{terms['id']}": "must be checked", f"answers.{birthday['id']}": "must be a date (YYYY-MM-DD)",
        "answers.nope": "not a question for these tickets",
        f"answers.{plus_one['id']}": "not a question for these tickets"}
    good = {name["id"]: "  Ada  ", age["id"]: 36, diet["id"]: "vegan", topics["id"]: ["web", "ops"],
            terms["id"]: True, birthday["id"]: "1815-12-10"}
    status, body = await order(api, door.sale, buyer, general + [{"ticket_type_id": vip["id"], "quantity": 1}],
                               key=key(), answers=good)
    assert status == 422 and _fields(body) == {f"answers.{plus_one['id']}": "required"}
    assert await db.fetchval("SELECT count(*) FROM orders WHERE event_id = $1::uuid", door.event_id) == 0
    status, placed = await order(api, door.sale, buyer, general, key=key(), answers=good)
    assert status == 201, placed
    stored = await db.fetchval("SELECT answers FROM form_answers WHERE order_id = $1::uuid", placed["id"])
    assert stored == {**good, name["id"]: "Ada"}

    # the holder sees and edits their ticket's answers; others cannot
    _, tickets = await api.get("/api/me/tickets", user=buyer)
    t1 = tickets[0]
    status, mine = await api.get(f"/api/tickets/{t1['id']}/answers", user=buyer)
    assert status == 200 and mine["answers"][name["id"]] == "Ada" and mine["editable"] is True
    assert [q["id"] for q in mine["questions"]] == [q["id"] for q in (name, age, diet, topics, terms, birthday)]
    status, body = await api.put(f"/api/tickets/{t1['id']}/answers", user=buyer, json={"answers": {name["id"]: "Grace"}})
    assert status == 422 and set(_fields(body)) == {f"answers.{diet['id']}", f"answers.{terms['id']}"}
    edit = {**good, name["id"]: "Grace"}
    status, mine = await api.put(f"/api/tickets/{t1['id']}/answers", user=buyer, json={"answers": edit})
    assert status == 200 and mine["answers"][name["id"]] == "Grace"
    status, other = await api.get(f"/api/tickets/{tickets[1]['id']}/answers", user=buyer)
    assert other["answers"][name["id"]] == "Ada"  # the other ticket keeps the order's answers
    status, _ = await api.get(f"/api/tickets/{t1['id']}/answers", user=stranger)
    assert status == 404
    status, _ = await api.put(f"/api/tickets/{t1['id']}/answers", user=stranger, json={"answers": edit})
    assert status == 404
    # archived questions are no longer asked; after the event started, answers are frozen
    status, _ = await api.delete(f"/api/events/{door.event_id}/form/questions/{name['id']}", user=door.organizer)
    assert status == 204
    status, placed = await order(api, door.sale, buyer, general, key=key(),
                                 answers={diet["id"]: "any", terms["id"]: True})
    assert status == 201, placed
    await db.execute("UPDATE events SET starts_at = now() - interval '1 hour' WHERE id = $1::uuid", door.event_id)
    status, body = await api.put(f"/api/tickets/{t1['id']}/answers", user=buyer, json={"answers": edit})
    assert status == 409 and body["error"]["code"] == "invalid_state"


async def test_forms_do_not_touch_events_without_questions(api, db):
    door = await new_door(api, db)
    buyer = await api.register()
    tickets = await buy_free(api, door, buyer)
    assert len(tickets) == 1
    status, body = await order(api, door.sale, buyer, [{"ticket_type_id": door.free_type["id"], "quantity": 1}],
                               answers={"x": 1})
    assert status == 422 and _fields(body) == {"answers.x": "not a question for these tickets"}


def test_validate_answers_pure():
    q = {"id": "q", "status": "active", "ticket_type_ids": [], "kind": "number", "required": True,
         "min_value": 1, "max_value": None, "max_length": None, "options": []}
    assert validate_answers([q], {"q": 2.5}, []) == {"q": 2.5}
    for bad in ({"q": True}, {"q": "2"}, {"q": float("nan")}, {"q": 0}, {}):
        try:
            validate_answers([q], bad, [])
        except Exception as exc:
            assert getattr(exc, "code", "") == "validation_failed"
        else:
            raise AssertionError(bad)
