"""``collections/*.json``: deterministic rendering, writing and the up-to-date check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nsn_store.schema import _export as export
from nsn_store.schema._registry import SCHEMA

REPO = Path(__file__).resolve().parents[2]


def test_render_names_files_in_creation_order() -> None:
    names = list(export.render())
    assert names[0] == "01-tenants.json" and names[11] == "12-aggregates.json"
    assert names[12:] == ["13-rateLimitBuckets.json", "14-jobRuns.json", "15-workers.json"]
    assert names == [f"{n:02d}-{spec.name}.json" for n, spec in enumerate(SCHEMA, start=1)]


@pytest.mark.parametrize("order", range(1, len(SCHEMA) + 1), ids=SCHEMA.names)
def test_file_holds_exactly_what_init_applies(order: int) -> None:
    spec = SCHEMA[order - 1]
    text = export.render()[f"{order:02d}-{spec.name}.json"]
    assert text.endswith("}\n") and "\t" not in text
    content = json.loads(text)
    assert list(content) == [
        "collection",
        "order",
        "validator",
        "validationLevel",
        "validationAction",
        "indexes",
    ]
    assert (content["collection"], content["order"]) == (spec.name, order)
    assert content["validator"] == spec.validator
    assert content["indexes"] == [index.document() for index in spec.indexes]
    # JSON object order is the index key order: the file must keep it.
    assert [tuple(i["key"].items()) for i in content["indexes"]] == [
        index.keys for index in spec.indexes
    ]


def test_render_is_deterministic_across_processes() -> None:
    script = "import json; from nsn_store.schema._export import render; print(json.dumps(render()))"
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script],
            cwd=REPO,
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    }
    assert outputs == {json.dumps(export.render()) + "\n"}


def test_write_then_check_is_clean(tmp_path: Path) -> None:
    written = export.write(tmp_path / "collections")
    assert [path.name for path in written] == list(export.render())
    assert export.check(tmp_path / "collections") == []


def test_modified_file_is_reported(tmp_path: Path) -> None:
    export.write(tmp_path)
    path = tmp_path / "07-scheduledMessages.json"
    path.write_text(path.read_text().replace('"maxLength": 2000', '"maxLength": 4000'))
    [problem] = export.check(tmp_path)
    assert problem.startswith("differs: 07-scheduledMessages.json")


def test_missing_file_is_reported(tmp_path: Path) -> None:
    export.write(tmp_path)
    (tmp_path / "11-counters.json").unlink()
    assert export.check(tmp_path) == ["missing: 11-counters.json"]


def test_stray_file_is_reported_and_pruned(tmp_path: Path) -> None:
    export.write(tmp_path)
    (tmp_path / "99-oldThings.json").write_text("{}\n")
    (tmp_path / "notes.txt").write_text("not a schema file\n")
    [problem] = export.check(tmp_path)
    assert problem.startswith("extra: 99-oldThings.json")
    export.write(tmp_path, prune=True)
    assert export.check(tmp_path) == []
    assert (tmp_path / "notes.txt").exists()


def test_missing_directory_reports_every_file(tmp_path: Path) -> None:
    assert len(export.check(tmp_path / "absent")) == len(SCHEMA) == 15


def test_committed_collections_are_up_to_date() -> None:
    # What CI's `nsn-store export --check` enforces, caught here first.
    assert export.check(REPO / "collections") == []
