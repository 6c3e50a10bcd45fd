"""The image installs from the same lock as ``make test``, and that install works.

No Docker engine is needed: the Dockerfile's own ``uv sync`` steps are run in
a scratch directory with the image's settings (a virtual environment of its
own, the dependencies first, then the package as a regular, non-editable
install), and the result must start, hold the locked versions and carry the
package data (Lua scripts, JSON Schemas) that the worker loads at run time.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def _locked() -> dict[str, str]:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return {p["name"]: p["version"] for p in lock["package"] if "version" in p}


def _sync_steps() -> list[list[str]]:
    """The ``uv sync`` commands of the Dockerfile's RUN lines, in order."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    steps = []
    for line in text.splitlines():
        if not line.startswith("RUN "):
            continue
        for part in line[4:].split("&&"):
            argv = shlex.split(part)
            if argv[:2] == ["uv", "sync"]:
                steps.append(argv)
    return steps


def test_the_image_pins_the_uv_of_the_lock_and_installs_frozen() -> None:
    pinned = re.search(r"^ARG UV_VERSION=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert pinned is not None, "deploy/Dockerfile names no UV_VERSION"
    assert pinned.group(1) == _locked()["uv"], "deploy/Dockerfile and uv.lock name different uv"
    steps = _sync_steps()
    assert len(steps) == 2, steps
    assert all("--frozen" in s for s in steps), "the image must install exactly the lock"
    assert "--no-editable" in steps[-1]
    assert not any("--extra" in s or "--all-extras" in s for s in steps), "no dev tools in it"


@pytest.mark.e2e
def test_the_image_install_steps_give_a_working_install(tmp_path: Path) -> None:
    uv = Path(sys.executable).parent / "uv"
    assert uv.exists(), "uv is a locked dev dependency; make setup installs it"
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "uv.lock", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for package in ("streams", "schemas"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv), "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("VIRTUAL_ENV", None)
    for step in _sync_steps():
        argv = [str(uv), *step[1:]]
        # The image's interpreter path; here, the one running the tests.
        argv[argv.index("--python") + 1] = sys.executable
        subprocess.run([*argv, "--quiet"], cwd=src, env=env, check=True, timeout=300)
    shutil.rmtree(src)  # as the image does: nothing may point back at the sources

    python = venv / "bin" / "python"
    probe = (
        "import importlib.metadata as m, json, streams, schemas\n"
        "from importlib.resources import files\n"
        "print(json.dumps({'streams': streams.__file__,"
        " 'lua': sorted(p.name for p in files('streams.store').joinpath('lua').iterdir()),"
        " 'schemas': len(list(files('schemas').joinpath('json').iterdir())),"
        " 'versions': {d: m.version(d) for d in"
        " ('faust-streaming', 'aiokafka', 'redis', 'aiohttp', 'pydantic')},"
        " 'pytest': any(x.metadata['Name'] == 'pytest' for x in m.distributions())}))"
    )
    out = subprocess.run(
        [python, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    seen = json.loads(out.stdout)
    assert "site-packages" in seen["streams"], "a regular install, not a link to the sources"
    assert "commit.lua" in seen["lua"]
    assert seen["schemas"] > 0
    locked = _locked()
    assert seen["versions"] == {d: locked[d] for d in seen["versions"]}
    assert not seen["pytest"], "dev dependencies stay out of the image"
    usage = subprocess.run(
        [venv / "bin" / "continuity", "--help"], capture_output=True, text=True, check=True
    )
    assert "worker" in usage.stdout
