"""The process tests/test_power_loss.py kills: a fork server that saves head parameters.

Run as ``python tests/power_loss_child.py PATH [race|append]``. Imports (numpy, odar) cost a few
hundred milliseconds, far more than a save, so this process imports once and forks a saver
for every ``fork`` line read from stdin. Each saver does what the daemon does on start and
while training: load the file, then save epoch after epoch until it is killed.

Everything goes to stdout as one line per ``os.write`` (atomic on a pipe, and not held in a
buffer that a SIGKILL would lose)::

    pid N            a saver was forked (server)
    loaded E         the saver found epoch E on disk (-1: none)
    begin E          the saver starts saving epoch E ...
    done E           ... and save() returned
    reaped N SIG     the saver died of signal SIG (server)

With ``race``, each saver runs two threads through one ParamStore, as the trainer's own save
and the shutdown save do: in every round both wait at a barrier, then save at once (epochs
2k and 2k+1), so the kill lands amid two saves racing each other.

With ``append``, PATH is a sample store: each saver opens it (recovering what the last kill
left) and appends record after record (``begin I`` / ``done I``, I counting from 0).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from faults_support import POWER_LOSS_MANIFEST_HASH, head_state_for, kill_test_record

from odar.param_store import ParamStore
from odar.sample_store import SampleStore, StoreLayout


def say(line: str) -> None:
    os.write(sys.stdout.fileno(), f"{line}\n".encode())


def save_forever(path: Path) -> None:
    store = ParamStore(path, POWER_LOSS_MANIFEST_HASH)
    found = store.load()
    epoch = found.epoch if found is not None else -1
    say(f"loaded {epoch}")
    while True:
        epoch += 1
        say(f"begin {epoch}")
        store.save(head_state_for(epoch))
        say(f"done {epoch}")


def race_forever(path: Path) -> None:
    store = ParamStore(path, POWER_LOSS_MANIFEST_HASH)
    found = store.load()
    start = found.epoch + 1 if found is not None else 0
    start += start % 2
    say(f"loaded {-1 if found is None else found.epoch}")
    barrier = threading.Barrier(2)

    def saver(parity: int) -> None:
        epoch = start + parity
        while True:
            barrier.wait()
            say(f"begin {epoch}")
            store.save(head_state_for(epoch))
            epoch += 2

    other = threading.Thread(target=saver, args=(1,), daemon=True)
    other.start()
    saver(0)


KILL_TEST_LAYOUT = StoreLayout("kill-test", num_classes=2, feature_size=8)


def append_forever(path: Path) -> None:
    with SampleStore.open(path, KILL_TEST_LAYOUT) as store:
        index = len(store)
        say(f"loaded {index}")
        while True:
            say(f"begin {index}")
            store.append(*kill_test_record(index))
            say(f"done {index}")
            index += 1


def serve(path: Path, mode: str) -> None:
    for command in sys.stdin:
        if command.strip() != "fork":
            continue
        pid = os.fork()
        if pid == 0:
            try:
                {"race": race_forever, "append": append_forever}.get(mode, save_forever)(path)
            finally:
                os._exit(1)  # never back into the server's loop
        say(f"pid {pid}")
        _, status = os.waitpid(pid, 0)
        died_of = os.WTERMSIG(status) if os.WIFSIGNALED(status) else -os.WEXITSTATUS(status)
        say(f"reaped {pid} {died_of}")


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    serve(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "save")
