"""The small framework every HTTP handler uses: declarative routes, validation, auth, OpenAPI.

A handler module creates a `Router`, decorates async functions with `@router.get/post/...`,
and the server mounts every router. The decorator does, in order:

1. authentication (`auth="required" | "optional" | "none"`): the bearer access JWT becomes
   `req.principal`, or the request fails with `unauthorized` / `invalid_token` / `token_expired`;
2. path parameters: every `{…id}` parameter must be a UUID, else `not_found` (no probing);
3. query and body validation with msgspec (`query=`/`body=` types): unknown fields are rejected
   (no mass assignment of `role`, `owner_id`, …) and every failure is `validation_failed`
   with field-level `details`;
4. the handler; its return value is serialized with orjson (dataclasses, msgspec Structs,
   UUIDs and datetimes included) with the route's status, or passed through when it is
   already a `web.StreamResponse`.

The same declaration feeds the OpenAPI 3.1 document served at `/api/openapi.json`, so a route
cannot exist without being documented.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
import orjson
from aiohttp import web

from domain.errors import FoyerError, validation_failed
from domain.identity import Principal
from domain.services import Core

CORE: web.AppKey[Core] = web.AppKey("foyer.core", Core)
# Per-request values set by the middlewares and the route wrapper.
REQUEST_ID: web.RequestKey[str] = web.RequestKey("foyer.request_id", str)
CLIENT_IP: web.RequestKey[str] = web.RequestKey("foyer.client_ip", str)
SCHEME: web.RequestKey[str] = web.RequestKey("foyer.scheme", str)
PRINCIPAL: web.RequestKey[Principal | None] = web.RequestKey("foyer.principal", object)  # type: ignore[arg-type]

Auth = Literal["required", "optional", "none"]
Handler = Callable[["ApiRequest"], Awaitable[Any]]

_PATH_PARAM = re.compile(r"\{([a-zA-Z_][a-zA-Z0-9_]*)\}")
_MSGSPEC_PATH = re.compile(r"at `\$(.*)`$")


@dataclass(slots=True)
class ApiRequest:
    """What a handler receives: the aiohttp request plus validated inputs and the caller."""

    request: web.Request
    core: Core
    principal: Principal | None
    params: dict[str, Any]
    query: Any
    body: Any

    @property
    def app(self) -> web.Application:
        return self.request.app

    @property
    def user_id(self) -> uuid.UUID:
        """The caller's id; only valid on `auth="required"` routes."""
        assert self.principal is not None
        return self.principal.user_id

    @property
    def client_ip(self) -> str:
        return self.request.get(CLIENT_IP) or self.request.remote or "unknown"

    def header(self, name: str) -> str | None:
        return self.request.headers.get(name)


@dataclass(frozen=True, slots=True)
class RouteSpec:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    auth: Auth
    status: int
    body: Any = None
    query: Any = None
    response: Any = None
    errors: tuple[str, ...] = ()
    description: str = ""
    content_type: str = "application/json"
    operation_id: str = ""
    headers: tuple[str, ...] = ()  # documented request headers (e.g. Idempotency-Key)
    extra: dict[str, Any] = field(default_factory=dict)
    idempotency: str | None = None  # scope: replay the first 2xx per Idempotency-Key (storage/idempotency.py)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, uuid.UUID):  # asyncpg's UUID subclass, which orjson does not take natively
        return str(obj)
    if isinstance(obj, msgspec.Struct):
        return msgspec.to_builtins(obj)
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    raise TypeError(f"cannot serialize {type(obj).__name__}")


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, default=_json_default, option=orjson.OPT_NON_STR_KEYS)


def json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=dumps(data), status=status, content_type="application/json", headers=headers)


def _validation_details(exc: msgspec.ValidationError, where: str) -> list[dict[str, str]]:
    text = str(exc)
    match = _MSGSPEC_PATH.search(text)
    path = match.group(1) if match else ""
    message = text[: match.start()].rstrip(" -") if match else text
    field_name = path.lstrip(".").replace("[", ".").replace("]", "") or where
    if message.startswith("Object contains unknown field"):
        unknown = re.search(r"`([^`]+)`", message)
        if unknown:
            field_name = f"{path.lstrip('.')}.{unknown.group(1)}".lstrip(".") if path else unknown.group(1)
            message = "unknown field (not settable here)"
    elif message.startswith("Object missing required field"):
        missing = re.search(r"`([^`]+)`", message)
        if missing:
            field_name = f"{path.lstrip('.')}.{missing.group(1)}".lstrip(".") if path else missing.group(1)
            message = "required"
    return [{"field": field_name, "message": message}]


def decode_body(raw: bytes, typ: Any) -> Any:
    if not raw:
        raise validation_failed([{"field": "body", "message": "a JSON body is required"}])
    try:
        return msgspec.json.decode(raw, type=typ)
    except msgspec.ValidationError as exc:
        raise validation_failed(_validation_details(exc, "body")) from None
    except msgspec.DecodeError:
        raise validation_failed([{"field": "body", "message": "malformed JSON"}]) from None


def decode_query(request: web.Request, typ: Any) -> Any:
    raw: dict[str, Any] = {}
    for key in request.query:
        values = request.query.getall(key)
        raw[key] = values if len(values) > 1 else values[0]
    try:
        return msgspec.convert(raw, type=typ, strict=False)
    except msgspec.ValidationError as exc:
        raise validation_failed(_validation_details(exc, "query")) from None


def path_params(path: str) -> tuple[str, ...]:
    """The `{name}`s of a route template, in order (computed once per route, not per request)."""
    return tuple(_PATH_PARAM.findall(path))


def parse_params(request: web.Request, names: tuple[str, ...]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name in names:
        value = request.match_info[name]
        if name == "id" or name.endswith("_id"):
            try:
                params[name] = uuid.UUID(value)
            except ValueError:
                raise FoyerError("not_found", "not found") from None
        else:
            params[name] = value
    return params


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class Router:
    """Collects the routes of one handler module (one OpenAPI tag)."""

    def __init__(self, tag: str, description: str = "") -> None:
        self.tag = tag
        self.description = description
        self.specs: list[RouteSpec] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        auth: Auth = "required",
        status: int = 200,
        body: Any = None,
        query: Any = None,
        response: Any = None,
        errors: tuple[str, ...] = (),
        description: str = "",
        content_type: str = "application/json",
        headers: tuple[str, ...] = (),
        idempotency: str | None = None,
        **extra: Any,
    ) -> Callable[[Handler], Handler]:
        if idempotency and "Idempotency-Key" not in headers:
            headers = (*headers, "Idempotency-Key")
            errors = (*errors, "idempotency_key_reused", "idempotency_in_progress")

        def decorate(fn: Handler) -> Handler:
            self.specs.append(
                RouteSpec(
                    method=method.upper(), path=path, handler=fn, summary=summary, tag=self.tag, auth=auth,
                    status=status, body=body, query=query, response=response, errors=errors,
                    description=description or (fn.__doc__ or "").strip(), content_type=content_type,
                    operation_id=fn.__name__, headers=headers, extra=extra, idempotency=idempotency,
                )
            )
            return fn

        return decorate

    def get(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("PUT", path, **kw)

    def patch(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("PATCH", path, **kw)

    def delete(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("DELETE", path, **kw)

    def mount(self, app: web.Application) -> None:
        """Adds the routes, one aiohttp resource per path template (routes of other methods on the
        same path join it), so that resolving a path tries each template once. A resource made
        earlier for the path (e.g. by `reserve_path`) is reused. Operation ids stay unique."""
        for spec in self.specs:
            if any(getattr(getattr(r, "handler", None), "foyer_spec", None) is not None
                   and r.handler.foyer_spec.operation_id == spec.operation_id for r in app.router.routes()):
                raise ValueError(f"duplicate operation id {spec.operation_id!r}")
            resource = next((r for r in app.router.resources() if r.canonical == spec.path), None)
            if resource is None:
                resource = app.router.add_resource(spec.path)
            resource.add_route(spec.method, _make_view(spec))  # type: ignore[union-attr]


def reserve_path(app: web.Application, path: str) -> None:
    """Create the resource of a hot path before any router is mounted (call from a component's
    `setup`): aiohttp tries the templates sharing a prefix (e.g. `/api/events/{...}`) in
    registration order, one coroutine and regex each, so a path reserved first is resolved first."""
    app.router.add_resource(path)


def _make_view(spec: RouteSpec) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    names = path_params(spec.path)

    @functools.wraps(spec.handler)
    async def view(request: web.Request) -> web.StreamResponse:
        core = request.app[CORE]
        principal: Principal | None = None
        if spec.auth != "none":
            token = bearer_token(request)
            if token is not None:
                principal = core.tokens.verify_access(token)
            elif spec.auth == "required":
                raise FoyerError("unauthorized", "sign in first (Authorization: Bearer <access token>)")
        request[PRINCIPAL] = principal
        params = parse_params(request, names)
        query = decode_query(request, spec.query) if spec.query is not None else None
        body = None
        if spec.body is not None:
            if request.content_type not in ("application/json", "") and request.can_read_body:
                raise FoyerError("unsupported_media_type", "send application/json")
            body = decode_body(await request.read(), spec.body)
        api_request = ApiRequest(request=request, core=core, principal=principal, params=params, query=query,
                                 body=body)
        if spec.idempotency and request.headers.get("Idempotency-Key") is not None:
            return await _run_idempotent(spec, api_request)
        return _to_response(spec, await spec.handler(api_request))

    view.foyer_spec = spec  # type: ignore[attr-defined]
    return view


def _to_response(spec: RouteSpec, result: Any) -> web.StreamResponse:
    if isinstance(result, web.StreamResponse):
        return result
    if result is None and spec.status == 204:
        return web.Response(status=204)
    return json_response(result, status=spec.status)


async def _run_idempotent(spec: RouteSpec, req: ApiRequest) -> web.StreamResponse:
    """The `idempotency=` route option: see storage/idempotency.py for the guarantees."""
    from storage import idempotency

    key = idempotency.valid_key(req.request.headers.get("Idempotency-Key"))
    assert key is not None
    principal = str(req.principal.user_id) if req.principal else "anonymous:" + req.client_ip
    fp = idempotency.fingerprint(spec.method, req.request.path, await req.request.read())

    async def call() -> tuple[int, bytes]:
        response = _to_response(spec, await spec.handler(req))
        body = response.body if isinstance(response, web.Response) and isinstance(response.body, bytes) else b""
        return response.status, body

    stored = await idempotency.run_once(req.core.db, scope=spec.idempotency or "", principal=principal, key=key,
                                        fp=fp, call=call)
    if stored.status == 204:
        return web.Response(status=204)
    return web.Response(body=stored.body, status=stored.status, content_type="application/json")
