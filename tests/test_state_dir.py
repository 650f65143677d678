"""The state directory: refused when others could write to it, locked against a second daemon;
planted symlinks never make a root-run daemon write outside it; `odar run` refuses root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import WAIT_LIMIT, build_daemon, wait_until

from odar.errors import RootRefusedError, StateDirectoryError
from odar.param_store import HeadState, ParamStore
from odar.service import CONTROLS_FILE, PARAMS_FILE, SAMPLES_FILE, refuse_root
from odar.state_dir import LOCK_FILE, StateDirectory

REPO = Path(__file__).resolve().parent.parent
EX_CONFIG = 78
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, root's view)")


def test_a_new_state_directory_is_created_private_and_locked(tmp_path):
    state = StateDirectory.open(tmp_path / "a" / "state")
    try:
        assert (tmp_path / "a" / "state").stat().st_mode & 0o777 == 0o700
        assert (tmp_path / "a" / "state" / LOCK_FILE).exists()
    finally:
        state.close()


def test_a_second_opener_is_refused_until_the_first_closes(tmp_path):
    first = StateDirectory.open(tmp_path / "state")
    with pytest.raises(StateDirectoryError, match="in use by another odar") as caught:
        StateDirectory.open(tmp_path / "state")
    assert str(tmp_path / "state") in str(caught.value)
    first.close()
    StateDirectory.open(tmp_path / "state").close()


@pytest.mark.parametrize("mode", [0o770, 0o702, 0o777])
def test_a_group_or_world_writable_directory_is_refused(tmp_path, mode):
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(mode)
    with pytest.raises(StateDirectoryError, match=f"writable.*{mode:04o}"):
        StateDirectory.open(state)
    assert not (state / LOCK_FILE).exists()


def test_a_directory_of_another_user_is_refused(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    if os.geteuid() == 0:
        os.chown(state, 4321, 4321)
        owner = None
    else:
        owner = os.geteuid() + 1
    with pytest.raises(StateDirectoryError, match="owned by uid"):
        StateDirectory.open(state, owner_uid=owner)


def test_a_symlinked_state_directory_is_refused(tmp_path):
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "state").symlink_to(tmp_path / "real")
    with pytest.raises(StateDirectoryError, match="symlink"):
        StateDirectory.open(tmp_path / "state")


def test_root_is_refused_unless_allowed():
    with pytest.raises(RootRefusedError, match="--allow-root"):
        refuse_root(False, euid=0)
    refuse_root(True, euid=0)
    refuse_root(False, euid=1000)


@needs_root
def test_odar_run_as_root_exits_78_without_allow_root(config_writer):
    finished = subprocess.run(
        [sys.executable, "-m", "odar.cli", "run", "--config", str(config_writer.write())],
        capture_output=True,
        text=True,
        timeout=WAIT_LIMIT,
        cwd=REPO,
    )
    assert finished.returncode == EX_CONFIG, finished.stderr
    assert "refusing to run as root" in finished.stderr
    assert not (config_writer.directory / "state").exists()  # refused before touching anything


def test_a_second_daemon_on_the_same_directory_exits_78(start_daemon, config_writer):
    config = config_writer.write()
    first = start_daemon(config)
    finished = subprocess.run(
        [sys.executable, "-m", "odar.cli", "run", "--allow-root", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=WAIT_LIMIT,
        cwd=REPO,
    )
    assert finished.returncode == EX_CONFIG, finished.stderr
    last = finished.stderr.strip().splitlines()[-1]
    assert "in use by another odar" in last and str(first.daemon.state.path) in last
    assert "Traceback" not in finished.stderr
    assert first.thread.is_alive()
    assert first.stop() == 0
    # The lock goes with the first daemon: a new one starts.
    _world, second = build_daemon(config)
    second._close()


@needs_root
def test_planted_symlinks_never_make_root_write_outside_the_state_directory(
    start_daemon, config_writer, tmp_path
):
    """An attacker who could write to the state directory plants links at every name a save
    might use (the old PID-based temp names for 400 PIDs, the files themselves); the root-run
    daemon saves the selection and the head; nothing outside the directory changes."""
    state = config_writer.directory / "state"
    state.mkdir(mode=0o700)
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "shadow"
    victim.write_bytes(b"root:secret\n")
    victim.chmod(0o600)
    pid = os.getpid()
    for name in (PARAMS_FILE, CONTROLS_FILE):
        for guess in range(max(pid - 200, 2), pid + 200):
            (state / f".{name}.tmp-{guess}").symlink_to(victim)
    (state / CONTROLS_FILE).symlink_to(victim)
    (state / PARAMS_FILE).symlink_to(outside / "new-file")
    (state / SAMPLES_FILE).symlink_to(outside / "samples-elsewhere")
    before = {p.name: (p.read_bytes(), p.stat().st_mode) for p in outside.iterdir()}

    running = start_daemon(config_writer.write())
    running.press("mode")  # saves controls.json
    running.daemon.param_store.save(HeadState({"w": np.ones(4, np.float32)}))
    wait_until(lambda: not (state / CONTROLS_FILE).is_symlink(), "controls.json saved")
    assert running.stop() == 0

    after = {p.name: (p.read_bytes(), p.stat().st_mode) for p in outside.iterdir()}
    assert after == before, "a file outside the state directory was written"
    for name in (PARAMS_FILE, CONTROLS_FILE, SAMPLES_FILE):
        assert not (state / name).is_symlink(), name
        assert (state / name).stat().st_mode & 0o077 == 0, f"{name} is readable by others"
    assert ParamStore(state / PARAMS_FILE, running.daemon.engine.head_binding).load() is not None
    assert not [p for p in state.iterdir() if ".tmp-" in p.name]
