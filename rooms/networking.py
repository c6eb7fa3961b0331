"""Networking: the opt-in attendee directory, connection requests, blocks (HTTP, through
handlers/networking.py), and one-to-one chat in a private room per accepted pair (socket).

HTTP vs socket: directory browsing, profiles, requests, answers and blocks are request/response
over HTTP (paged, cacheable, idempotent, documented in OpenAPI); what must reach a user while
they are connected is a durable room event in their private room `user:{id}` —
`networking:request` for the addressee, `networking:accepted` for the requester — and the
one-to-one chat is the room `dm:{connection_id}`: `room:join` it, send with `dm:send`; messages
are `chat:message` events with chat's guarantees (acked after commit, per-room seq, replay and
history on join, `client_id` dedupe, chat rate limits and banned words, `chat:history`).

Rules:
- `networking.use` (attendees and the event's team) on the event, checked in PostgreSQL;
- the directory lists only other opted-in attendees of the same event; browsing needs your own
  entry (`opt_in_required`); opting out deletes the entry;
- one connection per pair per event (a repeat returns the existing one; a request to someone who
  already asked you accepts theirs); requests are rate-limited per user
  (`networking_request_rate_limit` per `networking_request_rate_window_seconds`);
- blocking hides each from the other's directory and refuses requests and messages both ways;
  the blocker gets `blocked`, the blocked user sees nothing different: their requests stay
  `pending` and are never shown, their messages are acked without a `seq` and never delivered.
"""

from __future__ import annotations

import base64
import re
import uuid
import weakref
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg
import msgspec
import orjson

from domain.errors import FoyerError, field_error, not_found
from domain.identity import Principal
from domain.policy import Action, authorize, decide, load_access
from domain.services import Core
from rooms import names
from rooms.broadcast import deliver, stage
from rooms.chat import clean_text, member_of
from rooms.membership import rate_limited_ms
from rooms.protocol import decode, event_handler, ok
from storage import chat as chat_store
from storage import networking as store
from storage import outbox
from storage.live_limits import LiveLimits
from storage.networking import Connection

if TYPE_CHECKING:
    from rooms.engage import Engagement
    from rooms.service import Live

_limits: weakref.WeakKeyDictionary[Any, LiveLimits] = weakref.WeakKeyDictionary()
_SPACE = re.compile(r"\s+")


class _DmIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    room: str
    text: str
    client_id: str


def limits_of(core: Core) -> LiveLimits:
    lim = _limits.get(core.redis)
    if lim is None:
        lim = _limits[core.redis] = LiveLimits(core.redis, core.keys)
    return lim


def _ms(t: datetime | None) -> int | None:
    return int(t.timestamp() * 1000) if t is not None else None


def entry_view(e: dict[str, Any]) -> dict[str, Any]:
    return {"user": {"id": str(e["user_id"]), "name": e["name"]}, "title": e["title"], "company": e["company"],
            "interests": list(e["interests"]), "bio": e["bio"], "updated_at": e["updated_at"]}


def connection_view(c: Connection | dict[str, Any], me: uuid.UUID, other: dict[str, Any] | None = None) -> dict[str, Any]:
    row = c if isinstance(c, dict) else {f: getattr(c, f) for f in Connection.__slots__}
    outgoing = row["requester_id"] == me
    other_id = row["addressee_id"] if outgoing else row["requester_id"]
    view: dict[str, Any] = {
        "id": str(row["id"]), "event_id": str(row["event_id"]), "status": row["status"],
        "direction": "outgoing" if outgoing else "incoming", "message": row["message"],
        "user": {"id": str(other_id), **(other or {})}, "created_at": row["created_at"],
        "responded_at": row["responded_at"],
    }
    if row["status"] == "accepted":
        view["room"] = f"dm:{row['id']}"
    return view


def fold_interest(text: str) -> str:
    return _SPACE.sub(" ", text.strip().casefold())


# --- directory ------------------------------------------------------------------------------------

async def opt_in(core: Core, principal: Principal | None, event_id: uuid.UUID, *, title: str, company: str,
                 interests: list[str], bio: str) -> dict[str, Any]:
    tags: list[str] = []
    for raw in interests:
        tag = fold_interest(raw)
        if not tag:
            raise field_error("interests", "interests must not be empty")
        if tag not in tags:
            tags.append(tag)
    async with core.db.transaction("networking.opt_in") as tx:
        await authorize(tx, principal, Action.USE_NETWORKING, event_id)
        assert principal is not None
        entry = await store.upsert_entry(tx, event_id, principal.user_id, title=title.strip(),
                                         company=company.strip(), interests=tags, bio=bio.strip())
    return entry_view(entry)


async def my_entry(core: Core, principal: Principal | None, event_id: uuid.UUID) -> dict[str, Any]:
    async with core.db.transaction("networking.me", readonly=True) as tx:
        await authorize(tx, principal, Action.USE_NETWORKING, event_id)
        assert principal is not None
        entry = await store.get_entry(tx, event_id, principal.user_id)
    if entry is None:
        raise not_found("directory entry")
    return entry_view(entry)


async def opt_out(core: Core, principal: Principal | None, event_id: uuid.UUID) -> None:
    async with core.db.transaction("networking.opt_out") as tx:
        await authorize(tx, principal, Action.USE_NETWORKING, event_id)
        assert principal is not None
        await store.delete_entry(tx, event_id, principal.user_id)


def _cursor(entry: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([entry["name"], str(entry["user_id"])])).decode().rstrip("=")


def _after(cursor: str | None) -> tuple[str, uuid.UUID] | None:
    if not cursor:
        return None
    try:
        name, uid = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return str(name), uuid.UUID(uid)
    except (ValueError, TypeError):
        raise field_error("cursor", "not a cursor from this listing") from None


async def browse(core: Core, principal: Principal | None, event_id: uuid.UUID, *, q: str | None,
                 interest: str | None, cursor: str | None, limit: int) -> dict[str, Any]:
    after = _after(cursor)
    async with core.db.transaction("networking.browse", readonly=True) as tx:
        await authorize(tx, principal, Action.USE_NETWORKING, event_id)
        assert principal is not None
        if await store.get_entry(tx, event_id, principal.user_id) is None:
            raise FoyerError("opt_in_required", "join the directory to browse it")
        rows = await store.browse(tx, event_id, principal.user_id, q=(q or "").strip() or None,
                                  interest=fold_interest(interest) if interest else None, after=after, limit=limit)
    return {"entries": [entry_view(r) for r in rows],
            "next_cursor": _cursor(rows[-1]) if len(rows) == limit else None}


# --- connections ----------------------------------------------------------------------------------

async def request(core: Core, principal: Principal | None, event_id: uuid.UUID, target: uuid.UUID,
                  message: str) -> tuple[dict[str, Any], bool]:
    """Returns (the connection as the caller sees it, created)."""
    settings = core.settings.live
    assert principal is not None
    me = principal.user_id
    if target == me:
        raise field_error("user_id", "you cannot connect with yourself")
    message = message.strip()
    events = []
    async with core.db.transaction("networking.request") as tx:
        await authorize(tx, principal, Action.USE_NETWORKING, event_id)
        mine = await store.get_entry(tx, event_id, me)
        if mine is None:
            raise FoyerError("opt_in_required", "join the directory to send requests")
        theirs = await store.get_entry(tx, event_id, target)
        i_block, they_block = await store.blocks_between(tx, me, target)
        if i_block:
            raise FoyerError("blocked", "you blocked this user: unblock them first")
        if theirs is None:
            raise not_found("attendee")
        other = {"name": theirs["name"], "title": theirs["title"], "company": theirs["company"]}
        existing = await store.get_pair(tx, event_id, me, target, for_update=True)
        if existing is None:
            wait = await limits_of(core).hit("net_req", str(me), limit=settings.networking_request_rate_limit,
                                             window=settings.networking_request_rate_window_seconds)
            if wait:
                raise rate_limited_ms(wait, "too many connection requests, slow down")
            created = await store.insert_request(tx, event_id, me, target, message=message, silenced=they_block)
            if created is not None:
                if not they_block:
                    await outbox.append(tx, type="connection.requested", event_id=event_id, data={
                        "connection_id": str(created.id), "requester_id": str(me), "addressee_id": str(target)})
                    events.append(await stage(tx, room=f"user:{target}", event="networking:request", data={
                        "request": connection_view(created, target, {
                            "name": mine["name"], "title": mine["title"], "company": mine["company"]})}))
                result = (connection_view(created, me, other), True)
            else:  # a concurrent request for the same pair committed first (waited for): use it
                existing = await store.get_pair(tx, event_id, me, target, for_update=True)
                assert existing is not None
        if existing is not None:
            if existing.status == "pending" and existing.requester_id == target and not existing.silenced:
                accepted, ev = await _accept(tx, existing, me)  # they asked first: a mutual request
                events.append(ev)
                result = (connection_view(accepted, me, other), False)
            else:
                result = (connection_view(existing, me, other), False)
    await deliver(core, *events)
    return result


async def _accept(tx: Any, c: Connection, me: uuid.UUID) -> tuple[Connection, Any]:
    accepted = await store.respond(tx, c.id, "accepted")
    await outbox.append(tx, type="connection.accepted", event_id=c.event_id, data={
        "connection_id": str(c.id), "requester_id": str(c.requester_id), "addressee_id": str(c.addressee_id)})
    who = await store.get_entry(tx, c.event_id, me)
    other = {"name": who["name"], "title": who["title"], "company": who["company"]} if who else {}
    ev = await stage(tx, room=f"user:{c.requester_id}", event="networking:accepted",
                     data={"connection": connection_view(accepted, c.requester_id, other)})
    return accepted, ev


async def respond(core: Core, principal: Principal | None, connection_id: uuid.UUID, *, accept: bool) -> dict[str, Any]:
    assert principal is not None
    me = principal.user_id
    ev = None
    async with core.db.transaction("networking.respond") as tx:
        c = await store.get_connection(tx, connection_id, for_update=True)
        if c is None or c.addressee_id != me or c.silenced:
            raise not_found("connection request")
        await authorize(tx, principal, Action.USE_NETWORKING, c.event_id, subject="connection request")
        if c.status != "pending":
            raise FoyerError("invalid_state", f"the request is already {c.status}")
        if accept:
            c, ev = await _accept(tx, c, me)
        else:
            c = await store.respond(tx, c.id, "declined")
    if ev is not None:
        await deliver(core, ev)
    return connection_view(c, me)


async def remove(core: Core, principal: Principal | None, connection_id: uuid.UUID) -> None:
    """Withdraw a request, or end a connection (its private room then refuses joins and messages)."""
    assert principal is not None
    async with core.db.transaction("networking.remove") as tx:
        c = await store.get_connection(tx, connection_id, for_update=True)
        if c is None or not c.involves(principal.user_id) or (c.silenced and c.addressee_id == principal.user_id):
            raise not_found("connection")
        await store.delete_connection(tx, connection_id)


async def connections(core: Core, principal: Principal | None, event_id: uuid.UUID) -> dict[str, Any]:
    assert principal is not None
    async with core.db.transaction("networking.connections", readonly=True) as tx:
        await authorize(tx, principal, Action.USE_NETWORKING, event_id)
        rows = await store.list_connections(tx, event_id, principal.user_id)
    return {"connections": [connection_view(r, principal.user_id, {
        "name": r["other_name"], "title": r["other_title"], "company": r["other_company"]}) for r in rows]}


# --- blocks ---------------------------------------------------------------------------------------

async def block(core: Core, principal: Principal | None, target: uuid.UUID) -> bool:
    assert principal is not None
    if target == principal.user_id:
        raise field_error("user_id", "you cannot block yourself")
    async with core.db.transaction("networking.block") as tx:
        if not await chat_store.user_is_known(tx, target):
            raise not_found("user")
        created = await store.block(tx, principal.user_id, target)
        await store.silence_requests(tx, from_user=target, to_user=principal.user_id)
        await store.drop_requests(tx, from_user=principal.user_id, to_user=target)
    return created


async def unblock(core: Core, principal: Principal | None, target: uuid.UUID) -> None:
    assert principal is not None
    async with core.db.transaction("networking.unblock") as tx:
        await store.unblock(tx, principal.user_id, target)


async def blocks(core: Core, principal: Principal | None) -> dict[str, Any]:
    assert principal is not None
    async with core.db.connection() as conn:
        rows = await store.list_blocks(conn, principal.user_id)
    return {"blocks": [{"user": {"id": str(r["user_id"]), "name": r["name"]}, "created_at": r["created_at"]}
                       for r in rows]}


# --- the private room of a pair: dm:{connection_id} --------------------------------------------------

_dm_events: dict[uuid.UUID, uuid.UUID] = {}  # connection -> event (immutable): a query less per message


async def _dm_event_id(conn: Any, connection_id: uuid.UUID) -> uuid.UUID | None:
    cached = _dm_events.get(connection_id)
    if cached is not None:
        return cached
    event_id = await store.connection_event(conn, connection_id)
    if event_id is None:
        raise not_found("room")
    if len(_dm_events) > 100_000:
        _dm_events.clear()
    _dm_events[connection_id] = event_id
    return event_id


async def _dm_authorize(conn: Any, principal: Principal, rn: names.RoomName) -> names.JoinGrant:
    c = await store.get_connection(conn, rn.id)
    if c is None or not c.involves(principal.user_id) or c.status != "accepted":
        raise not_found("room")
    decide(await load_access(conn, principal, c.event_id, subject="room"), Action.USE_NETWORKING, subject="room")
    return names.JoinGrant(rn, c.event_id, False, None)


names.register_kind("dm", event_id=_dm_event_id, authorize=_dm_authorize)


def bind(live: Live, eng: Engagement) -> None:
    core = live.core
    sio = live.sio
    settings = core.settings.live

    @sio.on("dm:send", namespace="/live")
    @event_handler
    async def dm_send(sid: str, data: Any) -> Any:
        req = decode(_DmIn, data)
        rn = names.parse_room(req.room)
        if rn.kind != "dm":
            raise field_error("room", "dm:send is for private rooms (dm:<connection id>)")
        member = member_of(live.conn(sid), rn.name)
        conn = member.conn
        if not 1 <= len(req.client_id) <= 64:
            raise field_error("client_id", "must be 1 to 64 characters")
        text = clean_text(req.text, max_length=settings.live_chat_max_length, banned=eng.banned)
        created = datetime.now(UTC)
        message_id = uuid.uuid4()
        try:
            return await _dm_write(tx_name="dm.send", rn=rn, conn=conn, req=req, text=text, created=created,
                                   message_id=message_id)
        except asyncpg.UniqueViolationError:  # a concurrent retry with the same client_id won
            dup = await chat_store.find_by_client_id(core.db, rn.name, conn.user_id, req.client_id)
            if dup is None:
                raise
            return ok(id=str(dup[0]), seq=dup[1], duplicate=True)

    async def _dm_write(*, tx_name: str, rn: names.RoomName, conn: Any, req: _DmIn, text: str, created: datetime,
                        message_id: uuid.UUID) -> Any:
        async with core.db.transaction(tx_name) as tx:
            dup = await chat_store.find_by_client_id(tx, rn.name, conn.user_id, req.client_id)
            if dup is not None:
                return ok(id=str(dup[0]), seq=dup[1], duplicate=True)
            c = await store.get_connection(tx, rn.id)
            if c is None or c.status != "accepted" or not c.involves(conn.user_id):
                raise not_found("room")
            i_block, they_block = await store.blocks_between(tx, conn.user_id, c.other(conn.user_id))
            if i_block:
                raise FoyerError("blocked", "you blocked this user: unblock them to write")
            await eng.rate(None, conn.user_id, "chat", limit=settings.live_chat_rate_limit,
                           window=settings.live_chat_rate_window_seconds)
            if they_block:  # silent: acked like a message, never stored or delivered
                return ok(id=str(message_id), seq=None)
            await chat_store.insert_message(tx, id=message_id, room=rn.name, user_id=conn.user_id,
                                            client_id=req.client_id, text=text, reply_to=None, created_at=created)
            await outbox.append(tx, type="direct_message.sent", event_id=c.event_id, data={
                "message_id": str(message_id), "connection_id": str(c.id), "from_user_id": str(conn.user_id),
                "to_user_id": str(c.other(conn.user_id)), "length": len(text)})
            ev = await stage(tx, room=rn.name, event="chat:message", actor_id=conn.user_id, data={
                "id": str(message_id), "user": {"id": str(conn.user_id), "name": conn.name or ""}, "text": text,
                "ts": int(created.timestamp() * 1000)})
            await chat_store.set_message_seq(tx, message_id, ev.seq)
        await deliver(core, ev)
        return ok(id=str(message_id), seq=ev.seq)
