"""Public share pages (`/e/{slug}`), share links with referral codes, campaign codes, attribution."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec
from aiohttp import web

from domain.errors import FoyerError
from domain.notify.share import CSP, VISITOR_COOKIE
from handlers.api import SCHEME, ApiRequest, Router, json_response
from handlers.devices import NOTIFY

router = Router("sharing", "Public event pages with social metadata, share links and referral attribution.")


class ShareQuery(msgspec.Struct):  # unknown params (utm_*, fbclid, ...) are ignored, not rejected
    ref: str | None = None
    ch: str | None = None


class ShareLinks(msgspec.Struct):
    url: str
    code: str | None
    links: dict[str, str]


class CampaignBody(msgspec.Struct, forbid_unknown_fields=True):
    campaign: Annotated[str, msgspec.Meta(min_length=1, max_length=80, pattern=r"^[\w .\-]+$")]


class CampaignOut(msgspec.Struct):
    code: str
    campaign: str
    url: str
    links: dict[str, str]


class ReferralUser(msgspec.Struct):
    id: uuid.UUID
    name: str


class ReferralCode(msgspec.Struct):
    code: str
    campaign: str | None
    user: ReferralUser | None
    visits: int
    registrations: int
    revenue: dict[str, int]
    created_at: datetime


class ReferralCodes(msgspec.Struct):
    codes: list[ReferralCode]


class AttributionBody(msgspec.Struct, forbid_unknown_fields=True):
    code: Annotated[str, msgspec.Meta(min_length=4, max_length=32)]
    channel: Annotated[str, msgspec.Meta(max_length=20)] | None = None


@router.get("/e/{slug}", summary="The public share page of an event (HTML with Open Graph/Twitter metadata)",
            auth="none", query=ShareQuery, content_type="text/html", errors=("not_found",))
async def share_page(req: ApiRequest) -> web.Response:
    """Rendered for crawlers without JavaScript. `?ref=<code>&ch=<network>` records a referral visit
    (once per visitor per day)."""
    sharing = req.app[NOTIFY].sharing
    try:
        html, cookie = await sharing.render_page(
            slug=req.params["slug"], ref=req.query.ref, channel=req.query.ch, client_ip=req.client_ip,
            user_agent=req.header("User-Agent") or "", cookie=req.request.cookies.get(VISITOR_COOKIE))
    except FoyerError as exc:
        if exc.code != "not_found":
            raise
        page = sharing.env.get_template("share/not_found.html").render()
        return web.Response(text=page, status=404, content_type="text/html",
                            headers={"Content-Security-Policy": CSP, "Cache-Control": "no-store"})
    response = web.Response(text=html, content_type="text/html", headers={
        # The default CSP is for JSON; this page needs its inline (hashed) style and remote images.
        "Content-Security-Policy": CSP,
        "Cache-Control": "private, no-cache",
    })
    if cookie:
        response.set_cookie(VISITOR_COOKIE, cookie, max_age=365 * 86400, path="/e/", httponly=True,
                            samesite="Lax", secure=req.request.get(SCHEME) == "https")
    return response


@router.get("/api/events/{id}/share-links", summary="Share links per network (with the caller's referral code)",
            auth="optional", response=ShareLinks, errors=("invalid_state",))
async def share_links(req: ApiRequest) -> dict[str, Any]:
    """Signed-in callers get their personal referral code in every link (`?ref=`), per network (`&ch=`)."""
    return await req.app[NOTIFY].sharing.links_for(req.principal, req.params["id"])


@router.post("/api/events/{id}/referral-codes", summary="Create (or get) a campaign referral code (organizers)",
             status=201, body=CampaignBody, response=CampaignOut, errors=("forbidden",))
async def create_campaign(req: ApiRequest) -> Any:
    body, created = await req.app[NOTIFY].sharing.create_campaign(req.principal, req.params["id"],
                                                                  req.body.campaign.strip())
    return body if created else json_response(body, status=200)  # an existing campaign: 200, not 201


@router.get("/api/events/{id}/referral-codes", summary="Referral codes with visits, registrations and revenue",
            response=ReferralCodes, errors=("forbidden", "two_factor_required"))
async def list_codes(req: ApiRequest) -> dict[str, Any]:
    return {"codes": await req.app[NOTIFY].sharing.list_codes(req.principal, req.params["id"])}


@router.post("/api/events/{id}/referral", summary="Credit the referral the caller arrived with", status=204,
             body=AttributionBody)
async def attribute(req: ApiRequest) -> None:
    """Call after sign-in with the `ref` (and `ch`) of the share link; the latest referral within the
    window is credited when the caller's order is confirmed."""
    await req.app[NOTIFY].sharing.attribute(req.principal, req.params["id"], req.body.code, req.body.channel)
