"""From the sdist to a working install, as a release builds it and a user installs it.

The sdist is built from a copy of the project, the wheel from that sdist (the templates
reach the package through the symlink src/co2gate/templates: the sdist must hold them as
files), both checked by .github/scripts/check_dist.py, then the wheel is installed into a
fresh virtualenv (dependencies from the package registry or its cache) and that install runs
`co2gate measure` and `co2gate run` on the bundled example, from outside the source tree.
The wheel's size and the install time are printed (pytest -s shows them).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def _sh(*args: str | Path, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GITHUB_", "CO2GATE_", "CODECARBON_", "VIRTUAL_ENV"))
        and k not in ("PYTHONPATH", "RUNNER_TEMP", "CI")
    }
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done


def _venv(path: Path) -> Path:
    _sh(sys.executable, "-m", "venv", path, cwd=path.parent)
    return path / "bin"


def test_the_wheel_from_the_sdist_installs_and_gates(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy, so that building leaves no egg-info in the tree
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    shutil.copytree(ROOT / "src", source / "src", symlinks=True, ignore=skip)
    shutil.copytree(ROOT / "templates", source / "templates")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    assert (source / "src" / "co2gate" / "templates").is_symlink()  # as in the repository

    tools = _venv(tmp_path / "tools")
    _sh(tools / "python", "-m", "pip", "install", "--quiet", "build>=1.2,<2", cwd=tmp_path)
    dist = tmp_path / "dist"
    _sh(tools / "python", "-m", "build", "--sdist", "--outdir", dist, source, cwd=tmp_path)
    (sdist,) = dist.glob("*.tar.gz")
    _sh(tools / "python", "-m", "build", "--wheel", "--outdir", dist, sdist, cwd=tmp_path)

    spec = importlib.util.spec_from_file_location(
        "check_dist", ROOT / ".github/scripts/check_dist.py"
    )
    assert spec is not None and spec.loader is not None
    check_dist = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check_dist)
    assert check_dist.check(dist, None) == []
    (wheel,) = dist.glob("*.whl")

    bin_ = _venv(tmp_path / "venv")
    started = time.monotonic()
    _sh(bin_ / "python", "-m", "pip", "install", "--quiet", wheel, cwd=tmp_path)
    install_s = time.monotonic() - started
    print(f"\n{wheel.name}: {wheel.stat().st_size / 1024:.0f} KiB; installed in {install_s:.1f} s")

    work = tmp_path / "work"  # outside the source tree: only the installed package is found
    work.mkdir()
    where = _sh(bin_ / "python", "-c", "import co2gate; print(co2gate.__file__)", cwd=work)
    assert where.stdout.startswith(str(tmp_path / "venv"))

    train = [bin_ / "python", ROOT / "examples" / "train.py", "--seconds", "1"]
    _sh(bin_ / "co2gate", "measure", "--country", "USA", "--out", "m", "--", *train, cwd=work)
    emissions = json.loads((work / "m" / "emissions.json").read_text())
    assert emissions["schema"] == "co2gate/emissions/v1" and emissions["run"]["exit_code"] == 0
    assert emissions["energy_kwh"]["total"] > 0

    budget = yaml.safe_load((ROOT / "examples" / "carbon-budget.yml").read_text())
    budget["ledger"] = {"backend": "file", "path": str(work / "ledger")}
    (work / "budget.yml").write_text(yaml.safe_dump(budget))
    args = ["run", "--budget-file", "budget.yml", "--label", "wheel", "--out", "r", "--", *train]
    _sh(bin_ / "co2gate", *args, cwd=work)
    verdict = json.loads((work / "r" / "verdict.json").read_text())
    assert verdict["verdict"] == "pass"
    assert "wheel" in (work / "r" / "report.md").read_text()  # rendered from the packaged templates
    (shard,) = (work / "ledger").rglob("*.jsonl")
    (entry,) = [json.loads(line) for line in shard.read_text().splitlines()]
    assert entry["label"] == "wheel"
