"""The head's training epochs, in a process of their own: the sensor thread never waits for
the trainer's interpreter lock.

In one process, the trainer's Python between TFLite calls holds the GIL for much of a training
run. The sensor thread needs the GIL for every read, and when the thread that holds it is kept
off a CPU by another process, the read waits as long: beside an arm64 build the sensor thread
once waited 12 ms for ``odar-trainer`` and the FIFO overflowed (docs/sensor-figures.md,
session 11). Here the epochs run in a child (``python -m odar.training_process``) with its own
interpreter; the trainer thread only waits on a socket, which holds no lock.

The trainer thread sends a run's features, one-hot labels, parameters, optimizer state and a
seed once; the child then runs epoch after epoch on its own (each in an order drawn from the
seed) and sends each epoch's mean loss, parameters and state, until the trainer thread asks it
to stop, which it does between two steps. No epoch waits for the parent: the child runs ahead,
and the epochs it finished after the stop are dropped. While it steps it sends progress at
least every :data:`PROGRESS_SECONDS`; the trainer thread beats its heartbeat on what the child
sends, so a child stuck in a step stops the beats and the watchdog restarts the service. A child
that dies (the OOM killer, a crash in the runtime) or fails ends the run with
:class:`~odar.errors.TrainingProcessError`, which stops the daemon loudly.

The child ignores SIGINT, SIGTERM and SIGHUP: systemd signals the whole cgroup on stop and a
terminal's Ctrl-C reaches the whole process group, and the last whole epoch must reach the
parent, which saves it. The child ends when the parent closes the socket (or dies).

One run, as the trainer thread does it::

    process = TrainingProcess(manifest.path, sha256, num_threads=1, runtime="ai-edge-litert")
    process.start()
    for loss, params, optimizer in process.train(features, onehot, params, optimizer, seed=3):
        if loss < 0.05:
            break  # the child is told to stop; what it sends meanwhile is dropped
    process.close()
"""

from __future__ import annotations

import argparse
import contextlib
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from odar.errors import OdarError, TrainingProcessError

Arrays = dict[str, np.ndarray]
EpochResult = tuple[float, Arrays, Arrays]

#: Real seconds the child may take from its start to having loaded the artifacts: a Pi Zero 2
#: imports numpy and a runtime and loads three models in seconds; qemu takes far longer.
START_TIMEOUT_SECONDS = 300.0
#: Real seconds between the child's progress messages while it steps (the trainer's heartbeat).
PROGRESS_SECONDS = 0.2
#: Real seconds between the trainer thread's looks at whether the run is still wanted.
POLL_SECONDS = 0.05
#: Real seconds close() waits for the child to end by itself before it kills it.
CLOSE_TIMEOUT_SECONDS = 10.0

_HEADER = struct.Struct("!Q")


def _send(channel: socket.socket, message: tuple[Any, ...]) -> None:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    channel.sendall(_HEADER.pack(len(payload)) + payload)


def _read_exactly(channel: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = channel.recv(min(size - len(data), 1 << 20))
        if not chunk:
            raise EOFError
        data += chunk
    return bytes(data)


def _receive(channel: socket.socket) -> tuple[Any, ...]:
    """The next message; EOFError once the other end has closed (or died)."""
    (size,) = _HEADER.unpack(_read_exactly(channel, _HEADER.size))
    message = pickle.loads(_read_exactly(channel, size))
    if not isinstance(message, tuple) or not message:
        raise TrainingProcessError(f"not a message: {message!r:.80}")
    return message


def _readable(channel: socket.socket, timeout: float) -> bool:
    ready, _, _ = select.select([channel], [], [], timeout)
    return bool(ready)


def describe_exit(returncode: int | None) -> str:
    """How a process ended, as a person says it: "killed by SIGKILL", "exit status 1"."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


class TrainingProcess:
    """The child that runs a run's epochs; started by :meth:`start`, ended by :meth:`close`.

    Used by one thread (the trainer's). *manifest_sha256* is the manifest the parent loaded:
    a child that finds another on disk refuses, rather than train a head for other artifacts.
    """

    def __init__(
        self,
        manifest_path: str | Path,
        manifest_sha256: str,
        *,
        num_threads: int,
        runtime: str,
        start_timeout: float = START_TIMEOUT_SECONDS,
        python: str = sys.executable,
    ) -> None:
        self.manifest_path = Path(manifest_path)
        self.manifest_sha256 = manifest_sha256
        self.num_threads = int(num_threads)
        self.runtime = runtime
        self.start_timeout = start_timeout
        self._python = python
        self._process: subprocess.Popen[bytes] | None = None
        self._channel: socket.socket | None = None
        self._runs = 0
        #: Training steps the child took in the last run that ended (those dropped included).
        self.last_run_steps: int | None = None

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs (None before :meth:`start` and after close)."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the child unless it runs, and wait until it has loaded the artifacts."""
        if self._channel is not None:
            if self.running:
                return
            raise self._ended("ended between runs")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        command = [
            self._python,
            "-m",
            "odar.training_process",
            "--channel-fd",
            str(theirs.fileno()),
            "--manifest",
            str(self.manifest_path),
            "--manifest-sha256",
            self.manifest_sha256,
            "--num-threads",
            str(self.num_threads),
            "--runtime",
            self.runtime,
        ]
        try:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, pass_fds=(theirs.fileno(),)
            )
        except OSError as error:
            ours.close()
            raise TrainingProcessError(
                f"cannot start the training process ({self._python}): {error}"
            ) from error
        finally:
            theirs.close()
        self._channel = ours
        if not _readable(ours, self.start_timeout):
            self.close(timeout=0.0)
            raise TrainingProcessError(
                f"the training process did not load the artifacts within {self.start_timeout:g} s"
            )
        ready = self._next()
        if ready[0] != "ready":
            self.close(timeout=0.0)
            raise TrainingProcessError(f"the training process began with {ready[0]!r}")

    def train(
        self,
        features: np.ndarray,
        onehot: np.ndarray,
        params: Arrays,
        optimizer: Arrays,
        *,
        seed: int,
        keep_going: Callable[[], bool] = lambda: True,
        beat: Callable[[], None] = lambda: None,
    ) -> Generator[EpochResult, None, None]:
        """A run: (mean loss, parameters, optimizer state) after each epoch, until *keep_going*
        turns False or the caller stops iterating. Each epoch steps through the rows in an
        order drawn from ``numpy.random.default_rng(seed)``, in batches of the head's train
        batch size. The child runs ahead of the caller; epochs it finished after the run was
        to stop are not yielded. *beat* is called on each sign of the child's progress."""
        self.start()
        self._runs += 1
        run = self._runs
        self._write(
            (
                "run",
                run,
                np.asarray(features, np.float32),
                np.asarray(onehot, np.float32),
                params,
                optimizer,
                int(seed),
            )
        )
        del features, onehot  # the child has its copy
        ended = False
        try:
            while keep_going():
                message = self._next_within(POLL_SECONDS)
                if message is None:
                    continue
                kind = self._expect(message, run)
                beat()
                if kind == "ended":
                    ended = True
                    self.last_run_steps = int(message[2])
                    return
                if kind == "epoch":
                    yield float(message[2]), message[3], message[4]
        finally:
            if not ended and self._channel is not None:
                self._finish_run(run, beat)

    def close(self, timeout: float = CLOSE_TIMEOUT_SECONDS) -> None:
        """End the child: the socket closed, it exits; killed if it has not within *timeout*."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        process = self._process
        if process is None:
            return
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        finally:
            self._process = None  # after the wait: running until it is gone

    # -- the parent's side of the socket ------------------------------------------------------

    def _finish_run(self, run: int, beat: Callable[[], None]) -> None:
        """The run is to stop (*keep_going* turned False, or the caller stopped iterating):
        tell the child and drop what it still sends, up to the run's end; a child that does not
        stop within CLOSE_TIMEOUT_SECONDS is killed."""
        self._write(("stop", run))
        deadline = time.monotonic() + CLOSE_TIMEOUT_SECONDS
        while (left := deadline - time.monotonic()) > 0:
            message = self._next_within(min(left, POLL_SECONDS))
            if message is not None:
                beat()
                if self._expect(message, run) == "ended":
                    self.last_run_steps = int(message[2])
                    return
        self.close(timeout=0.0)
        raise TrainingProcessError(
            f"the training process did not stop within {CLOSE_TIMEOUT_SECONDS:g} s; killed"
        )

    def _expect(self, message: tuple[Any, ...], run: int) -> str:
        """The kind of a message the child sends during *run*; anything else ends it."""
        kind, tag = message[0], message[1] if len(message) > 1 else None
        if kind not in ("progress", "epoch", "ended") or tag != run:
            self.close(timeout=0.0)
            raise TrainingProcessError(
                f"the training process sent {kind!r} for run {tag!r} during run {run}"
            )
        return str(kind)

    def _write(self, message: tuple[Any, ...]) -> None:
        assert self._channel is not None
        try:
            _send(self._channel, message)
        except OSError as error:  # BrokenPipeError, ConnectionResetError: the child is gone
            raise self._ended(f"could not be written to ({error.strerror})") from error

    def _next_within(self, timeout: float) -> tuple[Any, ...] | None:
        """The child's next message, or None when none came within *timeout* seconds."""
        assert self._channel is not None
        return self._next() if _readable(self._channel, timeout) else None

    def _next(self) -> tuple[Any, ...]:
        """The child's next message (blocks)."""
        assert self._channel is not None
        try:
            message = _receive(self._channel)
        except (EOFError, OSError) as error:
            raise self._ended("ended") from error
        if message[0] == "failed":
            self.close(timeout=CLOSE_TIMEOUT_SECONDS)
            raise TrainingProcessError(f"the training process failed: {message[1]}")
        return message

    def _ended(self, what: str) -> TrainingProcessError:
        process = self._process
        returncode = None
        if process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                returncode = process.wait(CLOSE_TIMEOUT_SECONDS)
        self.close(timeout=0.0)
        return TrainingProcessError(f"the training process {what} ({describe_exit(returncode)})")


# -- the child ------------------------------------------------------------------------------


def run_epoch(
    step: Callable[[Arrays, Arrays, np.ndarray, np.ndarray], EpochResult],
    batch_size: int,
    features: np.ndarray,
    onehot: np.ndarray,
    order: np.ndarray,
    params: Arrays,
    optimizer: Arrays,
    keep_going: Callable[[], bool] = lambda: True,
) -> EpochResult | None:
    """Steps over *order* in batches of *batch_size* with *step* (:meth:`Head.train_step`): the
    mean loss over the rows and the last parameters; None if *keep_going* turned False first."""
    total = 0.0
    for begin in range(0, len(order), batch_size):
        if not keep_going():
            return None
        rows = order[begin : begin + batch_size]
        loss, params, optimizer = step(params, optimizer, features[rows], onehot[rows])
        total += loss * len(rows)
    return total / len(order), params, optimizer


class _Child:
    """The child's side: a head, and the socket to the parent."""

    def __init__(self, channel: socket.socket, head: Any) -> None:
        self._channel = channel
        self._head = head
        self._stop_run: int | None = None
        self._last_progress = time.monotonic()

    def serve(self) -> int:
        _send(self._channel, ("ready",))
        while True:
            try:
                message = _receive(self._channel)
            except EOFError:
                return 0
            if message[0] == "run":
                self._run(*message[1:])
            elif message[0] != "stop":  # a stop that came after its run ended: nothing to stop
                raise TrainingProcessError(f"unknown message {message[0]!r} from the trainer")

    def _run(
        self,
        run: int,
        features: np.ndarray,
        onehot: np.ndarray,
        params: Arrays,
        optimizer: Arrays,
        seed: int,
    ) -> None:
        rng = np.random.default_rng(seed)
        steps = 0

        def step(params: Arrays, optimizer: Arrays, x: np.ndarray, y: np.ndarray) -> EpochResult:
            nonlocal steps
            steps += 1
            return self._head.train_step(params, optimizer, x, y)

        while self._keep_going(run):
            result = run_epoch(
                step,
                self._head.batch_size,
                features,
                onehot,
                rng.permutation(len(features)),
                params,
                optimizer,
                keep_going=lambda: self._keep_going(run),
            )
            if result is None:
                break
            loss, params, optimizer = result
            _send(self._channel, ("epoch", run, loss, params, optimizer))
        _send(self._channel, ("ended", run, steps))

    def _keep_going(self, run: int) -> bool:
        """Between steps: False once the parent asked this run to stop; sends progress."""
        now = time.monotonic()
        if now - self._last_progress >= PROGRESS_SECONDS:
            _send(self._channel, ("progress", run))
            self._last_progress = now
        while self._stop_run != run and _readable(self._channel, 0.0):
            message = _receive(self._channel)
            if message[0] != "stop":
                raise TrainingProcessError(f"{message[0]!r} arrived during a run")
            self._stop_run = message[1]
        return self._stop_run != run


def _load_head(manifest: Path, manifest_sha256: str, num_threads: int, runtime: str) -> Any:
    # Imported here: the parent imports this module for the class above without loading models.
    from odar.head import Head
    from odar.manifest import load_manifest, sha256_of
    from odar.runtime import load_runtime

    found = sha256_of(manifest)
    if found != manifest_sha256:
        raise TrainingProcessError(
            f"{manifest} changed since odar started (SHA-256 {found[:12]}..., odar loaded "
            f"{manifest_sha256[:12]}...): restart odar to train with the new artifacts"
        )
    return Head(load_manifest(manifest), num_threads, load_runtime(runtime))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m odar.training_process",
        description="odar's training epochs; started by the trainer thread, not by hand.",
    )
    parser.add_argument("--channel-fd", type=int, required=True)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--manifest-sha256", required=True)
    parser.add_argument("--num-threads", type=int, required=True)
    parser.add_argument("--runtime", required=True)
    args = parser.parse_args(argv)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    from odar import heap

    heap.tune_malloc()
    channel = socket.socket(fileno=args.channel_fd)
    try:
        head = _load_head(args.manifest, args.manifest_sha256, args.num_threads, args.runtime)
        return _Child(channel, head).serve()
    except EOFError:
        return 0  # the parent closed the socket mid-epoch: it has gone, or stopped waiting
    except (OdarError, OSError, RuntimeError, ValueError) as error:
        # The parent raises this as TrainingProcessError; a dead parent hears nothing.
        with contextlib.suppress(OSError):
            _send(channel, ("failed", f"{type(error).__name__}: {error}"))
        return 1


if __name__ == "__main__":
    sys.exit(main())
