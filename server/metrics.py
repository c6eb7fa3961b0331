"""Prometheus metrics for one node, served at GET /metrics.

Each app gets its own `CollectorRegistry` (several apps may live in one test process).
Labels use the route template (`/api/events/{id}`), never the raw path, to bound cardinality.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.http_requests = Counter(
            "foyer_http_requests_total", "HTTP requests by route and status", ["method", "route", "status"], registry=r
        )
        self.http_latency = Histogram(
            "foyer_http_request_seconds", "HTTP request latency", ["method", "route"], registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.db_transactions = Histogram(
            "foyer_db_transaction_seconds", "Named PostgreSQL transactions", ["name", "ok"], registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.socket_connections = Gauge(
            "foyer_socket_connections", "Connected Socket.IO clients on this node", registry=r
        )
        self.errors = Counter("foyer_errors_total", "Errors answered, by code", ["code"], registry=r)
        # bounded like the labels themselves: route templates (not raw paths) x methods x statuses
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one HTTP answer and its latency. The labelled children are kept per (method,
        route, status): prometheus_client's `labels()` costs ~2 µs a call, on every request."""
        key = (method, route, status)
        children = self._request_children.get(key)
        if children is None:
            children = (self.http_requests.labels(method, route, str(status)), self.http_latency.labels(method, route))
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_transaction(self, name: str, seconds: float, ok: bool) -> None:
        self.db_transactions.labels(name, "true" if ok else "false").observe(seconds)


METRICS: web.AppKey[Metrics] = web.AppKey("foyer.metrics", Metrics)
