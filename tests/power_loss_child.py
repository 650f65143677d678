"""The process tests/test_power_loss.py kills: a fork server that saves head parameters.

Run as ``python tests/power_loss_child.py PARAMS_PATH``. Imports (numpy, odar) cost a few
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
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from faults_support import POWER_LOSS_MANIFEST_HASH, head_state_for

from odar.param_store import ParamStore


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


def serve(path: Path) -> None:
    for command in sys.stdin:
        if command.strip() != "fork":
            continue
        pid = os.fork()
        if pid == 0:
            try:
                save_forever(path)
            finally:
                os._exit(1)  # never back into the server's loop
        say(f"pid {pid}")
        _, status = os.waitpid(pid, 0)
        died_of = os.WTERMSIG(status) if os.WIFSIGNALED(status) else -os.WEXITSTATUS(status)
        say(f"reaped {pid} {died_of}")


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    serve(Path(sys.argv[1]))
