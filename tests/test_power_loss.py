"""Power loss while saving: a saver process SIGKILLed at random moments, 200+ times.

tests/power_loss_child.py forks a saver that loads the parameter file (as the daemon does on
start) and then saves epoch after epoch through the real ParamStore. The test kills it after a
random delay, then loads the file as the next start would. Whatever the moment of the kill,
the load must return exactly the last state saved before the kill (``done E``) or the one
being saved (``begin E``), compared by content, and nothing may be moved aside as garbage.

SIGKILL stops the process but not the kernel: this proves the write-rename protocol is atomic
for the process, not that the disk honours fsync (no test here can cut the power to a disk).
"""

from __future__ import annotations

import contextlib
import os
import random
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from faults_support import POWER_LOSS_MANIFEST_HASH, head_state_for, kill_test_record, same_state

from odar.param_store import ParamStore
from odar.sample_store import SampleStore, StoreLayout

CHILD = Path(__file__).resolve().parent / "power_loss_child.py"
KILLS = 200
#: The kill lands this long after the saver's first `begin` line (real seconds).
DELAY_S = (0.0, 0.030)
LINE_LIMIT_S = 30.0


class Server:
    """The fork server's pipes; reads its lines with a limit so a hang fails, not blocks."""

    def __init__(self, params: Path, *mode: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(CHILD), str(params), *mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=CHILD.parent,
        )
        self._pending = b""

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{line}\n".encode())
        self.process.stdin.flush()

    def line(self) -> tuple[str, list[int]]:
        assert self.process.stdout is not None
        deadline = time.monotonic() + LINE_LIMIT_S
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.process.stdout], [], [], max(left, 0))
            if not ready:
                raise AssertionError(f"no line from {CHILD.name} within {LINE_LIMIT_S:.0f} s")
            chunk = os.read(self.process.stdout.fileno(), 65536)
            if not chunk:
                raise AssertionError(f"{CHILD.name} exited ({self.process.wait()})")
            self._pending += chunk
        raw, self._pending = self._pending.split(b"\n", 1)
        word, *numbers = raw.decode().split()
        return word, [int(n) for n in numbers]

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def kill_one_saver(server: Server, rng: random.Random) -> tuple[int | None, int | None]:
    """Fork a saver, kill it mid-flight; (last epoch begun, last epoch done) before the kill."""
    server.send("fork")
    pid = begun = done = None
    # The kill waits for the first save to start, so it can land inside one; the saver's
    # first lines may come before the server's "pid".
    while pid is None or begun is None:
        word, numbers = server.line()
        assert word in ("pid", "loaded", "begin"), f"unexpected {word} before the first save"
        if word == "pid":
            pid = numbers[0]
        elif word == "begin":
            begun = numbers[0]
    time.sleep(rng.uniform(*DELAY_S))
    os.kill(pid, signal.SIGKILL)
    while True:
        word, numbers = server.line()
        if word == "begin":
            begun = numbers[0]
        elif word == "done":
            done = numbers[0]
        elif word == "reaped":
            assert numbers == [pid, signal.SIGKILL], f"the saver did not die of SIGKILL: {numbers}"
            return begun, done
        else:
            raise AssertionError(f"unexpected line {word} {numbers}")


def test_every_start_after_200_kills_mid_save_loads_the_old_or_the_new_parameters(tmp_path):
    params = tmp_path / "head.params"
    rng = random.Random(20240605)
    server = Server(params)
    outcomes: Counter[str] = Counter()
    try:
        for kill in range(KILLS):
            begun, done = kill_one_saver(server, rng)
            if done is None and not params.exists():
                # A slow machine's first kills may land before any save has: nothing to load.
                first = "before the first save landed"
                assert outcomes.total() == outcomes[first], f"kill {kill}: the file is gone"
                outcomes[first] += 1
                continue
            loaded = ParamStore(params, POWER_LOSS_MANIFEST_HASH).load()
            assert loaded is not None, f"kill {kill}: nothing loadable after saving {begun}"
            if done == begun:
                # Killed between two saves: only the newest is right.
                assert same_state(loaded, head_state_for(begun)), f"kill {kill}"
                outcomes["between saves: newest"] += 1
            elif loaded.epoch == begun:
                assert same_state(loaded, head_state_for(begun)), f"kill {kill}: not epoch {begun}"
                outcomes["mid-save: newest"] += 1
            else:
                previous = begun - 1
                assert loaded.epoch == previous, (
                    f"kill {kill}: loaded epoch {loaded.epoch}, expected {previous} or {begun}"
                )
                assert same_state(loaded, head_state_for(previous)), f"kill {kill}"
                outcomes["mid-save: previous"] += 1
    finally:
        server.close()

    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name != "head.params")
    print(f"\n{KILLS} kills: {dict(outcomes)}; temporary files left behind: {len(leftovers)}")
    assert not [name for name in leftovers if ".bad-" in name], "a good file was set aside"
    assert sum(outcomes.values()) == KILLS
    # Both outcomes of a kill inside a save happen, or the test did not probe the window.
    assert outcomes["mid-save: previous"] > 0
    assert outcomes["mid-save: newest"] + outcomes["between saves: newest"] > 0


RACE_KILLS = 1000
RACE_DELAY_S = (0.0, 0.010)


def kill_one_racing_pair(server: Server, rng: random.Random) -> int:
    """Fork a saver whose two threads save at once, kill it amid the saves; the highest epoch
    a save of which had begun."""
    server.send("fork")
    pid = None
    begun = -1
    while pid is None or begun < 0:  # the saver's first lines may come before "pid"
        word, numbers = server.line()
        if word == "pid":
            pid = numbers[0]
        elif word == "begin":
            begun = numbers[0]
        else:
            assert word == "loaded", f"unexpected {word} {numbers} before the first save"
    time.sleep(rng.uniform(*RACE_DELAY_S))
    with contextlib.suppress(ProcessLookupError):  # died by itself: "reaped" says how
        os.kill(pid, signal.SIGKILL)
    while True:
        word, numbers = server.line()
        if word == "begin":
            begun = max(begun, numbers[0])
        elif word == "reaped":
            assert numbers == [pid, signal.SIGKILL], (
                f"the saver did not die of SIGKILL but of {numbers[1]} (a save raised)"
            )
            return begun
        else:
            raise AssertionError(f"unexpected line {word} {numbers}")


def test_two_saves_racing_in_one_process_and_a_kill_never_leave_an_empty_or_torn_file(tmp_path):
    """The trainer's own save and the shutdown save at once, then SIGKILL (as systemd's
    TimeoutStopSec does): 1000 times, the file on disk is always one whole, saved state."""
    params = tmp_path / "head.params"
    rng = random.Random(20261129)
    server = Server(params, "race")
    sizes: Counter[str] = Counter()
    ParamStore(params, POWER_LOSS_MANIFEST_HASH).save(head_state_for(0))
    try:
        for kill in range(RACE_KILLS):
            begun = kill_one_racing_pair(server, rng)
            size = params.stat().st_size
            assert size > 0, f"kill {kill}: a 0-byte head.params"
            loaded = ParamStore(params, POWER_LOSS_MANIFEST_HASH).load()
            assert loaded is not None, f"kill {kill}: a torn head.params ({size} bytes)"
            assert 0 <= loaded.epoch <= begun, f"kill {kill}: epoch {loaded.epoch} > {begun}"
            assert same_state(loaded, head_state_for(loaded.epoch)), f"kill {kill}: mixed state"
            sizes["whole, as saved" if loaded.epoch else "whole, the first"] += 1
    finally:
        server.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    print(f"\n{RACE_KILLS} kills amid racing saves: {dict(sizes)}; files: {names}")
    assert not [name for name in names if ".bad-" in name], "a file was set aside as bad"
    assert sum(sizes.values()) == RACE_KILLS
    assert sizes["whole, as saved"] > RACE_KILLS // 2, "the kills did not land amid saves"


APPEND_KILLS = 200


def test_every_open_after_200_kills_mid_append_keeps_every_record_appended(tmp_path):
    """The sample store under the same kills: every record whose append returned is there,
    whole; the one under way is there whole or not at all; nothing is damaged or moved."""
    path = tmp_path / "samples.odar"
    layout = StoreLayout("kill-test", num_classes=2, feature_size=8)
    rng = random.Random(20261130)
    server = Server(path, "append")
    outcomes: Counter[str] = Counter()
    try:
        for kill in range(APPEND_KILLS):
            begun, _ = kill_one_saver(server, rng)
            with SampleStore.open(path, layout) as store:
                count, damaged = len(store), store.damaged_records
                loaded = store.load()
            assert damaged == 0, f"kill {kill}: {damaged} damaged records"
            # Every record before the one begun was done (by this saver or an earlier one).
            assert count in (begun, begun + 1), f"kill {kill}: {count} records, {begun} begun"
            assert loaded.timestamps.tolist() == [float(i) for i in range(count)]
            label, features, window, _ = kill_test_record(count - 1)
            assert loaded.labels[-1] == label
            np.testing.assert_array_equal(loaded.features[-1], features)
            np.testing.assert_array_equal(loaded.windows[-1], window)
            outcomes["the record under way kept" if count == begun + 1 else "cut"] += 1
    finally:
        server.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    print(f"\n{APPEND_KILLS} kills mid-append: {dict(outcomes)}; files: {names}")
    assert names == ["samples.odar"]
