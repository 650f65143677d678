"""A daemon whose state directory fills up or turns read-only while it trains (real kernel errors).

tests/test_faults_state.py runs this in a private mount namespace (``unshare -m``), as root::

    python tests/state_faults_child.py {full|readonly} WORKDIR ARTIFACTS_DIR

The state directory is a small tmpfs of its own. ``full`` fills it with a filler file until
the kernel says ENOSPC; ``readonly`` stacks a read-only bind mount of it on the same path
(remounting the tmpfs itself read-only is refused while the sample store is open for
writing, so the bind mount is what a read-only state directory looks like to new files).
Root bypasses file modes but not these.

The daemon then collects, trains and stops training with the fault in place, the fault is
healed, and it trains and saves again. Observations go to stdout as one JSON object.
"""

from __future__ import annotations

import errno
import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import ConfigWriter, build_daemon
from faults_support import artifact_facts, prefill_samples, trained_head

from odar.harness.emulated_wearable import EmulatedWearable
from odar.param_store import ParamStore
from odar.service import PARAMS_FILE, SAMPLES_FILE

OLD_EPOCH = 7
TMPFS_SIZE = "4m"
WAIT_LIMIT_S = 60.0


class Recorded(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []
        self._lock_lines = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock_lines:
            self.lines.append(f"{record.levelname} {record.getMessage()}")

    def count(self, text: str) -> int:
        with self._lock_lines:
            return sum(text in line for line in self.lines)


def wait_for(predicate, what: str) -> None:
    deadline = time.monotonic() + WAIT_LIMIT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        time.sleep(0.01)


def mount(*arguments: str) -> None:
    subprocess.run(["mount", *arguments], check=True, capture_output=True)


def fill(directory: Path) -> Path:
    """Write zeros until the file system has no room left; the filler's path."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as file:
        block = bytes(64 * 1024)
        try:
            while True:
                file.write(block)
        except OSError as error:
            assert error.errno == errno.ENOSPC, error
        try:
            while True:  # the last, partial block
                file.write(b"\0")
        except OSError as error:
            assert error.errno == errno.ENOSPC, error
    return filler


class Fault:
    def __init__(self, kind: str, state: Path) -> None:
        self.kind, self.state = kind, state
        self._filler: Path | None = None

    def apply(self) -> None:
        if self.kind == "full":
            self._filler = fill(self.state)
        else:
            mount("--bind", str(self.state), str(self.state))
            mount("-o", "remount,bind,ro", str(self.state))

    def heal(self) -> None:
        if self.kind == "full":
            assert self._filler is not None
            self._filler.unlink()
        else:
            subprocess.run(["umount", str(self.state)], check=True, capture_output=True)


def press(world: EmulatedWearable, button: str) -> None:
    pin = world.press_pins()[button]
    pin.drive_low()
    pin.drive_high()


def main(kind: str, workdir: Path, artifacts: Path) -> dict[str, Any]:
    state = workdir / "state"
    state.mkdir(parents=True)
    mount("-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", "tmpfs", str(state))
    facts = artifact_facts(artifacts)
    params = state / PARAMS_FILE
    ParamStore(params, facts.manifest_hash).save(trained_head(facts, OLD_EPOCH))
    prefill_samples(state / SAMPLES_FILE, facts, per_class=12)
    old_bytes = params.read_bytes()
    config_path = ConfigWriter(workdir, artifacts).write(
        # No free-space reserve: the 4 MB tmpfs is meant to fill up for real.
        {"training": {"save_every_seconds": 1}, "storage": {"reserve_free_mib": 0}},
        state_dir=state,
    )

    log = Recorded()
    logging.getLogger().addHandler(log)
    world, daemon = build_daemon(config_path, seed=1)
    outcome: dict[str, Any] = {}

    def body() -> None:
        try:
            outcome["status"] = world.run(daemon)
        except BaseException as error:
            outcome["error"] = repr(error)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    wait_for(lambda: daemon.ready_at is not None or outcome, "READY")
    report: dict[str, Any] = {"kind": kind}
    fault = Fault(kind, state)
    fault.apply()
    played: list[str] = []
    motor_play = daemon.wearable.motor.play

    def recording_play(pattern) -> None:
        played.append(pattern.name)
        motor_play(pattern)

    daemon.wearable.motor.play = recording_play

    # Collect: the store cannot grow (full) or still can through its open descriptor.
    counts_before = daemon.samples.counts()
    press(world, "start")
    if kind == "full":
        # No room for one more sample: Collect is refused at the press, and says why.
        wait_for(lambda: log.count("collect refused") >= 1, "Collect refused")
        report["status_when_full"] = daemon.status_text()
        report["running_when_full"] = daemon.status().running
        report["played_when_full"] = list(played)
    else:
        wait_for(lambda: daemon.samples.counts() != counts_before, "a collected sample")
        press(world, "start")
    report["counts_during"] = [counts_before, daemon.samples.counts()]

    # Train with the fault: periodic saves and the save on stop must fail, and be logged.
    press(world, "mode")
    press(world, "start")
    wait_for(lambda: log.count("saving the head failed") >= 2, "two failed saves")
    press(world, "start")
    wait_for(lambda: not daemon.trainer.running, "training to stop")
    report["old_params_intact"] = params.read_bytes() == old_bytes
    report["epoch_in_memory"] = daemon.latest.get().epoch
    report["alive_with_fault"] = thread.is_alive() and not outcome
    report["status_with_fault"] = daemon.status_text()

    fault.heal()
    press(world, "start")
    wait_for(lambda: daemon.latest.get().epoch > report["epoch_in_memory"], "more epochs")
    press(world, "start")
    wait_for(lambda: not daemon.trainer.running, "training to stop again")
    saved = ParamStore(params, facts.manifest_hash).load()
    report["saved_epoch_after_heal"] = None if saved is None else saved.epoch
    report["epoch_in_memory_after_heal"] = daemon.latest.get().epoch
    report["leftovers"] = sorted(p.name for p in state.iterdir() if ".tmp-" in p.name)

    daemon.request_stop()
    thread.join(WAIT_LIMIT_S)
    report["outcome"] = outcome
    report["log"] = log.lines
    return report


if __name__ == "__main__":
    result = main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
    print(json.dumps(result))
