"""The OpenAPI 3.1 document, generated from the same `Router` declarations that serve requests.

Request and response schemas come from the msgspec/dataclass types given to the routes;
every route documents its auth requirement and the error codes it can answer.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from domain.errors import HTTP_STATUS
from handlers.api import Router, RouteSpec

_PARAM = re.compile(r"\{([a-zA-Z_][a-zA-Z0-9_]*)\}")
_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "enum": sorted(HTTP_STATUS)},
                "message": {"type": "string"},
                "details": {},
            },
        }
    },
}


def build_openapi(routers: list[Router], *, version: str, server_url: str | None = None) -> dict[str, Any]:
    specs = [s for r in routers for s in r.specs]
    types: list[Any] = []
    for spec in specs:
        for t in (spec.body, spec.response):
            if t is not None and t not in types:
                types.append(t)
    schemas_for, components = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    type_schema = dict(zip(types, schemas_for, strict=True))
    components["Error"] = _ERROR_SCHEMA

    paths: dict[str, dict[str, Any]] = {}
    for spec in specs:
        paths.setdefault(spec.path, {})[spec.method.lower()] = _operation(spec, type_schema)
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "Foyer API",
            "version": version,
            "description": "Events, schedules, tickets and check-in over HTTP; live rooms over Socket.IO "
            "(namespace /live, see docs/protocol.md). Errors are "
            '`{"error": {"code", "message", "details"?}}` with stable codes.',
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
        "tags": [{"name": r.tag, "description": r.description} for r in routers if r.specs],
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc


def _operation(spec: RouteSpec, type_schema: dict[Any, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": spec.operation_id,
        "summary": spec.summary,
        "tags": [spec.tag],
    }
    if spec.description:
        op["description"] = spec.description
    params: list[dict[str, Any]] = []
    for name in _PARAM.findall(spec.path):
        schema = {"type": "string", "format": "uuid"} if name == "id" or name.endswith("_id") else {"type": "string"}
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    if spec.query is not None:
        qschema = msgspec.json.schema(spec.query)
        defs = qschema.get("$defs", {})
        if "$ref" in qschema:
            qschema = defs[qschema["$ref"].split("/")[-1]]
        required = set(qschema.get("required", []))
        for name, prop in qschema.get("properties", {}).items():
            params.append({"name": name, "in": "query", "required": name in required, "schema": prop})
    for header in spec.headers:
        params.append({"name": header, "in": "header", "required": False, "schema": {"type": "string"}})
    if params:
        op["parameters"] = params
    if spec.body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": type_schema[spec.body]}}}
    ok: dict[str, Any] = {"description": "success"}
    if spec.response is not None:
        ok["content"] = {spec.content_type: {"schema": type_schema[spec.response]}}
    elif spec.content_type != "application/json":
        ok["content"] = {spec.content_type: {"schema": {"type": "string"}}}
    responses: dict[str, Any] = {str(spec.status): ok}
    codes = set(spec.errors)
    if spec.body is not None or spec.query is not None:
        codes.add("validation_failed")
    if spec.auth == "required":
        codes.update({"unauthorized", "invalid_token"})
    if _PARAM.search(spec.path):
        codes.add("not_found")
    by_status: dict[int, list[str]] = {}
    for code in sorted(codes):
        by_status.setdefault(HTTP_STATUS[code], []).append(code)
    for status, code_list in sorted(by_status.items()):
        responses[str(status)] = {
            "description": "error: " + ", ".join(code_list),
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    op["responses"] = responses
    if spec.auth == "required":
        op["security"] = [{"bearer": []}]
    elif spec.auth == "optional":
        op["security"] = [{"bearer": []}, {}]
    return op
