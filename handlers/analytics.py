"""Organizer analytics over HTTP: JSON, or CSV with `?format=csv`.

Every route authorizes `Action.VIEW_ANALYTICS` on the event (organizers and admins, 2FA
required; others get `not_found`/`forbidden`/`two_factor_required` from domain.policy) and reads
only the aggregate tables the analytics consumers maintain (domain/analytics/consumers.py).
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import msgspec
from aiohttp import web

from domain.policy import Action, authorize
from handlers.api import ApiRequest, Router
from storage import analytics as agg

router = Router("analytics", "Organizer analytics (2FA): sales, check-in, attendance, engagement, live, "
                             "referrals, feedback. JSON or CSV.")

ERRORS = ("unauthorized", "not_found", "forbidden", "two_factor_required")


class ReportQuery(msgspec.Struct, forbid_unknown_fields=True):
    format: Literal["json", "csv"] = "json"


class SalesQuery(msgspec.Struct, forbid_unknown_fields=True):
    format: Literal["json", "csv"] = "json"
    bucket: Literal["hour", "day"] = "hour"


def _csv(name: str, rows: list[dict[str, Any]]) -> web.Response:
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v.isoformat() if hasattr(v, "isoformat") else v)
                             for k, v in row.items()})
    return web.Response(text=out.getvalue(), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})


async def _report(req: ApiRequest, name: str, build: Callable[[Any, uuid.UUID], Awaitable[dict[str, Any]]],
                  csv_rows: Callable[[dict[str, Any]], list[dict[str, Any]]]) -> Any:
    event_id: uuid.UUID = req.params["id"]
    async with req.core.db.connection() as conn:
        await authorize(conn, req.principal, Action.VIEW_ANALYTICS, event_id)
        data = await build(conn, event_id)
    if req.query.format == "csv":
        return _csv(f"{name}-{event_id}", csv_rows(data))
    return {"event_id": event_id, **data}


@router.get("/api/events/{id}/analytics", summary="Headline figures of an event", query=ReportQuery, errors=ERRORS)
async def analytics_summary(req: ApiRequest) -> Any:
    async def build(conn: Any, event_id: uuid.UUID) -> dict[str, Any]:
        t = await agg.totals(conn, event_id)
        issued = t.get("tickets_issued") or 0
        t["checkin_rate"] = round(t["checked_in"] / issued, 4) if issued else None
        t.pop("updated_at", None)
        return {"totals": t}

    return await _report(req, "summary", build, lambda d: [d["totals"]])


@router.get("/api/events/{id}/analytics/sales",
            summary="Registrations and revenue over time and by ticket type, sell-through per type",
            query=SalesQuery, errors=ERRORS)
async def analytics_sales(req: ApiRequest) -> Any:
    async def build(conn: Any, event_id: uuid.UUID) -> dict[str, Any]:
        return {"bucket": req.query.bucket, "totals": await agg.totals(conn, event_id),
                "series": await agg.sales_series(conn, event_id, unit=req.query.bucket),
                "by_type": await agg.sales_by_type(conn, event_id)}

    return await _report(req, "sales", build, lambda d: d["series"])


@router.get("/api/events/{id}/analytics/checkins",
            summary="Check-in rate and arrivals/exits per 5 minutes per gate", query=ReportQuery, errors=ERRORS)
async def analytics_checkins(req: ApiRequest) -> Any:
    async def build(conn: Any, event_id: uuid.UUID) -> dict[str, Any]:
        t = await agg.totals(conn, event_id)
        issued = t.get("tickets_issued") or 0
        gates: dict[str, list[dict[str, Any]]] = {}
        for row in await agg.gate_series(conn, event_id):
            gates.setdefault(row["gate"], []).append(
                {"bucket": row["bucket"], "arrivals": row["arrivals"], "exits": row["exits"]})
        return {"tickets_issued": issued, "checked_in": t["checked_in"],
                "checkin_rate": round(t["checked_in"] / issued, 4) if issued else None,
                "bucket_seconds": 300, "gates": [{"gate": g, "series": s} for g, s in gates.items()]}

    def rows(d: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"gate": g["gate"], **p} for g in d["gates"] for p in g["series"]]

    return await _report(req, "checkins", build, rows)


@router.get("/api/events/{id}/analytics/attendance",
            summary="Session attendance heat map: distinct people per session per 15 minutes",
            query=ReportQuery, errors=ERRORS)
async def analytics_attendance(req: ApiRequest) -> Any:
    async def build(conn: Any, event_id: uuid.UUID) -> dict[str, Any]:
        rows = await agg.attendance(conn, event_id)
        buckets = sorted({r["bucket"] for r in rows})
        index = {b: i for i, b in enumerate(buckets)}
        sessions: dict[Any, dict[str, Any]] = {}
        for r in rows:
            s = sessions.setdefault(r["session_id"], {"session_id": r["session_id"], "title": r["title"],
                                                      "counts": [0] * len(buckets)})
            s["counts"][index[r["bucket"]]] = r["people"]
        return {"bucket_seconds": 900, "buckets": buckets, "sessions": list(sessions.values()), "_rows": rows}

    data = await _report(req, "attendance", build, lambda d: d["_rows"])
    if isinstance(data, dict):
        data.pop("_rows", None)
    return data


@router.get("/api/events/{id}/analytics/engagement",
            summary="Engagement per session: messages, questions, votes, unique participants",
            query=ReportQuery, errors=ERRORS)
async def analytics_engagement(req: ApiRequest) -> Any:
    async def build(conn: Any, event_id: uuid.UUID) -> dict[str, Any]:
        return {"sessions": await agg.engagement(conn, event_id)}

    return await _report(req, "engagement", build, lambda d: d["sessions"])


@router.get("/api/events/{id}/analytics/live",
            summary="Live activity now: connected and active users per room, messages per minute",
            query=ReportQuery, errors=ERRORS)
async def analytics_live(req: ApiRequest) -> Any:
    """Also pushed every few seconds to the event's `staff:{id}` room as `analytics:live`."""
    from domain.analytics.live import live_now

    async def build(conn: Any, event_id: uuid.UUID) -> dict[str, Any]:
        return await live_now(req.core, conn, event_id)

    return await _report(req, "live", build, lambda d: d["per_minute"])


@router.get("/api/events/{id}/analytics/referrals",
            summary="Referral sources: visits, registrations and revenue per code and channel",
            query=ReportQuery, errors=ERRORS)
async def analytics_referrals(req: ApiRequest) -> Any:
    async def build(conn: Any, event_id: uuid.UUID) -> dict[str, Any]:
        return {"sources": await agg.referrals(conn, event_id)}

    return await _report(req, "referrals", build, lambda d: d["sources"])


@router.get("/api/events/{id}/analytics/feedback",
            summary="Feedback results for the event and per session (count, average, histogram)",
            query=ReportQuery, errors=ERRORS)
async def analytics_feedback(req: ApiRequest) -> Any:
    async def build(conn: Any, event_id: uuid.UUID) -> dict[str, Any]:
        return {"results": await agg.feedback(conn, event_id)}

    return await _report(req, "feedback", build, lambda d: d["results"])
