"""Train mode: epochs over the sample store on a background thread, until stopped.

Each epoch shuffles the stored samples and steps through them in batches of the artifacts'
train batch size (as TFLite's personalisation library does); the parameters are published to
:class:`LatestHead` after every epoch, so inference always sees a whole, consistent set.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

import numpy as np

from odar.drivers.clock import Clock
from odar.errors import StateWriteError
from odar.head import Head
from odar.journal import RateLimiter, log_event
from odar.param_store import HeadState, ParamStore
from odar.sample_store import SampleStore

_log = logging.getLogger(__name__)


def loss_settled(losses: Sequence[float], span: int = 20, tolerance: float = 0.02) -> bool:
    """True once the mean loss of the last *span* epochs is within *tolerance* (relative) of
    the *span* before, or the loss is all but zero: when a person would stop training."""
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
    """Runs epochs on its own thread between :meth:`start` and :meth:`stop`."""

    def __init__(
        self,
        head: Head,
        samples: SampleStore,
        latest: LatestHead,
        param_store: ParamStore,
        clock: Clock,
        *,
        save_every_seconds: float,
        max_epochs: int | None,
        limiter: RateLimiter,
        on_finished: Callable[[], None] = lambda: None,
        seed: int | None = None,
        logger: logging.Logger = _log,
    ) -> None:
        self._head = head
        self._samples = samples
        self._latest = latest
        self._param_store = param_store
        self._clock = clock
        self.save_every_seconds = save_every_seconds
        self.max_epochs = max_epochs
        self._limiter = limiter
        self._on_finished = on_finished
        self._rng = np.random.default_rng(seed)
        self._log = logger
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._losses_lock = threading.Lock()
        #: Epoch losses of this process's runs, for STATUS, the demo and loss_settled().
        self.losses: list[float] = []

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def last_loss(self) -> float | None:
        with self._losses_lock:
            return self.losses[-1] if self.losses else None

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="odar-trainer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop after the step under way and save; returns once saved."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def loss_settled(self, span: int = 20, tolerance: float = 0.02) -> bool:
        """See :func:`loss_settled`; over this process's epochs."""
        with self._losses_lock:
            losses = list(self.losses)
        return loss_settled(losses, span, tolerance)

    def save(self) -> bool:
        """Write the current parameters; a failure is logged and training carries on."""
        try:
            self._param_store.save(self._latest.get())
        except StateWriteError as error:
            self._log.error("saving the head failed, the previous file stays: %s", error)
            return False
        return True

    def _run(self) -> None:
        data = self._samples.load(windows=False)  # features only: no raw windows in memory
        features = np.asarray(data.features, np.float32)
        onehot = np.eye(self._head.num_classes, dtype=np.float32)[np.asarray(data.labels)]
        state = self._latest.get()
        params, optimizer, epoch = dict(state.params), dict(state.optimizer), state.epoch
        if not optimizer:
            optimizer = self._head.initial_optimizer_state()
        log_event(
            self._log,
            f"training on {len(features)} samples from epoch {epoch}",
            mode="train",
            samples=len(features),
            epoch=epoch,
        )
        last_save = self._clock.monotonic()
        finished = False
        try:
            while not self._stop.is_set():
                loss, params, optimizer = self._epoch(features, onehot, params, optimizer)
                epoch += 1
                self._latest.set(HeadState(params, optimizer, epoch))
                with self._losses_lock:
                    self.losses.append(loss)
                self._report(epoch, loss, len(features))
                if self._clock.monotonic() - last_save >= self.save_every_seconds:
                    self.save()
                    last_save = self._clock.monotonic()
                if self.max_epochs is not None and epoch >= self.max_epochs:
                    finished = True
                    break
        finally:
            self.save()
            log_event(self._log, f"training stopped at epoch {epoch}", mode="train", epoch=epoch)
        if finished:
            self._on_finished()

    def _epoch(
        self,
        features: np.ndarray,
        onehot: np.ndarray,
        params: dict[str, np.ndarray],
        optimizer: dict[str, np.ndarray],
    ) -> tuple[float, dict[str, np.ndarray], dict[str, np.ndarray]]:
        order = self._rng.permutation(len(features))
        batch = self._head.batch_size
        total = 0.0
        for begin in range(0, len(order), batch):
            rows = order[begin : begin + batch]
            loss, params, optimizer = self._head.train_step(
                params, optimizer, features[rows], onehot[rows]
            )
            total += loss * len(rows)
        return total / len(order), params, optimizer

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
