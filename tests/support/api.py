"""A thin test client for Foyer's HTTP API over a real socket, with account helpers."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pyotp

_counter = itertools.count()
DEFAULT_PASSWORD = "correct horse battery staple"


@dataclass
class User:
    id: str
    email: str
    name: str
    password: str
    access_token: str
    refresh_token: str
    totp_secret: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


class Api:
    """Calls a running Foyer node at `base_url`. Methods return (status, json_or_text)."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session

    async def request(
        self, method: str, path: str, *, user: User | None = None, json: Any = None,
        headers: dict[str, str] | None = None, params: dict[str, Any] | None = None, data: Any = None,
    ) -> tuple[int, Any]:
        hdrs = dict(headers or {})
        if user is not None:
            hdrs.update(user.headers)
        async with self.session.request(method, self.base_url + path, json=json, headers=hdrs, params=params,
                                        data=data) as resp:
            if resp.content_type == "application/json":
                body = await resp.json()
            else:
                body = await resp.text()
            self.last_response = resp
            return resp.status, body

    async def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> tuple[int, Any]:
        return await self.request("POST", path, **kw)

    async def patch(self, path: str, **kw: Any) -> tuple[int, Any]:
        return await self.request("PATCH", path, **kw)

    async def put(self, path: str, **kw: Any) -> tuple[int, Any]:
        return await self.request("PUT", path, **kw)

    async def delete(self, path: str, **kw: Any) -> tuple[int, Any]:
        return await self.request("DELETE", path, **kw)

    # --- accounts -----------------------------------------------------------------------------

    async def register(self, name: str | None = None, *, email: str | None = None,
                       password: str = DEFAULT_PASSWORD) -> User:
        n = next(_counter)
        name = name or f"User {n}"
        email = email or f"user{n}-{uuid.uuid4().hex[:8]}@example.org"
        status, body = await self.post("/api/auth/register", json={"email": email, "password": password, "name": name})
        assert status == 201, (status, body)
        return User(id=body["user"]["id"], email=email, name=name, password=password,
                    access_token=body["access_token"], refresh_token=body["refresh_token"])

    async def enable_2fa(self, user: User) -> User:
        status, body = await self.post("/api/auth/2fa/setup", user=user)
        assert status == 200, (status, body)
        secret = body["secret"]
        status, body = await self.post("/api/auth/2fa/enable", user=user, json={"code": pyotp.TOTP(secret).now()})
        assert status == 200, (status, body)
        user.totp_secret = secret
        return user

    async def register_2fa(self, name: str | None = None) -> User:
        """A user with two-factor auth enabled (required for organizers publishing events)."""
        return await self.enable_2fa(await self.register(name))

    async def login(self, user: User, *, totp_code: str | None = None) -> tuple[int, Any]:
        payload: dict[str, Any] = {"email": user.email, "password": user.password}
        if totp_code is not None:
            payload["totp_code"] = totp_code
        return await self.post("/api/auth/login", json=payload)
