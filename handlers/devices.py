"""Push devices and notification preferences of the signed-in user."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec
from aiohttp import web

from domain.errors import field_error, not_found
from domain.notify.hub import NotifyHub
from domain.notify.preferences import EMAIL_KINDS, PUSH_KINDS, parse_hhmm, zone
from handlers.api import ApiRequest, Router
from storage import devices as devices_store
from storage import notify as store

router = Router("notifications", "Push devices, notification preferences and quiet hours.")
NOTIFY: web.AppKey[NotifyHub] = web.AppKey("foyer.notify", NotifyHub)


class DeviceBody(msgspec.Struct, forbid_unknown_fields=True):
    platform: Literal["android", "ios", "web"]
    token: Annotated[str, msgspec.Meta(min_length=8, max_length=4096, pattern=r"^[\x21-\x7e]+$")]


class DeviceOut(msgspec.Struct):
    id: uuid.UUID
    platform: str
    token_suffix: str
    created_at: datetime
    last_seen_at: datetime


class DeviceList(msgspec.Struct):
    devices: list[DeviceOut]


class QuietHours(msgspec.Struct, forbid_unknown_fields=True):
    start: Annotated[str, msgspec.Meta(pattern=r"^\d{2}:\d{2}$")]
    end: Annotated[str, msgspec.Meta(pattern=r"^\d{2}:\d{2}$")]


class PreferencesPatch(msgspec.Struct, forbid_unknown_fields=True):
    push: dict[str, bool] | msgspec.UnsetType = msgspec.UNSET
    email: dict[str, bool] | msgspec.UnsetType = msgspec.UNSET
    in_app_and_push: bool | msgspec.UnsetType = msgspec.UNSET
    quiet_hours: QuietHours | None | msgspec.UnsetType = msgspec.UNSET
    timezone: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | msgspec.UnsetType = msgspec.UNSET


class PreferencesOut(msgspec.Struct):
    push: dict[str, bool]
    email: dict[str, bool]
    in_app_and_push: bool
    quiet_hours: QuietHours | None
    timezone: str


@router.post("/api/me/devices", summary="Register this device for push (idempotent per token)", status=201,
             body=DeviceBody, response=DeviceOut)
async def register_device(req: ApiRequest) -> dict:
    """Registering a token that is already known moves it to the caller and refreshes it."""
    limit = req.core.settings.notify.max_devices_per_user
    async with req.core.db.transaction("register_device") as conn:
        device, _ = await devices_store.register(conn, user_id=req.user_id, platform=req.body.platform,
                                                 token=req.body.token, limit=limit)
    return device.public()


@router.get("/api/me/devices", summary="The caller's registered push devices", response=DeviceList)
async def list_devices(req: ApiRequest) -> dict:
    return {"devices": [d.public() for d in await devices_store.list_for_user(req.core.db.pool, req.user_id)]}


@router.delete("/api/me/devices/{id}", summary="Unregister a push device", status=204, errors=("not_found",))
async def delete_device(req: ApiRequest) -> None:
    if not await devices_store.delete(req.core.db.pool, user_id=req.user_id, device_id=req.params["id"]):
        raise not_found("device")


@router.get("/api/me/notification-preferences", summary="Which notifications the caller gets, and quiet hours",
            response=PreferencesOut)
async def get_preferences(req: ApiRequest) -> dict:
    return (await store.get_preferences(req.core.db.pool, req.user_id)).as_dict()


@router.patch("/api/me/notification-preferences", summary="Change notification kinds, quiet hours, time zone",
              body=PreferencesPatch, response=PreferencesOut)
async def patch_preferences(req: ApiRequest) -> dict:
    """Kinds: push/in-app `schedule_change, reminder, announcement, order, question_answered,
    feedback_prompt`; email `schedule_change, reminder, announcement` (order confirmations and
    account emails are always sent). `quiet_hours` are local times in `timezone` (may wrap midnight)."""
    body: PreferencesPatch = req.body
    async with req.core.db.transaction("patch_notification_preferences") as conn:
        current = await store.get_preferences(conn, req.user_id)
        changes: dict = {}
        if body.push is not msgspec.UNSET:
            changes["push_kinds"] = _apply_kinds(current.push_kinds, body.push, PUSH_KINDS, "push")
        if body.email is not msgspec.UNSET:
            changes["email_kinds"] = _apply_kinds(current.email_kinds, body.email, EMAIL_KINDS, "email")
        if body.in_app_and_push is not msgspec.UNSET:
            changes["in_app_and_push"] = body.in_app_and_push
        if body.quiet_hours is not msgspec.UNSET:
            if body.quiet_hours is None:
                changes.update(quiet_start=None, quiet_end=None)
            else:
                changes.update(quiet_start=parse_hhmm(body.quiet_hours.start, "quiet_hours.start"),
                               quiet_end=parse_hhmm(body.quiet_hours.end, "quiet_hours.end"))
        if body.timezone is not msgspec.UNSET:
            zone(body.timezone)
            changes["timezone"] = body.timezone
        updated = dataclasses.replace(current, **changes)
        await store.put_preferences(conn, updated)
    return updated.as_dict()


def _apply_kinds(current: frozenset[str], patch: dict[str, bool], allowed: tuple[str, ...], name: str) -> frozenset[str]:
    kinds = set(current)
    for kind, on in patch.items():
        if kind not in allowed:
            raise field_error(f"{name}.{kind}", f"unknown kind; one of {', '.join(allowed)}")
        (kinds.add if on else kinds.discard)(kind)
    return frozenset(kinds)
