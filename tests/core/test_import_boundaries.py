"""The pure core imports no I/O: no client library, no socket, no edge module of ours.

The fold, the planner and every policy are pure so that the hard guarantees
(exactly-once effect, replay, merge, rollback detection) can be tested by the
thousands without a broker. This test reads the imports of each pure module
(and of ``schemas/``) with ``ast``, without importing anything, and fails on a
forbidden library or on a ``streams`` module outside the pure set.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Pure by folder: every module of the core (what decides) and of the wire contract.
PURE = {
    ".".join(p.relative_to(ROOT).with_suffix("").parts)
    for folder in ("streams/core", "schemas")
    for p in (ROOT / folder).glob("*.py")
    if p.stem != "__init__"
}
# The packages themselves, which ``from streams.core import fold`` names too.
PURE_PACKAGES = {"streams.core", "schemas"}


def test_the_pure_set_is_the_core_folder() -> None:
    """Spot-check that the folder rule finds the modules the guarantees rest on."""
    assert {"streams.core.fold", "streams.core.plan", "schemas.events"} <= PURE
    assert not any(m.startswith(("streams.store", "streams.worker")) for m in PURE)


# Libraries that do I/O or run a loop of their own.
FORBIDDEN = (
    "redis",
    "aiokafka",
    "kafka",
    "faust",
    "mode",
    "aiohttp",
    "aiohttp_sse",
    "prometheus_client",
    "limits",
    "asyncio",
    "socket",
    "subprocess",
    "requests",
    "httpx",
)


def imports_of(module: str) -> set[str]:
    """Absolute names ``module`` imports (``from x import y`` gives ``x`` and ``x.y``)."""
    path = ROOT / Path(*module.split("."))
    source = path.with_suffix(".py") if path.with_suffix(".py").exists() else path / "__init__.py"
    names: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def violations(module: str) -> list[str]:
    """What ``module`` imports that a pure module may not."""
    found = []
    for name in sorted(imports_of(module)):
        top = name.split(".")[0]
        if top in FORBIDDEN:
            found.append(f"{module} imports {name}")
        elif top == "streams" and name != "streams":
            # ``from streams import x`` names x; ``from streams.core.fold import Y`` names Y too.
            owner = name if _is_module(name) else name.rpartition(".")[0]
            if _is_module(owner) and owner not in PURE | PURE_PACKAGES:
                found.append(f"{module} imports {owner}, an edge module")
    return found


def _is_module(name: str) -> bool:
    path = ROOT / Path(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


@pytest.mark.parametrize("module", sorted(PURE))
def test_a_pure_module_imports_no_io(module: str) -> None:
    assert violations(module) == []


def test_the_check_catches_an_import_of_redis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rule itself can fail: a core module that imports redis is reported."""
    core, worker = tmp_path / "streams" / "core", tmp_path / "streams" / "worker"
    core.mkdir(parents=True)
    worker.mkdir()
    (core / "fold.py").write_text("from redis.asyncio import Redis\nimport streams.worker.app\n")
    (worker / "app.py").write_text("")
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", tmp_path)
    assert violations("streams.core.fold") == [
        "streams.core.fold imports redis.asyncio",
        "streams.core.fold imports redis.asyncio.Redis",
        "streams.core.fold imports streams.worker.app, an edge module",
    ]
