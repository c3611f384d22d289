"""Worker commands: ``worker`` (send due messages) and ``health`` (is the queue healthy?)."""

from __future__ import annotations

import importlib
import json
import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import click

from nsn_store import connection
from nsn_store.arguments import as_object_id
from nsn_store.cli.common import (
    EXIT_DIFFERENCES,
    Command,
    FiniteFloatRange,
    emit,
    json_option,
    open_database,
    uri_option,
)
from nsn_store.errors import ConfigurationError, NsnStoreError

DEFAULT_SENDER = "nsn_store.worker:LogSender"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
#: Seconds between saves of a file-backed embedded database while the worker runs
#: (the command saves once more when it ends, after a graceful shutdown too).
CHECKPOINT_SECONDS = 30.0

log = logging.getLogger("nsn_store.worker")


class _Fields(logging.Formatter):
    """One line per record; the message and tenant ids appended when the record has them."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = [
            f"{name}={getattr(record, name)}"
            for name in ("message_id", "tenant_id")
            if hasattr(record, name)
        ]
        return " ".join([line, *ids])


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Fields("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("nsn_store")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def load_sender(spec: str) -> Any:
    """Import ``module:attribute``; a class is instantiated with no arguments."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigurationError(f"--sender must be module:attribute, not {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"--sender: cannot import {module_name!r} ({exc})") from exc
    try:
        sender = getattr(module, attribute)
    except AttributeError:
        raise ConfigurationError(f"--sender: {module_name!r} has no {attribute!r}") from None
    if isinstance(sender, type):
        sender = sender()
    if not callable(sender):
        raise ConfigurationError(f"--sender {spec!r} is not callable")
    return sender


def _serve_health(port: int, worker: Any) -> ThreadingHTTPServer:
    """Serve ``GET /health`` on 127.0.0.1: 200 and the worker's report while it runs."""

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"status": "ok", **worker.report.to_dict()}).encode()
            self.send_response(200 if self.path.rstrip("/") in ("", "/health") else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            logging.getLogger("nsn_store.worker").debug(format, *args)

    server = ThreadingHTTPServer(("127.0.0.1", port), Health)
    threading.Thread(target=server.serve_forever, daemon=True, name="nsn-health").start()
    return server


@click.command(cls=Command)
@click.option(
    "--sender",
    default=DEFAULT_SENDER,
    show_default=True,
    help="The sender, as module:attribute (a class is instantiated).",
)
@click.option("--once", is_flag=True, help="Send what is due now, then exit (cron, tests).")
@click.option("--tenant", "tenants", multiple=True, help="Only this tenant's messages (repeat).")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1024),
    default=8,
    show_default=True,
    help="Concurrent sends.",
)
@click.option(
    "--batch",
    type=click.IntRange(1, 1000),
    default=None,
    help="Messages claimed at most per claim [default: --concurrency].",
)
@click.option(
    "--lease",
    type=FiniteFloatRange(1, 3600),
    default=60.0,
    show_default=True,
    help="Lease in seconds (renewed by heartbeats while a send runs).",
)
@click.option(
    "--poll",
    type=FiniteFloatRange(0.05, 600),
    default=5.0,
    show_default=True,
    help="Longest sleep in seconds when nothing is due.",
)
@click.option(
    "--shutdown-timeout",
    type=FiniteFloatRange(0, 3600),
    default=30.0,
    show_default=True,
    help="Seconds in-flight sends may take after a stop.",
)
@click.option("--worker-id", default=None, help="Claim under this id [default: host:pid:thread].")
@click.option(
    "--rate-limits",
    is_flag=True,
    help="Keep to the provider rate limits (Twilio per number, Resend per team).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Serve Prometheus metrics on 127.0.0.1:PORT (needs prometheus-client).",
)
@click.option(
    "--health-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Serve GET /health on 127.0.0.1:PORT while the worker runs.",
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="INFO",
    show_default=True,
    help="Log level (logs go to stderr).",
)
@uri_option
@json_option
def worker(
    sender: str,
    once: bool,
    tenants: tuple[str, ...],
    concurrency: int,
    batch: int | None,
    lease: float,
    poll: float,
    shutdown_timeout: float,
    worker_id: str | None,
    rate_limits: bool,
    metrics_port: int | None,
    health_port: int | None,
    log_level: str,
    uri: str | None,
    as_json: bool,
) -> None:
    """Send due scheduled messages until stopped (SIGTERM or Ctrl-C stop it gracefully).

    A first signal stops claiming, hands unstarted claims back and lets
    in-flight sends finish within --shutdown-timeout; a second stops at once.
    Prints the final report (JSON with --json) and exits 0.
    """
    from nsn_store.worker._metrics import serve_metrics
    from nsn_store.worker._ratelimit import RateLimits
    from nsn_store.worker._worker import Worker

    _configure_logging(log_level.upper())
    send = load_sender(sender)
    only = [as_object_id(t, "--tenant") for t in tenants] or None  # checked before connecting
    db = open_database(uri)
    runner = Worker(
        db,
        send,
        worker_id=worker_id,
        concurrency=concurrency,
        batch_size=batch,
        lease=lease,
        poll=poll,
        shutdown_timeout=shutdown_timeout,
        tenants=only,
        rate_limits=RateLimits() if rate_limits else None,
    )
    if metrics_port is not None:
        serve_metrics(metrics_port)
    server = _serve_health(health_port, runner) if health_port is not None else None
    try:
        with _checkpoints(db, CHECKPOINT_SECONDS):
            report = runner.run_once() if once else runner.run()
    finally:
        if server is not None:
            server.shutdown()
    emit(report, as_json, _render_report)


@contextmanager
def _checkpoints(db: Any, every: float) -> Iterator[None]:
    """Save a file-backed embedded database every ``every`` seconds while the body runs.

    A checkpoint bounds what a killed worker loses: what it did after the last
    save is gone with it, and messages it claimed since are claimed again once
    their leases expire, so such a send may repeat (at least once, as after any
    crash). Servers and in-memory databases need none.
    """
    if connection.embedded_file(db) is None or db.client.read_only:
        yield
        return
    stop = threading.Event()

    def save_until_stopped() -> None:
        while not stop.wait(every):
            try:
                db.client.save()
            except NsnStoreError as exc:  # keep sending; the final save reports it again
                log.warning("checkpoint failed: %s", exc)

    saver = threading.Thread(target=save_until_stopped, daemon=True, name="nsn-checkpoint")
    saver.start()
    try:
        yield
    finally:
        stop.set()
        saver.join()


def _render_report(report: Any) -> str:
    data = report.to_dict()
    counts = ", ".join(
        f"{name} {data[name]}"
        for name in ("sent", "retried", "failed", "cancelled", "handed_back", "lease_lost")
    )
    stopped = f" (stopped by {data['stopped_by']})" if data["stopped_by"] else ""
    return (
        f"worker {data['worker_id']}: claimed {data['claimed']} in {data['claims']} "
        f"claims; {counts}{stopped}"
    )


@click.command(cls=Command)
@click.option(
    "--max-age",
    type=FiniteFloatRange(0, 86_400 * 7),
    default=300.0,
    show_default=True,
    help="Unhealthy when the oldest due message has waited longer (seconds).",
)
@click.option("--tenant", default=None, help="Only this tenant's queue.")
@uri_option
@json_option
def health(max_age: float, tenant: str | None, uri: str | None, as_json: bool) -> None:
    """Exit 0 when the database answers and the backlog is not older than --max-age, else 1."""
    from nsn_store.scheduler._service import Scheduler

    only = None if tenant is None else as_object_id(tenant, "--tenant")  # before connecting
    db = open_database(uri)
    backlog = Scheduler(db).backlog(only)
    oldest = backlog.oldest_due_send_at
    waited = (backlog.now - oldest).total_seconds() if oldest is not None else 0.0
    healthy = waited <= timedelta(seconds=max_age).total_seconds()
    result = {
        "healthy": healthy,
        "oldest_due_waited_seconds": round(waited, 3),
        "max_age_seconds": max_age,
        **backlog.to_dict(),
    }
    emit(
        result,
        as_json,
        lambda r: (
            f"{'healthy' if r['healthy'] else 'UNHEALTHY'}: {r['due_now']} due, oldest waited "
            f"{r['oldest_due_waited_seconds']} s (limit {r['max_age_seconds']} s)"
        ),
    )
    if not healthy:
        raise click.exceptions.Exit(EXIT_DIFFERENCES)


WORKER_COMMANDS = [worker, health]
