"""The typing check's file stays importable (CI type-checks it with ``mypy --strict``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

FILE = Path(__file__).parent / "typing" / "public_api.py"


def test_the_typing_check_file_imports() -> None:
    spec = importlib.util.spec_from_file_location("nsn_public_api", FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(module.front_door)
