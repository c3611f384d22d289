"""MongoDB's CRUD spec tests (unified format) on the embedded database.

The files in ``crud_spec/`` are MongoDB's driver CRUD specification tests, with
expected results recorded from real servers (see ``crud_spec/README.md``).
Each test runs on a fresh embedded client emulating a MongoDB 7.0 standalone
(:mod:`_unified`). A test that does not apply is skipped with its reason; a
test needing a feature the embedded database refuses is an expected failure
that must raise ``NotImplementedError`` (strict: a silently wrong answer, or a
refused feature that starts to work, fails the run).

    python -m pytest tests/embedded/test_crud_spec.py -q -rs
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _unified import Case, load_cases, run_case

from nsn_store.testing import mongomock_client

SPEC_DIR = Path(__file__).parent / "crud_spec"
CASES = load_cases(SPEC_DIR)

# Tests the embedded database answers with NotImplementedError naming the feature.
REFUSED: dict[str, str] = {}


def _param(case: Case) -> object:
    marks: list[pytest.MarkDecorator] = []
    if case.skip is not None:
        marks.append(pytest.mark.skip(reason=case.skip))
    elif case.id in REFUSED:
        marks.append(
            pytest.mark.xfail(raises=NotImplementedError, strict=True, reason=REFUSED[case.id])
        )
    return pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_crud_spec(case: Case) -> None:
    client = mongomock_client()
    try:
        run_case(case, client)
    finally:
        client.close()


def test_every_refused_case_exists() -> None:
    known = {case.id for case in CASES if case.skip is None}
    assert sorted(set(REFUSED) - known) == []
