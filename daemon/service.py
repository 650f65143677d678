"""``odar run``: the daemon systemd starts.

Threads, each with one job:

- sensor: driver -> ring buffer; its heartbeat beats while data flows or recovery is under way;
- windows: ring buffer -> window -> bottleneck -> sample store (collect) or head -> motor
  (infer), for the windows the current run owns (:meth:`odar.controls.Run.owns`);
- trainer: epochs over the sample store while Train runs (:mod:`odar.trainer`);
- main: signals (SIGTERM/SIGINT stop, SIGHUP reload), STATUS=, WATCHDOG=1 while every worker
  thread's heartbeat is fresh (:mod:`odar.heartbeat`), and the orderly shutdown.

Button presses arrive on gpiozero's thread and only flip the mode machine
(:mod:`odar.controls`), confirm with a haptic pattern and ask the trainer to start or stop:
they never wait. The threading rule (DEVELOPERS.md): what several threads read is immutable
and swapped whole. A worker thread that raises stops the daemon with EX_SOFTWARE after an
ERROR naming it and the refusal rattle.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from odar import __version__, heap, message_ids
from odar.class_names import class_index, display_names
from odar.collector import Collector
from odar.config import Config, load_config
from odar.controls import Controls, Event, EventKind, Mode, Position, Run
from odar.detector import Detection, Detector
from odar.drivers.clock import SystemClock
from odar.drivers.mpu6050 import SensorBlock, nearest_sample_rate
from odar.engine import Engine
from odar.errors import ConfigError, RootRefusedError, StateError, StateWriteError
from odar.gc_pauses import startup_objects_frozen
from odar.haptics import (
    FINISHED,
    NO_SENSOR,
    REFUSED,
    SAMPLE_REMOVED,
    Pattern,
    detection_pattern,
    pattern_for,
)
from odar.heartbeat import Heartbeats, ThreadPulse
from odar.journal import RateLimiter, log_event, setup_logging
from odar.notifier import SystemdNotifier
from odar.param_store import HeadState, ParamStore
from odar.realtime import (
    MAIN_LOOP,
    SENSOR_THREAD,
    daemon_thread_priority,
    make_this_thread_realtime,
    make_thread_realtime,
    this_thread_realtime,
)
from odar.ring_buffer import RingBuffer
from odar.sample_requests import RequestBox
from odar.sample_store import SampleStore, StoreLayout
from odar.sensor_presence import SensorPresence
from odar.sensor_reader import SensorReader
from odar.signals import SignalRequests
from odar.state_dir import StateDirectory
from odar.status_report import StatusReport
from odar.trainer import LatestHead, Schedule, Trainer, loss_settled
from odar.training_process import TrainingProcess
from odar.wearable import Wearable, open_real_wearable
from odar.windows import Window, WindowCutter

_log = logging.getLogger("odar")

DEFAULT_CONFIG = Path("/etc/odar/odar.yaml")
EX_SOFTWARE = 70
#: Ring capacity in seconds of sensor data: room for a window and a slow consumer.
RING_SECONDS = 30
#: How long start-up waits for the first samples before giving up (real seconds).
FIRST_DATA_TIMEOUT = 20.0
#: Real seconds the shutdown waits for the threads, within the unit's TimeoutStopSec=30; a
#: save under way extends systemd's limit (EXTEND_TIMEOUT_USEC) instead of being cut short.
STOP_BUDGET = 20.0
#: Each EXTEND_TIMEOUT_USEC asks for this many more seconds while a save is written.
SAVE_EXTENSION = 10.0
#: While the stored windows are re-run through a new bottleneck before READY, each
#: EXTEND_TIMEOUT_USEC asks for this many more seconds: TimeoutStartSec=90 is for a start that
#: hangs, not for one working through a large store (minutes on a Pi Zero 2).
RECOMPUTE_EXTENSION = 30.0
#: Real seconds between two such extensions (and STATUS lines saying how far it got).
RECOMPUTE_NOTE_EVERY = 2.0
#: Real seconds the window thread waits for samples before it beats its heartbeat.
WINDOW_WAIT = 0.2
PARAMS_FILE = "head.params"
SAMPLES_FILE = "samples.odar"
CONTROLS_FILE = "controls.json"
#: Epoch losses a Status carries: the two spans loss_settled compares.
RECENT_LOSSES = 40


@dataclass(frozen=True)
class Inferred:
    """One inferred window, for observers (the demo, the daemon bench)."""

    window: Window
    detection: Detection
    #: Clock time when the motor was told (or would have been): latency = this - t_end.
    decided_at: float


class Observer:
    """The public hook for watching a running daemon (the demo, the benches, the tests):
    override what you watch; each default does nothing. The calls come on the daemon's threads,
    as the thing happens: keep them short."""

    def block_read(self, block: SensorBlock) -> None:
        """A block from the sensor (samples or a gap mark), put into the ring buffer."""

    def window_cut(self, window: Window) -> None:
        """A window cut from the ring buffer, about to be processed (whatever the mode)."""

    def confirmed(self, event: Event, pattern: Pattern) -> None:
        """A press was handled; *pattern* is what the motor was given to confirm it."""

    def inferred(self, inferred: Inferred) -> None:
        """An inferred window (Infer mode)."""

    def played(self, pattern: Pattern) -> None:
        """A pattern no press asked for: training finished, a sample removed by a long press."""


#: Called by the sensor and window threads once per loop turn with the thread's name: the one
#: point where a test harness may inject a fault (a hang, an exception). None in the product.
Probe = Callable[[str], None]


@dataclass(frozen=True)
class Status:
    """What the daemon is doing at one moment: the journal's STATUS= line, and what an observer
    (a scripted wearer, a bench) may read without reaching into the daemon's parts."""

    mode: Mode
    running: bool
    class_index: int
    #: Samples stored per class, by class index.
    counts: tuple[int, ...]
    epoch: int
    #: This process's last epoch losses, oldest first: enough for :attr:`loss_settled`.
    recent_losses: tuple[float, ...]
    #: READY=1 has been sent.
    ready: bool
    #: The orderly shutdown has begun.
    stopping: bool

    @property
    def selected_count(self) -> int:
        """Samples stored of the selected class."""
        return self.counts[self.class_index]

    @property
    def loss(self) -> float | None:
        return self.recent_losses[-1] if self.recent_losses else None

    @property
    def loss_settled(self) -> bool:
        """Whether a person would stop training now (:func:`odar.trainer.loss_settled`)."""
        return loss_settled(self.recent_losses)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help="the configuration file",
    )
    parser.add_argument(
        "--allow-root",
        action="store_true",
        help="run even as root (refused otherwise: the unit runs odar as the user odar)",
    )


def refuse_root(allow_root: bool, euid: int | None = None) -> None:
    """:class:`RootRefusedError` when running as root and not told it is fine."""
    if (os.geteuid() if euid is None else euid) == 0 and not allow_root:
        raise RootRefusedError(
            "refusing to run as root: the daemon needs no privileges (the unit runs it as "
            "the user odar); pass --allow-root if you mean it"
        )


def run(args: argparse.Namespace) -> int:
    refuse_root(args.allow_root)
    setup_logging("info")
    heap.tune_malloc()  # before any thread: arenas made earlier stay
    config = load_config(args.config)
    setup_logging(config.logging.level)
    if config.sensor.backend == "emulated":
        # The test world (emulated chip, scripted wearer) is imported only when asked for.
        from odar.harness.emulated_wearable import run_emulated

        return run_emulated(config, args.config)
    return Daemon(config, open_real_wearable(config), config_path=args.config).run()


class Daemon:
    """The service on one wearable, built whole: artifacts loaded and checked, stores opened,
    buttons bound. It owns the wearable it is given: :meth:`run` closes it when it stops, and so
    does a constructor that fails."""

    def __init__(
        self,
        config: Config,
        wearable: Wearable,
        *,
        config_path: Path | None = None,
        notifier: SystemdNotifier | None = None,
        observer: Observer | None = None,
        seed: int | None = None,
        probe: Probe | None = None,
    ) -> None:
        #: Replaced whole by a reload, never patched.
        self.config = config
        self.config_path = config_path
        self.wearable = wearable
        self.notifier = notifier if notifier is not None else SystemdNotifier()
        self.observer = observer if observer is not None else Observer()
        self.signals = SignalRequests()
        #: Clock time when READY=1 was sent; None before.
        self.ready_at: float | None = None
        self._fatal: str | None = None
        #: Why the last Collect was refused (store cap, free-space reserve), for STATUS.
        self._collect_refusal: str | None = None
        self._fail_lock = threading.Lock()
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._halt = threading.Event()
        self._probe = probe
        self.heartbeats = Heartbeats()
        self._watchdog_every = self.notifier.watchdog_interval()
        self._next_ping = 0.0
        self._silent_threads: frozenset[str] = frozenset()
        self._trainer_lock = threading.Lock()
        #: The run the window thread cuts for (its id), or 0 before the first.
        self._cutting_for = 0
        with contextlib.ExitStack() as undo_on_failure:
            undo_on_failure.callback(wearable.close)
            self.engine = Engine.load(config.paths.artifacts_dir, config.runtime.num_threads)
            manifest = self.engine.manifest
            self.class_names = display_names(manifest.classes, config.classes.names)
            self._check_trigger_class(config)
            _, rate = nearest_sample_rate(config.sensor.settings)
            self.decimation = self.engine.decimation_for(rate)

            self.state = StateDirectory.open(config.state_dir)
            undo_on_failure.callback(self.state.close)
            state_dir = self.state.path
            self.state.remove_stale_temporaries((PARAMS_FILE, SAMPLES_FILE, CONTROLS_FILE), _log)
            layout = StoreLayout(
                self.engine.bottleneck_sha256,
                manifest.num_classes,
                manifest.feature_size,
                (manifest.window_samples, len(manifest.input_layout)),
            )
            self.samples = SampleStore.open(
                state_dir / SAMPLES_FILE,
                layout,
                features_for=self.engine.bottleneck.features_of,
                legacy_manifest_hash=self.engine.manifest_hash,
                progress=self._recompute_progress(),
            )
            undo_on_failure.callback(self.samples.close)
            self._bound_samples(config)
            if self.samples.features_recomputed:
                log_event(
                    _log,
                    "the bottleneck changed: the stored samples' features were recomputed "
                    "with the new one; train the head again",
                    logging.WARNING,
                    event="features_recomputed",
                )
            self.param_store = ParamStore(
                state_dir / PARAMS_FILE,
                self.engine.head_binding,
                # A head saved by an earlier odar, bound to the manifest file's bytes.
                also_accept=(self.engine.manifest_hash,),
            )
            head = self.engine.head
            saved = self.param_store.load()
            if saved is None:
                fresh = HeadState(head.initial_parameters(), head.initial_optimizer_state(), 0)
                self.latest = LatestHead(fresh, trained=False)
            else:
                log_event(
                    _log, f"loaded the head trained for {saved.epoch} epochs", epoch=saved.epoch
                )
                self.latest = LatestHead(saved, trained=True)

            clock = wearable.clock
            rate_samples = round(rate)
            self.ring = RingBuffer(max(rate_samples * RING_SECONDS, 4 * manifest.window_samples))
            self.controls = Controls(
                manifest.num_classes,
                manifest.train_batch_size,
                self.samples.counts,
                head_available=lambda: self.latest.trained,
                state_path=state_dir / CONTROLS_FILE,
                position=self._position,
            )
            #: The sensor as the daemon reads it: missing (no chip, no /dev/i2c-N) is a state.
            self.sensor = SensorPresence(wearable.sensor, config.sensor.settings, clock)
            self.trainer = Trainer(
                head,
                TrainingProcess(
                    manifest.path,
                    self.engine.manifest_hash,
                    num_threads=config.runtime.num_threads,
                    runtime=self.engine.runtime.name,
                ),
                self.samples,
                self.latest,
                self.param_store,
                clock,
                save_every_seconds=config.training.save_every_seconds,
                max_epochs=config.training.max_epochs,
                stop_when_settled=config.training.stop_when == "settled",
                limiter=RateLimiter(config.logging.loss_lines_per_second, clock),
                on_finished=self._training_finished,
                seed=seed,
                spawn=self._start_thread,
                pulse=ThreadPulse(self.heartbeats, "odar-trainer"),
            )
            self.collector = Collector(
                self.samples,
                self.class_names,
                limiter=RateLimiter(config.logging.sample_lines_per_second, clock),
            )
            self.detector = Detector(
                head,
                self.latest,
                self.class_names,
                self._trigger_name(config),
                config.inference.threshold,
                self._pulse,
                RateLimiter(config.logging.probability_lines_per_second, clock),
            )
            self.cutter = WindowCutter(
                self.ring,
                window=manifest.window_samples,
                hop=config.inference.hop_samples,
                decimation=self.decimation,
            )
            self.status_report = StatusReport(self)
            self.sample_requests = RequestBox(
                config.runtime_dir,
                self.samples,
                self.class_names,
                lambda name: class_index(name, manifest.classes, self.class_names, "CLASS"),
                self.engine.bottleneck.features_of,
                self._samples_changed,
            )
            wearable.buttons.bind(
                lambda: self._press(self.controls.press_mode),
                lambda: self._press(self.controls.press_class),
                lambda: self._press(self.controls.press_start_stop),
                on_class_held=lambda: self._press(self._remove_last_sample),
                hold_seconds=config.pins.long_press_seconds,
            )
            undo_on_failure.pop_all()

    def _recompute_progress(self) -> Callable[[int, int], None]:
        """What SampleStore.open tells of a recompute: systemd's start limit pushed on, and
        STATUS says how far it got, at most every RECOMPUTE_NOTE_EVERY real seconds."""
        # Real time, not the wearable's clock: systemd's limits are on the wall.
        limiter = RateLimiter(1.0 / RECOMPUTE_NOTE_EVERY, SystemClock())

        def progress(done: int, total: int) -> None:
            if limiter.allow() or done == total:
                self.notifier.extend_timeout(RECOMPUTE_EXTENSION)
                self.notifier.status(
                    f"starting: features of the stored samples recomputed with the new "
                    f"bottleneck, {done} of {total} records"
                )

        return progress

    def _check_trigger_class(self, config: Config) -> None:
        display_names(self.engine.manifest.classes, config.classes.names)
        self._trigger_name(config)

    def _trigger_name(self, config: Config) -> str:
        """The display name of ``inference.trigger_class`` (which may use either name)."""
        index = class_index(
            config.inference.trigger_class,
            self.engine.manifest.classes,
            self.class_names,
            "inference.trigger_class",
        )
        return self.class_names[index]

    # ------------------------------------------------------------------ events

    def _bound_samples(self, config: Config) -> None:
        storage = config.storage
        self.samples.set_bounds(storage.max_samples_mib * 2**20, storage.reserve_free_mib * 2**20)

    def _refuse_collect(self, reason: str, press: Event | None = None) -> None:
        """Collect cannot store another sample: stop the run, rattle, say why. *press*: the
        start press refused (None when a running Collect reaches a bound)."""
        stopped = self.controls.stop()
        self._collect_refusal = reason
        self._play(REFUSED)
        confirmed = press if press is not None else stopped
        if confirmed is not None:
            self.observer.confirmed(confirmed, REFUSED)
        else:
            self.observer.played(REFUSED)
        log_event(
            _log, f"collect refused: {reason}", logging.WARNING, event="refused", mode="collect"
        )
        self._publish_status()

    @property
    def pulse_seconds(self) -> float:
        return self.config.inference.pulse_seconds

    def _position(self) -> Position:
        # The sequence first: every sample numbered below it was taken before the time read.
        seq = self.ring.write_seq
        return Position(seq, self.wearable.clock.monotonic())

    def _press(self, press: Callable[[], Event | None]) -> None:
        """A button's callback (gpiozero's thread): its action, or NO_SENSOR while there is no
        chip to read; never blocks, never lets an error vanish."""
        try:
            if self.sensor.missing is not None:
                # Without data no mode can do anything: say so on the wrist instead.
                self._play(NO_SENSOR)
                self.observer.played(NO_SENSOR)
                log_event(
                    _log,
                    "button press ignored: there is no sensor yet",
                    logging.WARNING,
                    event="no_sensor",
                )
                return
            event = press()
            if event is not None:
                self._handle(event)
        except Exception as error:
            self._failed("button handler", error)

    def _handle(self, event: Event) -> None:
        if event.kind is EventKind.STARTED and event.mode is Mode.COLLECT:
            reason = self.samples.can_accept()
            if reason is not None:
                self._refuse_collect(reason, press=event)
                return
            self._collect_refusal = None
        pattern = pattern_for(event)
        self._play(pattern)
        self.observer.confirmed(event, pattern)
        level = logging.WARNING if event.kind is EventKind.REFUSED else logging.INFO
        log_event(
            _log,
            event.describe(self.class_names),
            level,
            message_id=message_ids.MODE_CHANGED if event.kind is EventKind.MODE_SELECTED else None,
            event=event.kind.value,
            mode=event.mode.value,
            class_name=self.class_names[event.class_index],
            running=int(event.running),
            counts=list(self.samples.counts()),
        )
        self._sync_trainer()
        self._publish_status()

    def _sync_trainer(self) -> None:
        """Ask the trainer for what the controls say now (a request; returns at once). From the
        latest snapshot, so presses handled on several threads cannot leave it stale."""
        with self._trainer_lock:
            snapshot = self.controls.snapshot()
            if snapshot.running and snapshot.mode is Mode.TRAIN and snapshot.run is not None:
                self.trainer.start(snapshot.run.id)
            else:
                self.trainer.stop()

    def _training_finished(self) -> None:
        """The trainer ended a run by itself (and saved): stop Train, say so."""
        event = self.controls.stop()
        if event is None:
            return
        self._play(FINISHED)
        self.observer.played(FINISHED)
        status = self.status()
        loss = f", loss {status.loss:.4f}" if status.loss is not None else ""
        log_event(
            _log,
            f"training finished ({self.trainer.finish_reason}) at epoch {status.epoch}{loss}; "
            "the head is saved",
            message_id=message_ids.TRAINING_FINISHED,
            event="finished",
            mode=event.mode.value,
            reason=self.trainer.finish_reason,
            epoch=status.epoch,
            loss=status.loss if status.loss is not None else "",
        )
        self._publish_status()

    def _remove_last_sample(self) -> None:
        """A long press of the class button: the last sample goes (a wrong one just taken)."""
        try:
            ids = self.samples.ids()
            if not ids:
                raise StateError("there are no samples")
            removed = ids[-1]
            self.samples.delete([removed])
        except (StateError, StateWriteError) as error:
            self._play(REFUSED)
            self.observer.played(REFUSED)
            log_event(_log, f"no sample removed: {error}", logging.WARNING, event="refused")
            return
        self._play(SAMPLE_REMOVED)
        self.observer.played(SAMPLE_REMOVED)
        self._samples_changed(
            f"removed the last sample (id {removed})",
            message_id=message_ids.SAMPLE_REMOVED,
            event="sample_removed",
            sample_id=removed,
        )

    def _samples_changed(
        self,
        what: str,
        *,
        message_id: str | None = None,
        event: str = "samples_changed",
        sample_id: int | None = None,
    ) -> None:
        counts = self.samples.counts()
        shown = ", ".join(f"{n} {name}" for name, n in zip(self.class_names, counts, strict=True))
        text = f"samples: {what}; now {shown}"
        if sample_id is None:
            log_event(_log, text, message_id=message_id, event=event, counts=list(counts))
        else:
            log_event(
                _log,
                text,
                message_id=message_id,
                event=event,
                counts=list(counts),
                sample_id=sample_id,
            )
        self._publish_status()

    def _play(self, pattern: Pattern) -> None:
        self.wearable.motor.play(pattern)
        if self.wearable.led is not None:
            self.wearable.led.play(pattern)

    def _pulse(self) -> None:
        self._play(detection_pattern(self.pulse_seconds))

    # ------------------------------------------------------------------ threads

    def _sensor_loop(self) -> None:
        # Read through the presence: while the chip is missing it returns empty blocks at its
        # own pace and looks for the chip; the driver's own recovery is "lost", not "missing".
        sensor = self.sensor
        clock = self.wearable.clock
        pulse = ThreadPulse(self.heartbeats, "odar-sensor")
        lost = False

        def after_read(block: SensorBlock) -> None:
            nonlocal lost
            self._checkpoint("odar-sensor")
            if sensor.driver.recovering != lost:
                lost = sensor.driver.recovering
                self._sensor_lost_or_recovered(lost)
            if len(block) or block.gap:
                self.observer.block_read(block)
            if len(block) or sensor.recovering:
                pulse.beat()

        reader = SensorReader(
            sensor, self.ring, clock, window_end_after=self.cutter.window_end_after
        )
        reader.run(self._halt, after_read)

    def _realtime_scheduling(self) -> bool:
        """Whether the daemon's threads take SCHED_FIFO (odar.realtime): with the real sensor.

        The emulated chip computes inside each read: at a world speed far above 1 a real-time
        sensor thread would take a whole core from everything else."""
        return self.config.sensor.backend == "real"

    def _thread_priority(self, name: str) -> int | None:
        priority = self.config.sensor.realtime_priority
        return priority if name == SENSOR_THREAD else daemon_thread_priority(priority)

    def _thread_scheduling(self, name: str) -> bool:
        """Called first in each thread the daemon starts: the sensor thread's reads have the
        FIFO's deadline, and the others hold the GIL it waits for. True if real-time."""
        if not self._realtime_scheduling():
            if name == SENSOR_THREAD:
                _log.info("threads: time-sharing (the emulated sensor)")
            realtime = False
        else:
            realtime = make_this_thread_realtime(self._thread_priority(name), thread=name)
        self._scheduled(name, realtime)
        return realtime

    @contextlib.contextmanager
    def _main_thread_scheduling(self) -> Iterator[bool]:
        """Around :meth:`run`: the calling thread runs the main loop, scheduled as the daemon's
        other threads until :meth:`run` returns. The motor's and the LED's threads, which the
        wearable started, are put at their priority too (and end with the wearable)."""
        if not self._realtime_scheduling():
            self._scheduled(MAIN_LOOP, False)
            yield False
            return
        priority = self._thread_priority(MAIN_LOOP)
        with this_thread_realtime(priority, thread=MAIN_LOOP) as realtime:
            self._scheduled(MAIN_LOOP, realtime)
            for player in (self.wearable.motor, self.wearable.led):
                if player is not None and player.thread_id is not None:
                    name = player.thread_name
                    self._scheduled(
                        name, make_thread_realtime(player.thread_id, priority, thread=name)
                    )
            yield realtime

    def _scheduled(self, name: str, realtime: bool) -> None:
        """What a thread's scheduling came to (for a bench to record)."""

    def _sensor_lost_or_recovered(self, lost: bool) -> None:
        where = f"MPU6050 on i2c-{self.config.sensor.bus} at {self.config.sensor.address:#04x}"
        if lost:
            log_event(
                _log,
                f"sensor lost: {where} stopped answering; retrying",
                logging.WARNING,
                message_id=message_ids.SENSOR_LOST,
                event="sensor_lost",
            )
        else:
            log_event(
                _log,
                f"sensor recovered: {where} answers again",
                message_id=message_ids.SENSOR_RECOVERED,
                event="sensor_recovered",
            )

    def _window_loop(self) -> None:
        pulse = ThreadPulse(self.heartbeats, "odar-windows")
        while not self._halt.is_set():
            pulse.beat()
            self._checkpoint("odar-windows")
            with pulse.waiting():
                window = self.cutter.next_window(timeout=WINDOW_WAIT)
            # Read once per window: mode, class and the run all from one moment.
            run = self.controls.snapshot().run
            if run is not None and run.id != self._cutting_for:
                # A new run: cut again from its start press, dropping what was cut before.
                self._cutting_for = run.id
                self.cutter.restart(run.start.seq, not_before=run.start.time)
                continue
            if window is None:
                continue
            self.observer.window_cut(window)
            if run is None or run.mode is Mode.TRAIN:
                continue
            if run.owns(window.t_start, window.t_end):
                self._process(window, run)

    def _process(self, window: Window, run: Run) -> None:
        if run.mode is Mode.INFER and not run.going:
            return  # no motor after the stop press
        features = self.engine.bottleneck.features(window.samples)
        if run.mode is Mode.COLLECT:
            reason = self.samples.can_accept()
            if reason is not None:
                self._refuse_collect(reason)
                return
            self.collector.collect(window, features, run.class_index)
            self._publish_status()
        elif run.mode is Mode.INFER:
            detection = self.detector.detect(features)
            self.status_report.last_probabilities = (
                time.time(),
                tuple(float(p) for p in detection.probabilities),
            )
            self.observer.inferred(Inferred(window, detection, self.wearable.clock.monotonic()))

    def _checkpoint(self, thread: str) -> None:
        if self._probe is not None:
            self._probe(thread)

    def _failed(self, where: str, error: BaseException) -> None:
        """A thread's unexpected exception: an ERROR with the traceback, the refusal rattle,
        and an orderly stop with EX_SOFTWARE (systemd restarts the service)."""
        with self._fail_lock:
            first = self._fatal is None
            if first:
                self._fatal = f"{where}: {type(error).__name__}: {error}"
        _log.error(
            "the %s failed, stopping for a restart: %s: %s",
            where,
            type(error).__name__,
            error,
            exc_info=error,
            extra={"ODAR_EVENT": "failed", "ODAR_THREAD": where},
        )
        if not first:
            return
        with contextlib.suppress(Exception):
            self.controls.stop()
            self.trainer.stop()
            self._play(REFUSED)
            self.observer.played(REFUSED)
            self.notifier.status(f"failed: {self._fatal}; stopping")
        self.signals.request_stop()

    def _start_thread(self, target: Callable[[], None], name: str) -> threading.Thread:
        def guarded() -> None:
            try:
                self._thread_scheduling(name)
                target()
            except BaseException as error:
                self._failed(f"{name} thread", error)
            else:
                self.heartbeats.retire(name)

        thread = threading.Thread(target=guarded, name=name, daemon=True)
        self.heartbeats.register(name)
        thread.start()
        self._threads.append(thread)
        return thread

    # ------------------------------------------------------------------ for observers

    def request_stop(self) -> None:
        """What SIGTERM does: an orderly stop."""
        self.signals.request_stop()

    @property
    def stopping(self) -> bool:
        """The orderly shutdown has begun (``status().stopping``, without the snapshot)."""
        return self._stopping

    # ------------------------------------------------------------------ status, reload

    def status(self) -> Status:
        controls = self.controls.snapshot()
        return Status(
            mode=controls.mode,
            running=controls.running,
            class_index=controls.class_index,
            counts=self.samples.counts(),
            epoch=self.latest.get().epoch,
            recent_losses=self.trainer.recent_losses(RECENT_LOSSES),
            ready=self.ready_at is not None,
            stopping=self._stopping,
        )

    def status_text(self) -> str:
        if self._fatal is not None:
            return f"failed: {self._fatal}; stopping"
        status = self.status()
        counts = ", ".join(
            f"{name} {n}" for name, n in zip(self.class_names, status.counts, strict=True)
        )
        problem = self.sensor.problem
        text = (f"{problem}; " if problem else "") + (
            f"{status.mode.value} {'running' if status.running else 'stopped'}, "
            f"class {self.class_names[status.class_index]}; samples: {counts}; "
            f"epoch {status.epoch}"
        )
        text += f", loss {status.loss:.4f}" if status.loss is not None else ""
        refusal = self._collect_refusal
        return text + (f"; collect refused: {refusal}" if refusal and not status.running else "")

    def _publish_status(self) -> None:
        self.notifier.status(self.status_text())
        self.status_report.write()

    def _reload(self) -> None:
        if self.config_path is None:
            return
        self.notifier.reloading()
        try:
            new = load_config(self.config_path)
            self._check_trigger_class(new)
        except ConfigError as error:
            _log.error("reload refused, the running configuration stays: %s", error)
            self.notifier.ready()
            return
        setup_logging(new.logging.level)
        # Each reader gets a new immutable object in one assignment, never a field patched.
        self.detector.retune(self._trigger_name(new), new.inference.threshold)
        self.trainer.reschedule(
            Schedule(
                new.training.save_every_seconds,
                new.training.max_epochs,
                new.training.stop_when == "settled",
            )
        )
        self._bound_samples(new)
        needs_restart = [
            section
            for section in ("sensor", "pins", "classes", "paths", "runtime")
            if getattr(new, section) != getattr(self.config, section)
        ]
        if new.inference.hop_samples != self.config.inference.hop_samples:
            needs_restart.append("inference.hop_samples")
        self.config = new
        note = f"; {', '.join(needs_restart)} take effect on restart" if needs_restart else ""
        log_event(_log, f"configuration reloaded{note}", event="reload")
        self.notifier.ready()

    # ------------------------------------------------------------------ main

    def run(self) -> int:
        self.signals.install()
        try:
            with self._main_thread_scheduling():
                return self._run()
        finally:
            self.signals.uninstall()

    def _run(self) -> int:
        log_event(
            _log,
            f"starting: odar {__version__}, state in {self.config.state_dir}",
            message_id=message_ids.STARTED,
            event="start",
            version=__version__,
        )
        # Before the sensor streams: this full collection is the last to walk what start built.
        with startup_objects_frozen() as frozen:
            _log.debug("%d objects built at start frozen out of the cycle collector", frozen)
            return self._stream()

    def _stream(self) -> int:
        try:
            self.sensor.start()
        except BaseException:
            self._close()
            raise
        try:
            self._start_thread(self._sensor_loop, SENSOR_THREAD)
            self._start_thread(self._window_loop, "odar-windows")
            self.trainer.launch()
            if not self._wait_for_first_data():
                return EX_SOFTWARE if self._fatal else 0
            self.ready_at = self.wearable.clock.monotonic()
            self.notifier.ready()
            log_event(
                _log,
                f"ready: {self.status_text()}",
                message_id=message_ids.READY,
                event="ready",
                mode=self.controls.mode.value,
                runtime=self.engine.runtime.name,
            )
            self._publish_status()
            self._main_loop()
        finally:
            self._shutdown()
        if self._fatal:
            _log.error("stopped after a failure (exit %d): %s", EX_SOFTWARE, self._fatal)
            return EX_SOFTWARE
        return 0

    def _wait_for_first_data(self) -> bool:
        deadline = time.monotonic() + FIRST_DATA_TIMEOUT
        # Without a chip there is nothing to wait for: READY, and the STATUS says what is missing.
        while self.ring.write_seq == 0 and self.sensor.missing is None:
            if self.signals.stop_requested:
                return False
            if time.monotonic() > deadline:
                self._fatal = (
                    f"no samples from the sensor within {FIRST_DATA_TIMEOUT:.0f} s of starting"
                )
                return False
            self._watchdog_tick()
            self.signals.wait(0.05)
        return True

    def _watchdog_tick(self) -> None:
        """WATCHDOG=1 every half of systemd's timeout, while every worker thread beats."""
        if self._watchdog_every is None:
            return
        now = time.monotonic()
        if now < self._next_ping:
            return
        silent = self.heartbeats.stale(self._watchdog_every)
        if silent:
            names = frozenset(silent)
            if names != self._silent_threads:
                self._silent_threads = names
                _log.error(
                    "no progress from %s; not pinging the watchdog",
                    ", ".join(f"{name} for {age:.1f} s" for name, age in sorted(silent.items())),
                    extra={"ODAR_EVENT": "stalled"},
                )
            return
        self._silent_threads = frozenset()
        self.notifier.watchdog()
        self._next_ping = now + self._watchdog_every

    def _main_loop(self) -> None:
        last_status = ""
        wake_every = 1.0 if self._watchdog_every is None else min(1.0, self._watchdog_every / 2)
        while not self.signals.stop_requested:
            self._watchdog_tick()
            self.signals.wait(wake_every)
            if self.signals.take_reload():
                self._reload()
            status = self.status_text()
            if status != last_status:
                self.notifier.status(status)
                last_status = status
            self.status_report.write()
            self.sample_requests.handle_pending()

    def _shutdown(self) -> None:
        """Within TimeoutStopSec: the trainer ends its run and saves (systemd's limit extended
        while it writes), the other threads end, the stores close."""
        self._stopping = True
        self.notifier.stopping()
        self.controls.stop()
        self.trainer.halt()
        deadline = time.monotonic() + STOP_BUDGET
        while self.trainer.alive and (time.monotonic() < deadline or self.trainer.saving):
            if self.trainer.saving:
                self.notifier.extend_timeout(SAVE_EXTENSION)
            self.trainer.join(0.5)
        if self.trainer.alive:
            _log.error("the trainer did not stop within %.0f s; its run is not saved", STOP_BUDGET)
        elif self.trainer.unsaved:
            # No trainer thread is left to save (it failed, or never ran): this is the one owner.
            self.notifier.extend_timeout(SAVE_EXTENSION)
            self.trainer.save()
        self._halt.set()
        for thread in self._threads:
            thread.join(timeout=max(0.1, deadline - time.monotonic()))
        self.status_report.close()
        if self._fatal is not None:
            # Let the rattle be felt before the motor is closed.
            self.wearable.motor.wait(timeout=max(0.1, min(3.0, deadline - time.monotonic())))
        self._close()
        log_event(_log, "stopped", message_id=message_ids.STOPPED, event="stopped")

    def _close(self) -> None:
        self.wearable.close()
        self.samples.close()
        self.state.close()
