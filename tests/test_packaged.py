"""The installed device matches the checkout: odar installed from a wheel (not editable) into
a directory of its own runs the demo's and the benches' commands from outside the checkout,
with their configs and scenarios from the package, and fails with messages, not tracebacks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from odar.harness.data import artifact_candidates, find_artifacts

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """odar's wheel built from the tracked files and unpacked with pip into a target dir."""
    scratch = tmp_path_factory.mktemp("packaged")
    source = scratch / "source"
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, tracked):
        path = REPO / name.decode()
        if path.is_file() and not name.startswith(b"artifacts/"):
            (source / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, source / name.decode())
    target = scratch / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--target", str(target), str(source)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return target


def odar(installed: Path, *arguments: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(installed)}
    return subprocess.run(
        [sys.executable, "-m", "odar.cli", *arguments],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=environment,
        timeout=600,
    )


def test_the_package_holds_the_demo_config_and_scenarios(installed):
    data = installed / "odar" / "harness" / "data"
    assert {p.name for p in data.glob("*.yaml")} == {"demo.yaml", "selftest.yaml"}
    assert {p.name for p in (data / "scenarios").glob("*.yaml")} >= {"demo.yaml", "selftest.yaml"}


def test_the_installed_copy_is_the_one_that_runs(installed, tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", "import odar; print(odar.__file__)"],
        capture_output=True, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(installed)},
    )  # fmt: skip
    assert result.stdout.startswith(str(installed))


@pytest.mark.parametrize(
    "command", [["demo"], ["bench", "daemon"], ["bench", "fewshot"], ["selftest"], ["status"]]
)
def test_help_works_outside_the_checkout(installed, tmp_path, command):
    result = odar(installed, *command, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "usage: odar" in result.stdout


def test_a_bench_runs_from_the_install_without_config(installed, tmp_path, artifacts_dir):
    result = odar(
        installed, "bench", "daemon", "--json", "--artifacts", str(artifacts_dir),
        "--idle-seconds", "4", "--infer-seconds", "10", "--speed", "10", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["epochs"] > 0


def test_the_emulated_selftest_runs_from_the_install(installed, tmp_path):
    config = installed / "odar" / "harness" / "data" / "selftest.yaml"
    result = odar(installed, "selftest", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "selftest: all 9 checks passed" in result.stdout


def test_no_artifacts_anywhere_is_a_message_not_a_traceback(installed, tmp_path):
    if Path("/etc/odar/odar.yaml").exists() or Path("/opt/odar/artifacts").exists():
        pytest.skip("this machine has an installed odar: the demo would find its artifacts")
    result = odar(installed, "demo", "--quiet", cwd=tmp_path)
    assert result.returncode == 78
    assert "no artifacts found" in result.stderr and "pass --artifacts DIR" in result.stderr
    assert "Traceback" not in result.stderr


def test_fewshot_outside_a_checkout_says_so(installed, tmp_path, artifacts_dir):
    result = odar(
        installed, "bench", "fewshot", "--quick", "--artifacts", str(artifacts_dir), cwd=tmp_path
    )
    assert result.returncode == 1
    assert "run odar bench fewshot from a checkout" in result.stderr
    assert "Traceback" not in result.stderr


def test_find_artifacts_looks_in_the_checkout_then_the_installed_config(tmp_path):
    artifacts = tmp_path / "installed-artifacts"
    artifacts.mkdir()
    (artifacts / "manifest.json").write_text("{}")
    config = tmp_path / "odar.yaml"
    config.write_text(f"paths:\n  artifacts_dir: {artifacts}\n")
    candidates = artifact_candidates(config)
    assert candidates[:2] == [REPO / "artifacts", artifacts]
    assert find_artifacts(config) == REPO / "artifacts"
