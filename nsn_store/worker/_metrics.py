"""Worker metrics for Prometheus (the optional ``metrics`` extra: ``prometheus-client``).

Counters ``nsn_worker_messages_total{outcome}`` (claimed, sent, failed,
retried, cancelled, handed_back, lease_lost), histograms
``nsn_worker_claim_lag_seconds`` (claim time minus ``sendAt``) and
``nsn_worker_send_seconds``, gauges ``nsn_worker_in_flight`` and
``nsn_worker_backlog`` (due messages at the last look). Without
prometheus-client installed, :func:`metrics` returns a recorder that does
nothing, so the worker never depends on it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

__all__ = ["Metrics", "metrics", "serve_metrics"]

_LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900)
_SEND_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    """What a worker records; this base records nothing."""

    def outcome(self, outcome: str, n: int = 1) -> None:
        """Count ``n`` messages with ``outcome``."""

    def claim_lag(self, claimed_at: datetime, send_at: datetime) -> None:
        """Record how late a message was claimed."""

    def send_duration(self, seconds: float) -> None:
        """Record how long a sender took."""

    def in_flight(self, n: int) -> None:
        """Set the number of messages being sent."""

    def backlog(self, n: int) -> None:
        """Set the number of due messages at the last look."""


class _Prometheus(Metrics):
    def __init__(self, registry: Any = None) -> None:
        import prometheus_client as prom

        kwargs = {"registry": registry} if registry is not None else {}
        self._messages = prom.Counter(
            "nsn_worker_messages", "Messages by outcome", ["outcome"], **kwargs
        )
        self._lag = prom.Histogram(
            "nsn_worker_claim_lag_seconds",
            "Claim time minus sendAt",
            buckets=_LAG_BUCKETS,
            **kwargs,
        )
        self._send = prom.Histogram(
            "nsn_worker_send_seconds", "Sender call duration", buckets=_SEND_BUCKETS, **kwargs
        )
        self._in_flight = prom.Gauge("nsn_worker_in_flight", "Messages being sent", **kwargs)
        self._backlog = prom.Gauge("nsn_worker_backlog", "Due messages at the last look", **kwargs)

    def outcome(self, outcome: str, n: int = 1) -> None:
        self._messages.labels(outcome=outcome).inc(n)

    def claim_lag(self, claimed_at: datetime, send_at: datetime) -> None:
        self._lag.observe(max(0.0, (claimed_at - send_at).total_seconds()))

    def send_duration(self, seconds: float) -> None:
        self._send.observe(seconds)

    def in_flight(self, n: int) -> None:
        self._in_flight.set(n)

    def backlog(self, n: int) -> None:
        self._backlog.set(n)


_DEFAULT: Metrics | None = None


def metrics(registry: Any = None) -> Metrics:
    """Return the Prometheus recorder when prometheus-client is installed, else a no-op one.

    Without ``registry`` the process-wide default registry is used, once.
    """
    global _DEFAULT
    try:
        import prometheus_client  # noqa: F401
    except ModuleNotFoundError:
        return Metrics()
    if registry is not None:
        return _Prometheus(registry)
    if _DEFAULT is None:
        _DEFAULT = _Prometheus()
    return _DEFAULT


def serve_metrics(port: int, address: str = "127.0.0.1") -> None:
    """Serve ``/metrics`` on ``address:port`` (needs prometheus-client)."""
    try:
        import prometheus_client
    except ModuleNotFoundError as exc:
        from nsn_store.errors import ConfigurationError

        raise ConfigurationError(
            "--metrics-port needs prometheus-client: pip install 'nsn-store[metrics]'"
        ) from exc
    prometheus_client.start_http_server(port, addr=address)
