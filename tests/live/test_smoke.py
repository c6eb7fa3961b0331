from __future__ import annotations

from tests.live.helpers import Client, create_event


async def test_join_and_chat_in_process(api, server, database_url):
    org = await api.register("Org")
    event_id = await create_event(database_url, org.id, live_access="public")
    url = str(server.make_url("/"))
    bob = await api.register("Bob")
    a, b = Client(url, org.access_token), Client(url, bob.access_token)
    await a.connect()
    await b.connect()
    room = f"event:{event_id}"
    ack = await a.join(room)
    assert ack["seq"] == 0 and ack["history"] == []
    ack = await b.join(room)
    sent = await a.send(room, "hello")
    assert sent["ok"] and sent["seq"] == 1
    msgs = await b.wait_messages(1)
    assert msgs[0]["text"] == "hello" and msgs[0]["seq"] == 1 and msgs[0]["room"] == room
    await a.disconnect()
    await b.disconnect()
