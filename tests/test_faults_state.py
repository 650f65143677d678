"""A full disk (ENOSPC) or a read-only state directory while the daemon saves and collects.

How the fault is made: for real, by the kernel, not by monkeypatching os calls. The tests run
as root, which ignores file modes, so tests/state_faults_child.py runs the daemon in a private
mount namespace (``unshare -m``) with its state directory on a 4 MB tmpfs, and then fills
that tmpfs until writes fail with ENOSPC, or stacks a read-only bind mount on it (EROFS).
Patched os calls would test the patch's idea of the failure; this way the write path meets
the errors (short writes, a failed create, a failed rename) the kernel really produces.

What must hold: the old parameter file stays byte for byte, every failed save is logged with
the file and the reason, the daemon keeps running and training in memory, and once the fault
is gone the next save succeeds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CHILD = Path(__file__).resolve().parent / "state_faults_child.py"
UNSHARE = ("unshare", "-m", "--propagation", "private")
REASONS = {"full": "No space left on device", "readonly": "Read-only file system"}


def namespace_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root for a private mount namespace and tmpfs mounts"
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return "needs util-linux unshare and mount"
    probe = subprocess.run([*UNSHARE, "true"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        return f"unshare -m is refused here: {probe.stderr.decode().strip()}"
    return None


@pytest.fixture(scope="module")
def mount_namespace() -> None:
    reason = namespace_unavailable()
    if reason is not None:
        print(f"skipping the ENOSPC/EROFS tests: {reason}")
        pytest.skip(reason)


def run_child(kind: str, workdir: Path, artifacts_dir: Path) -> dict:
    finished = subprocess.run(
        [*UNSHARE, sys.executable, str(CHILD), kind, str(workdir), str(artifacts_dir)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert finished.returncode == 0, f"the child failed:\n{finished.stderr[-4000:]}"
    return json.loads(finished.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("kind", ["full", "readonly"])
def test_saves_that_fail_keep_the_old_parameters_log_why_and_the_daemon_runs_on(
    kind, tmp_path, artifacts_dir, mount_namespace
):
    report = run_child(kind, tmp_path, artifacts_dir)
    reason = REASONS[kind]
    log = report["log"]

    failed_saves = [line for line in log if "saving the head failed" in line]
    assert len(failed_saves) >= 2, log  # a periodic save and the save on stop, at least
    for line in failed_saves:
        assert line.startswith("ERROR") and "head.params" in line and reason in line
    assert report["old_params_intact"], "the old parameter file changed"
    assert report["alive_with_fault"], report["outcome"]
    assert report["epoch_in_memory"] > 7, "training did not go on in memory"
    assert "train stopped" in report["status_with_fault"]

    # The selection could not be saved either: logged, and the press still counted.
    assert any("controls.json" in line and reason in line for line in log), log
    before, after = report["counts_during"]
    if kind == "full":
        assert after == before, "a sample was counted that could not be stored"
        refused = [line for line in log if "collect refused" in line]
        assert refused and refused[0].startswith("WARNING") and "disk is nearly full" in refused[0]
        assert "collect stopped" in report["status_when_full"], report["status_when_full"]
        assert "collect refused: the disk is nearly full" in report["status_when_full"]
        assert not report["running_when_full"]
        assert report["played_when_full"] == ["refused"]  # the rattle, not "started"
    else:
        # The store was open before the directory turned read-only: it goes on appending.
        assert sum(after) > sum(before)

    # Fault gone: the next save lands, and no temporary file is left behind.
    assert report["saved_epoch_after_heal"] == report["epoch_in_memory_after_heal"]
    assert report["saved_epoch_after_heal"] > report["epoch_in_memory"]
    assert report["leftovers"] == []
    assert report["outcome"] == {"status": 0}
