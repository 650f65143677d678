"""Train mode: epochs over the sample store, run by the trainer thread while asked to.

Each epoch shuffles the stored samples and steps through them in batches of the artifacts'
train batch size (as TFLite's personalisation library does); the parameters are published to
:class:`LatestHead` after every epoch, so inference always sees a whole, consistent set. The
steps themselves run in :class:`~odar.training_process.TrainingProcess`, a child with an
interpreter of its own, so that training never holds the GIL the sensor thread needs; the
trainer thread shuffles, publishes, logs and saves.

:meth:`Trainer.start` and :meth:`Trainer.stop` are requests and return at once (a button's
callback must never wait for an epoch or a save). The trainer thread checks the request between
the training process's messages and the process between two steps; when a run ends the thread
saves, and it is the only thread that saves while it is alive.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from odar.drivers.clock import Clock
from odar.errors import StateWriteError
from odar.head import Head
from odar.heartbeat import ThreadPulse
from odar.journal import RateLimiter, log_event
from odar.param_store import HeadState, ParamStore
from odar.sample_store import SampleStore
from odar.training_process import TrainingProcess

_log = logging.getLogger(__name__)

#: Epoch losses kept: loss_settled() needs the last 2 * span (40), STATUS the last.
LOSS_HISTORY = 256
#: Epoch losses kept of the current run for odar plot (at most twice this in memory).
RUN_HISTORY = 20_000
#: Epochs compared by loss_settled: the last SPAN against the SPAN before.
SETTLED_SPAN = 20
#: Real seconds the idle trainer thread waits for a request before it beats its heartbeat.
IDLE_BEAT_SECONDS = 0.5
#: Clock seconds the training process stays after a run, for the next to start at once (it
#: takes a fraction of a second to start here, more on a Pi). Then its memory (22 MiB of its
#: own in odar bench daemon) is given back for the hours of inference.
PROCESS_IDLE_SECONDS = 300.0


@dataclass(frozen=True)
class Schedule:
    """When to save and when to stop by itself; replaced whole by a reload."""

    save_every_seconds: float
    max_epochs: int | None
    #: End the run by itself once its loss settles (training.stop_when: settled).
    stop_when_settled: bool = False


def loss_settled(
    losses: Sequence[float], span: int = SETTLED_SPAN, tolerance: float = 0.02
) -> bool:
    """True once the mean loss of the last *span* epochs is within *tolerance* (relative) of
    the *span* before, or the loss is all but zero: when a person would stop training."""
    losses = list(losses)  # a deque (the trainer's bounded history) cannot be sliced
    if losses and losses[-1] < 1e-3:
        return True
    if len(losses) < 2 * span:
        return False
    recent = float(np.mean(losses[-span:]))
    before = float(np.mean(losses[-2 * span : -span]))
    return abs(before - recent) <= tolerance * max(before, 1e-9)


class LatestHead:
    """The head's current parameters, swapped whole under a lock (readers never see a mix)."""

    def __init__(self, state: HeadState, trained: bool) -> None:
        self._lock = threading.Lock()
        self._state = state
        self._trained = trained

    def get(self) -> HeadState:
        with self._lock:
            return self._state

    def set(self, state: HeadState) -> None:
        with self._lock:
            self._state = state
            self._trained = True

    @property
    def trained(self) -> bool:
        """False while the parameters are initialize's random draw: nothing to infer with."""
        with self._lock:
            return self._trained


class Trainer:
    """Runs epochs on its own thread while a run is requested; see the module docstring.

    The thread is started by :meth:`launch` (or the first :meth:`start`), through *spawn* when
    given (the service's, which watches it), and ends at :meth:`halt`.
    """

    def __init__(
        self,
        head: Head,
        process: TrainingProcess,
        samples: SampleStore,
        latest: LatestHead,
        param_store: ParamStore,
        clock: Clock,
        *,
        save_every_seconds: float,
        max_epochs: int | None,
        stop_when_settled: bool = False,
        limiter: RateLimiter,
        on_finished: Callable[[], None] = lambda: None,
        seed: int | None = None,
        spawn: Callable[[Callable[[], None], str], threading.Thread] | None = None,
        pulse: ThreadPulse | None = None,
        logger: logging.Logger = _log,
    ) -> None:
        self._head = head
        #: Where the epochs run: started by a run, ended PROCESS_IDLE_SECONDS after the last.
        self.process = process
        self._process_idle_since: float | None = None
        self._samples = samples
        self._latest = latest
        self._param_store = param_store
        self._clock = clock
        self.schedule = Schedule(save_every_seconds, max_epochs, stop_when_settled)
        #: Why the last run ended by itself ("loss settled", "max_epochs"); None when stopped.
        self.finish_reason: str | None = None
        self._limiter = limiter
        self._on_finished = on_finished
        self._rng = np.random.default_rng(seed)
        self._spawn = spawn
        self._pulse = pulse if pulse is not None else ThreadPulse()
        self._log = logger
        self._requests = threading.Condition()
        self._requested = False
        self._run_id = 0
        self._run_for: int | None = None
        self._halted = False
        self._busy = False
        self._saving = False
        self._thread: threading.Thread | None = None
        self._save_lock = threading.Lock()
        self._saved_epoch = latest.get().epoch if latest.trained else None
        self._losses_lock = threading.Lock()
        #: The latest epoch losses of this process (at most LOSS_HISTORY), for STATUS, the
        #: demo and loss_settled().
        self.losses: deque[float] = deque(maxlen=LOSS_HISTORY)
        #: The first epoch loss of this process (the history forgets it).
        self.first_loss: float | None = None
        #: The current (or last) run: its first epoch and its losses (the last RUN_HISTORY).
        self._run_first_epoch = 0
        self._run_losses: list[float] = []
        #: Runs started in this process; odar status and plot tell runs apart by it.
        self.runs = 0

    # -- requests (any thread; never block) -------------------------------------------------

    @property
    def save_every_seconds(self) -> float:
        return self.schedule.save_every_seconds

    @property
    def max_epochs(self) -> int | None:
        return self.schedule.max_epochs

    @property
    def stop_when_settled(self) -> bool:
        return self.schedule.stop_when_settled

    def reschedule(self, schedule: Schedule) -> None:
        """Apply a reloaded configuration: one reference swapped, read once per epoch."""
        self.schedule = schedule

    @property
    def requested(self) -> bool:
        """A run has been asked for and not stopped."""
        with self._requests:
            return self._requested

    @property
    def running(self) -> bool:
        """Training, or finishing a run (the step under way, the save): not idle."""
        with self._requests:
            return self._requested or self._busy

    @property
    def saving(self) -> bool:
        """A save is being written (shutdown extends its time limit meanwhile)."""
        return self._saving

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def launch(self) -> None:
        """Start the trainer thread (idle until :meth:`start`)."""
        with self._requests:
            if self._thread is not None:
                return
            if self._spawn is not None:
                self._thread = self._spawn(self.serve, "odar-trainer")
            else:
                self._thread = threading.Thread(
                    target=self._serve_logged, name="odar-trainer", daemon=True
                )
                self._thread.start()

    def start(self, run: int | None = None) -> None:
        """Ask for a run (a new one: the samples are loaded again). Asking again for the run
        *run* (the controls' run id) already going does nothing."""
        self.launch()
        with self._requests:
            if self._halted or (self._requested and run is not None and run == self._run_for):
                return
            self._requested = True
            self._run_for = run
            self._run_id += 1
            self._requests.notify_all()

    def stop(self) -> None:
        """Ask the run to end after the step under way; the trainer thread saves."""
        with self._requests:
            self._requested = False
            self._requests.notify_all()

    def halt(self) -> None:
        """End the thread: a run under way stops and saves first."""
        with self._requests:
            self._halted = True
            self._requested = False
            self._requests.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Until no run is asked for or finishing (True), or *timeout* real seconds."""
        with self._requests:
            return self._requests.wait_for(
                lambda: not (self._requested or self._busy), timeout
            )

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def run_history(self) -> tuple[int, list[float]]:
        """(the epoch of the first loss, the losses) of the current or last run."""
        with self._losses_lock:
            return self._run_first_epoch, list(self._run_losses)

    def recent_losses(self, count: int) -> tuple[float, ...]:
        """The last *count* epoch losses of this process's runs, oldest first."""
        with self._losses_lock:
            return tuple(self.losses)[-count:]

    def loss_settled(self, span: int = SETTLED_SPAN, tolerance: float = 0.02) -> bool:
        """See :func:`loss_settled`; over this process's epochs."""
        with self._losses_lock:
            losses = list(self.losses)
        return loss_settled(losses, span, tolerance)

    @property
    def last_loss(self) -> float | None:
        with self._losses_lock:
            return self.losses[-1] if self.losses else None

    @property
    def unsaved(self) -> bool:
        """The head has epochs the file does not."""
        return self._latest.trained and self._latest.get().epoch != self._saved_epoch

    def save(self) -> bool:
        """Write the current parameters; a failure is logged and training carries on. Saves
        never overlap (a lock), and each writes the newest head."""
        with self._save_lock:
            self._saving = True
            try:
                state = self._latest.get()
                self._param_store.save(state)
            except StateWriteError as error:
                self._log.error("saving the head failed, the previous file stays: %s", error)
                return False
            finally:
                self._saving = False
            self._saved_epoch = state.epoch
            return True

    # -- the trainer thread -----------------------------------------------------------------

    def _serve_logged(self) -> None:
        try:
            self.serve()
        except Exception:
            self._log.exception("the trainer thread failed")
            raise

    def serve(self) -> None:
        """The trainer thread's body: wait for a request, train, save; until halted."""
        try:
            self._serve_requests()
        finally:
            self.process.close()

    def _serve_requests(self) -> None:
        while True:
            self._pulse.beat()
            with self._requests, self._pulse.waiting():
                self._requests.wait_for(
                    lambda: self._requested or self._halted, IDLE_BEAT_SECONDS
                )
                if self._halted:
                    return
                if not self._requested:
                    self._end_idle_process()
                    continue
                run_id = self._run_id
                self._busy = True
            try:
                finished = self._train(run_id)
            finally:
                with self._requests:
                    self._busy = False
                    self._requests.notify_all()
            if finished:
                self._on_finished()

    def _end_idle_process(self) -> None:
        """End the training process once no run has needed it for PROCESS_IDLE_SECONDS."""
        if self._process_idle_since is None:
            return
        if self._clock.monotonic() - self._process_idle_since >= PROCESS_IDLE_SECONDS:
            self.process.close()
            self._process_idle_since = None

    def _wanted(self, run_id: int) -> bool:
        with self._requests:
            return self._requested and self._run_id == run_id and not self._halted

    def _train(self, run_id: int) -> bool:
        """One run: epochs until stopped (False) or until it ends by itself (True: max_epochs, or
        the loss settled); then a save."""
        data = self._samples.load(windows=False)  # features only: no raw windows in memory
        # A copy: a view would keep every loaded record alive while training.
        features = np.array(data.features, np.float32)
        onehot = np.eye(self._head.num_classes, dtype=np.float32)[np.asarray(data.labels)]
        del data
        if not self.process.running:
            began = time.monotonic()  # real time: what the wearer waits for
            with self._pulse.waiting():  # the child's start is bounded by its own time limit
                self.process.start()
            log_event(
                self._log,
                f"training process {self.process.pid} started in "
                f"{time.monotonic() - began:.2f} s",
                mode="train",
            )
        rows = len(features)
        state = self._latest.get()
        params, optimizer, epoch = dict(state.params), dict(state.optimizer), state.epoch
        if not optimizer:
            optimizer = self._head.initial_optimizer_state()
        log_event(
            self._log,
            f"training on {rows} samples from epoch {epoch}",
            mode="train",
            samples=rows,
            epoch=epoch,
        )
        last_save = self._clock.monotonic()
        finished = False
        self.finish_reason = None
        # This run's losses only (bounded): a resumed head must settle anew before it stops.
        run_losses: list[float] = []
        with self._losses_lock:
            self.runs += 1
            self._run_first_epoch = epoch + 1
            self._run_losses = []
        epochs = self.process.train(
            features,
            onehot,
            params,
            optimizer,
            seed=int(self._rng.integers(2**63)),
            keep_going=lambda: self._wanted(run_id),
            beat=self._pulse.beat,
        )
        del features, onehot  # the child has its copy
        try:
            # Stopped mid-epoch, the loop ends: the last whole epoch stays published.
            for loss, params, optimizer in epochs:
                epoch += 1
                self._latest.set(HeadState(params, optimizer, epoch))
                with self._losses_lock:
                    self.losses.append(loss)
                    if self.first_loss is None:
                        self.first_loss = loss
                    self._run_losses.append(loss)
                    if len(self._run_losses) > 2 * RUN_HISTORY:
                        dropped = len(self._run_losses) - RUN_HISTORY
                        del self._run_losses[:dropped]
                        self._run_first_epoch += dropped
                self._report(epoch, loss, rows)
                schedule = self.schedule
                if self._clock.monotonic() - last_save >= schedule.save_every_seconds:
                    self.save()
                    last_save = self._clock.monotonic()
                run_losses = [*run_losses[-2 * SETTLED_SPAN + 1 :], loss]
                if schedule.max_epochs is not None and epoch >= schedule.max_epochs:
                    self.finish_reason = "max_epochs"
                elif schedule.stop_when_settled and loss_settled(run_losses, SETTLED_SPAN):
                    self.finish_reason = "loss settled"
                if self.finish_reason is not None:
                    with self._requests:
                        if self._run_id == run_id:
                            self._requested = False
                    finished = True
                    break
        finally:
            try:
                epochs.close()  # the child's run stopped; its later epochs dropped
            finally:
                self.save()
                log_event(
                    self._log, f"training stopped at epoch {epoch}", mode="train", epoch=epoch
                )
                self._process_idle_since = self._clock.monotonic()
        return finished

    def _report(self, epoch: int, loss: float, samples: int) -> None:
        if not self._limiter.allow():
            return
        skipped = self._limiter.take_suppressed()
        note = f" ({skipped} epochs not shown)" if skipped else ""
        log_event(
            self._log,
            f"epoch {epoch}: loss {loss:.4f}{note}",
            mode="train",
            epoch=epoch,
            loss=loss,
            samples=samples,
        )
