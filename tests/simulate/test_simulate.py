"""The load simulation: the real Worker/AsyncWorker, no duplicates, nothing lost, reproducible."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from nsn_store.errors import ConfigurationError, InvalidArgumentError
from nsn_store.simulate._report import SimulationConfig, SimulationReport, percentile, send_fails
from nsn_store.simulate._run import run_simulation

SMALL = SimulationConfig(tenants=3, messages_per_tenant=20, workers=4, failure_rate=0.2, seed=7)


def _counts(report: SimulationReport) -> tuple[int, ...]:
    return (report.sent, report.failed, report.retries, report.claims, report.ticks)


def _opener(backend: str, database: Any) -> Any:
    """How the asyncio mode opens ``database`` async (the caller's choice, never guessed)."""
    if backend == "embedded":
        from nsn_store.testing import async_client

        return lambda: async_client(database.client)[database.name]
    from pymongo import AsyncMongoClient

    return lambda: AsyncMongoClient(os.environ["NSN_TEST_MONGODB_URI"], tz_aware=True)[
        database.name
    ]


@pytest.fixture
def other_db(client: Any) -> Iterator[Any]:
    """A second fresh database on the same backend."""
    name = f"nsn_test_{uuid.uuid4().hex[:12]}"
    yield client[name]
    client.drop_database(name)


# --- pure parts ----------------------------------------------------------------


@given(key=st.text(max_size=20), attempt=st.integers(1, 10), seed=st.integers(0, 2**32))
def test_send_outcome_depends_only_on_seed_key_and_attempt(
    key: str, attempt: int, seed: int
) -> None:
    first = send_fails(seed, key, attempt, SMALL)
    random.seed(seed ^ 0x5EED)  # global randomness must not matter
    random.random()
    assert send_fails(seed, key, attempt, SimulationConfig(**vars(SMALL))) is first


def test_send_outcome_is_the_same_in_another_process() -> None:
    # A run must be reproducible by a later process: no hash() or process-seeded randomness.
    script = (
        "from nsn_store.simulate._report import SimulationConfig, send_fails; "
        "c = SimulationConfig(failure_rate=0.5, retry_success_rate=0.5); "
        "print(''.join('1' if send_fails(7, f'm{i}', 1 + i % 3, c) else '0' for i in range(300)))"
    )
    config = SimulationConfig(failure_rate=0.5, retry_success_rate=0.5)
    here = "".join("1" if send_fails(7, f"m{i}", 1 + i % 3, config) else "0" for i in range(300))
    assert "0" in here and "1" in here
    for hash_seed in ("1", "2"):
        other = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parents[2],
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
        )
        assert other.stdout.strip() == here


@pytest.mark.parametrize(
    ("failure", "retry_success", "attempt", "fails"),
    [
        pytest.param(0.0, 0.0, 1, False, id="never-fails-first"),
        pytest.param(1.0, 0.0, 1, True, id="always-fails-first"),
        pytest.param(1.0, 1.0, 2, False, id="retry-always-succeeds"),
        pytest.param(0.0, 0.0, 3, True, id="retry-never-succeeds"),
    ],
)
def test_send_failure_follows_the_configured_rates(
    failure: float, retry_success: float, attempt: int, fails: bool
) -> None:
    config = SimulationConfig(failure_rate=failure, retry_success_rate=retry_success)
    assert all(send_fails(1, f"m{i}", attempt, config) is fails for i in range(50))


def test_failure_rate_is_roughly_honoured() -> None:
    config = SimulationConfig(failure_rate=0.05)
    failures = sum(send_fails(3, f"m{i}", 1, config) for i in range(20_000))
    assert 800 < failures < 1200


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        pytest.param([], 50, 0.0, id="empty"),
        pytest.param([5.0], 95, 5.0, id="single"),
        pytest.param([float(i) for i in range(1, 101)], 50, 50.0, id="p50"),
        pytest.param([float(i) for i in range(1, 101)], 95, 95.0, id="p95"),
    ],
)
def test_percentile_is_nearest_rank(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == expected


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"tenants": 0}, id="no-tenants"),
        pytest.param({"failure_rate": 1.5}, id="rate-above-1"),
        pytest.param({"mode": "processes"}, id="unknown-mode"),
        pytest.param({"lease": 0}, id="zero-lease"),
    ],
)
def test_invalid_configuration_is_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="invalid simulation"):
        SimulationConfig(**changes)


# --- runs ----------------------------------------------------------------------


def test_small_run_sends_everything_exactly_once(db: Any) -> None:
    report = run_simulation(db, SMALL)
    assert (report.duplicates, report.lost) == (0, 0)
    assert report.sent + report.failed == report.total == 60
    assert report.retries > 0  # 20% failures: some retries happened
    assert report.claims == report.total + report.retries
    assert report.ok


def test_counters_and_events_agree_with_the_outcome(db: Any) -> None:
    report = run_simulation(db, SMALL)
    assert report.counters == {
        "messages.scheduled": 60,
        "messages.sent": report.sent,
        "messages.retried": report.retries,
        "messages.failed": report.failed,
    }
    assert db["messageEvents"].count_documents({"eventType": "sent"}) == report.sent
    assert report.aggregate_rows > 0


def test_same_seed_gives_the_same_counts(db: Any, other_db: Any) -> None:
    assert _counts(run_simulation(db, SMALL)) == _counts(run_simulation(other_db, SMALL))


def test_asyncio_mode_gives_the_same_counts_as_threads(
    db: Any, other_db: Any, backend: str
) -> None:
    threads = run_simulation(db, SMALL)
    tasks = run_simulation(
        other_db,
        SimulationConfig(**{**vars(SMALL), "mode": "asyncio"}),
        open_async_db=_opener(backend, other_db),
    )
    assert (tasks.duplicates, tasks.lost) == (0, 0)
    assert _counts(tasks) == _counts(threads)


def test_the_asyncio_mode_without_an_async_database_is_refused_before_any_write(db: Any) -> None:
    config = SimulationConfig(**{**vars(SMALL), "mode": "asyncio"})
    with pytest.raises(InvalidArgumentError) as caught:
        run_simulation(db, config)
    assert caught.value.argument == "open_async_db"
    assert db.list_collection_names() == []


def test_messages_failing_every_attempt_end_failed_not_lost(db: Any) -> None:
    config = SimulationConfig(
        tenants=2,
        messages_per_tenant=10,
        failure_rate=1.0,
        retry_success_rate=0.0,
        max_attempts=2,
        seed=1,
    )
    report = run_simulation(db, config)
    assert (report.sent, report.failed, report.lost) == (0, 20, 0)
    assert report.retries == 20  # one retry each, then failed for good


def test_the_fake_sender_decides_every_outcome(db: Any) -> None:
    # The workers meet exactly the failures send_fails predicts for each message.
    report = run_simulation(db, SMALL)
    for doc in db["scheduledMessages"].find({}, {"payload.sim": 1, "status": 1, "attempts": 1}):
        fails = [
            send_fails(SMALL.seed, doc["payload"]["sim"], k, SMALL)
            for k in range(1, SMALL.max_attempts + 1)
        ]
        expected = fails.index(False) + 1 if False in fails else SMALL.max_attempts
        assert doc["attempts"] == expected
        assert doc["status"] == ("sent" if False in fails else "failed")
    assert report.sender_calls == report.claims


def test_crashed_workers_claims_are_sent_once_after_their_lease(db: Any) -> None:
    config = SimulationConfig(**{**vars(SMALL), "crashes": 2, "lease": 60.0, "batch": 5})
    report = run_simulation(db, config)
    assert report.crashed_claims > 0
    assert (report.duplicates, report.lost) == (0, 0) and report.ok
    assert report.lag_max > config.tick  # the abandoned ones waited for the lease to expire


@pytest.mark.parametrize("mode", ["threads", "asyncio"])
def test_wall_clock_mode_gives_the_virtual_counts_and_real_lag(
    db: Any, other_db: Any, mode: str, backend: str
) -> None:
    config = SimulationConfig(
        tenants=2,
        messages_per_tenant=15,
        workers=2,
        failure_rate=0.3,
        retry_success_rate=0.5,
        max_attempts=3,
        backoff=0.05,
        spread=0.6,
        seed=3,
        mode=mode,
    )  # type: ignore[arg-type]
    virtual = run_simulation(db, config, open_async_db=_opener(backend, db))
    wall = run_simulation(
        other_db,
        SimulationConfig(**{**vars(config), "clock": "wall"}),
        open_async_db=_opener(backend, other_db),
    )
    assert wall.ok and (wall.duplicates, wall.lost) == (0, 0)
    assert _counts(wall)[:4] == _counts(virtual)[:4] and wall.ticks == 0
    # Real time: the run lasted at least until the last sendAt, and claims follow sendAt
    # within a fraction of the 60 s cron (generous bounds: a loaded CI machine).
    assert wall.virtual_seconds >= 0.3
    assert 0 <= wall.lag_p50 <= wall.lag_p95 <= wall.lag_max < 10
    assert virtual.lag_p50 > 1  # the cron's lag, for contrast


def test_lag_never_exceeds_one_cron_interval_without_crashes(db: Any) -> None:
    report = run_simulation(db, SMALL)
    assert 0 <= report.lag_p50 <= report.lag_p95 <= report.lag_max <= SMALL.tick


def test_progress_reports_each_step_up_to_the_total(db: Any) -> None:
    seen: list[tuple[int, int]] = []
    run_simulation(db, SMALL, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (60, 60)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_report_to_dict_is_json_ready(db: Any) -> None:
    data = json.loads(json.dumps(run_simulation(db, SMALL).to_dict()))
    assert data["config"]["tenants"] == 3 and data["ok"] is True


# --- CLI -----------------------------------------------------------------------


def _cli() -> click.Group:
    from nsn_store.cli.ops import OPS_COMMANDS

    group = click.Group()
    for command in OPS_COMMANDS:
        group.add_command(command)
    return group


def test_simulate_json_has_the_report_keys() -> None:
    uri = f"mongomock://simulate-{uuid.uuid4().hex[:8]}/nsn"
    args = [
        "simulate",
        "--uri",
        uri,
        "--json",
        "--tenants",
        "2",
        "--messages",
        "10",
        "--workers",
        "2",
        "--seed",
        "5",
    ]
    result = CliRunner().invoke(_cli(), args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in (
        "total",
        "sent",
        "failed",
        "retries",
        "duplicates",
        "lost",
        "lag_p50",
        "lag_p95",
        "lag_max",
        "throughput",
        "wall_seconds",
        "config",
    ):
        assert key in data
    assert data["total"] == 20 and data["duplicates"] == 0 and data["lost"] == 0


def test_simulate_asyncio_mode_from_the_cli() -> None:
    uri = f"mongomock://simulate-{uuid.uuid4().hex[:8]}/nsn"
    args = ["simulate", "--uri", uri, "--json", "--mode", "asyncio", "--tenants", "2"]
    result = CliRunner().invoke(_cli(), [*args, "--messages", "10", "--workers", "2"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["total"], data["duplicates"], data["lost"]) == (20, 0, 0)


def test_simulate_option_defaults_match_the_library_defaults() -> None:
    from nsn_store.cli.ops import simulate

    defaults = {p.name: p.default for p in simulate.params}
    config = SimulationConfig()
    for name, value in vars(config).items():
        assert defaults[name] == value, name


def test_simulate_text_output_and_bad_option() -> None:
    uri = f"mongomock://simulate-{uuid.uuid4().hex[:8]}/nsn"
    ok = CliRunner().invoke(
        _cli(), ["simulate", "--uri", uri, "--tenants", "1", "--messages", "5", "--workers", "1"]
    )
    assert ok.exit_code == 0, ok.output
    assert "duplicates 0, lost 0" in ok.stdout
    bad = CliRunner().invoke(_cli(), ["simulate", "--uri", uri, "--failure-rate", "2"])
    assert bad.exit_code == 2


def test_simulate_wall_clock_text_output() -> None:
    uri = f"mongomock://simulate-{uuid.uuid4().hex[:8]}/nsn"
    args = [
        "simulate",
        "--uri",
        uri,
        "--tenants",
        "1",
        "--messages",
        "5",
        "--clock",
        "wall",
        "--spread",
        "0.2",
        "--failure-rate",
        "0",
    ]
    result = CliRunner().invoke(_cli(), args)
    assert result.exit_code == 0, result.output
    assert "lag sendAt->claim (wall s)" in result.stdout and "duplicates 0, lost 0" in result.stdout


@pytest.mark.parametrize(
    ("as_json", "bar"),
    [
        pytest.param(False, True, id="text-shows-bar"),
        pytest.param(True, False, id="json-never-does"),
    ],
)
def test_progress_bar_only_on_a_terminal_without_json(
    monkeypatch: pytest.MonkeyPatch, as_json: bool, bar: bool
) -> None:
    from nsn_store.cli import ops

    monkeypatch.setattr(ops, "stdout_is_terminal", lambda: True)
    uri = f"mongomock://simulate-{uuid.uuid4().hex[:8]}/nsn"
    args = ["simulate", "--uri", uri, "--tenants", "1", "--messages", "5"]
    result = CliRunner().invoke(_cli(), args + (["--json"] if as_json else []))
    assert result.exit_code == 0, result.output
    assert ("sending" in result.stdout) is bar
    if as_json:
        assert json.loads(result.stdout)["total"] == 5
    else:
        assert "duplicates 0, lost 0" in result.stdout
