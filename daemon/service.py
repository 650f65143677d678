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
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from odar.collector import Collector
from odar.config import Config, load_config
from odar.controls import Controls, Event, EventKind, Mode, Position, Run
from odar.detector import Detection, Detector
from odar.drivers.mpu6050 import nearest_sample_rate
from odar.engine import Engine
from odar.errors import ConfigError, StateWriteError
from odar.haptics import REFUSED, Pattern, detection_pattern, pattern_for
from odar.heartbeat import Heartbeats, ThreadPulse
from odar.journal import RateLimiter, log_event, setup_logging
from odar.notifier import SystemdNotifier
from odar.param_store import HeadState, ParamStore
from odar.ring_buffer import RingBuffer
from odar.sample_store import SampleStore, StoreLayout
from odar.signals import SignalRequests
from odar.trainer import LatestHead, Schedule, Trainer
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
#: Real seconds the window thread waits for samples before it beats its heartbeat.
WINDOW_WAIT = 0.2
PARAMS_FILE = "head.params"
SAMPLES_FILE = "samples.odar"
CONTROLS_FILE = "controls.json"


@dataclass(frozen=True)
class Inferred:
    """One inferred window, for observers (the demo, the daemon bench)."""

    window: Window
    detection: Detection
    #: Clock time when the motor was told (or would have been): latency = this - t_end.
    decided_at: float


Observer = Callable[[Inferred], None]
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
    loss: float | None
    loss_settled: bool
    #: READY=1 has been sent.
    ready: bool
    #: The orderly shutdown has begun.
    stopping: bool

    @property
    def selected_count(self) -> int:
        """Samples stored of the selected class."""
        return self.counts[self.class_index]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help=f"configuration file (default {DEFAULT_CONFIG})",
    )


def run(args: argparse.Namespace) -> int:
    setup_logging("info")
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
        self.observer = observer
        self.signals = SignalRequests()
        #: Clock time when READY=1 was sent; None before.
        self.ready_at: float | None = None
        self._fatal: str | None = None
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
            self.class_names = manifest.classes
            self._check_trigger_class(config)
            _, rate = nearest_sample_rate(config.sensor.settings)
            self.decimation = self.engine.decimation_for(rate)

            state_dir = config.state_dir
            try:
                state_dir.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise StateWriteError(
                    error.errno, f"paths.state_dir: cannot create {state_dir}: {error.strerror}"
                ) from error
            layout = StoreLayout(
                self.engine.manifest_hash,
                manifest.num_classes,
                manifest.feature_size,
                (manifest.window_samples, len(manifest.input_layout)),
            )
            self.samples = SampleStore.open(state_dir / SAMPLES_FILE, layout)
            undo_on_failure.callback(self.samples.close)
            self.param_store = ParamStore(state_dir / PARAMS_FILE, self.engine.manifest_hash)
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
            self.trainer = Trainer(
                head,
                self.samples,
                self.latest,
                self.param_store,
                clock,
                save_every_seconds=config.training.save_every_seconds,
                max_epochs=config.training.max_epochs,
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
                config.inference.trigger_class,
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
            wearable.buttons.bind(
                lambda: self._press(self.controls.press_mode),
                lambda: self._press(self.controls.press_class),
                lambda: self._press(self.controls.press_start_stop),
            )
            undo_on_failure.pop_all()

    def _check_trigger_class(self, config: Config) -> None:
        if config.inference.trigger_class not in self.class_names:
            raise ConfigError(
                f"inference.trigger_class: {config.inference.trigger_class!r} is not a class of "
                f"the artifacts ({', '.join(self.class_names)})"
            )

    # ------------------------------------------------------------------ events

    @property
    def pulse_seconds(self) -> float:
        return self.config.inference.pulse_seconds

    def _position(self) -> Position:
        # The sequence first: every sample numbered below it was taken before the time read.
        seq = self.ring.write_seq
        return Position(seq, self.wearable.clock.monotonic())

    def _press(self, press: Callable[[], Event]) -> None:
        """A button's callback (gpiozero's thread): never blocks, never lets an error vanish."""
        try:
            self._handle(press())
        except Exception as error:
            self._failed("button handler", error)

    def _handle(self, event: Event) -> None:
        self._play(pattern_for(event))
        level = logging.WARNING if event.kind is EventKind.REFUSED else logging.INFO
        log_event(
            _log,
            event.describe(self.class_names),
            level,
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
        event = self.controls.stop()
        if event is not None:
            self._handle(event)

    def _play(self, pattern: Pattern) -> None:
        self.wearable.motor.play(pattern)
        if self.wearable.led is not None:
            self.wearable.led.play(pattern)

    def _pulse(self) -> None:
        self._play(detection_pattern(self.pulse_seconds))

    # ------------------------------------------------------------------ threads

    def _sensor_loop(self) -> None:
        sensor = self.wearable.sensor
        clock = self.wearable.clock
        pulse = ThreadPulse(self.heartbeats, "odar-sensor")
        while not self._halt.is_set():
            self._checkpoint("odar-sensor")
            block = sensor.read()
            if len(block) or block.gap:
                self.ring.append(block)
            if len(block) or sensor.recovering:
                pulse.beat()
            clock.sleep(sensor.poll_interval_s)

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
            if window is None or run is None or run.mode is Mode.TRAIN:
                continue
            if run.owns(window.t_start, window.t_end):
                self._process(window, run)

    def _process(self, window: Window, run: Run) -> None:
        if run.mode is Mode.INFER and not run.going:
            return  # no motor after the stop press
        features = self.engine.bottleneck.features(window.samples)
        if run.mode is Mode.COLLECT:
            self.collector.collect(window, features, run.class_index)
            self._publish_status()
        elif run.mode is Mode.INFER:
            detection = self.detector.detect(features)
            if self.observer is not None:
                self.observer(Inferred(window, detection, self.wearable.clock.monotonic()))

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
            self.notifier.status(f"failed: {self._fatal}; stopping")
        self.signals.request_stop()

    def _start_thread(self, target: Callable[[], None], name: str) -> threading.Thread:
        def guarded() -> None:
            try:
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

    # ------------------------------------------------------------------ status, reload

    def status(self) -> Status:
        controls = self.controls.snapshot()
        return Status(
            mode=controls.mode,
            running=controls.running,
            class_index=controls.class_index,
            counts=self.samples.counts(),
            epoch=self.latest.get().epoch,
            loss=self.trainer.last_loss,
            loss_settled=self.trainer.loss_settled(),
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
        text = (
            f"{status.mode.value} {'running' if status.running else 'stopped'}, "
            f"class {self.class_names[status.class_index]}; samples: {counts}; "
            f"epoch {status.epoch}"
        )
        return text + (f", loss {status.loss:.4f}" if status.loss is not None else "")

    def _publish_status(self) -> None:
        self.notifier.status(self.status_text())

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
        self.detector.retune(new.inference.trigger_class, new.inference.threshold)
        self.trainer.reschedule(
            Schedule(new.training.save_every_seconds, new.training.max_epochs)
        )
        needs_restart = [
            section
            for section in ("sensor", "pins", "paths", "runtime")
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
            return self._run()
        finally:
            self.signals.uninstall()

    def _run(self) -> int:
        try:
            self.wearable.sensor.start()
        except BaseException:
            self._close()
            raise
        try:
            self._start_thread(self._sensor_loop, "odar-sensor")
            self._start_thread(self._window_loop, "odar-windows")
            self.trainer.launch()
            if not self._wait_for_first_data():
                return EX_SOFTWARE if self._fatal else 0
            self.ready_at = self.wearable.clock.monotonic()
            self.notifier.ready()
            log_event(
                _log,
                f"ready: {self.status_text()}",
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
        while self.ring.write_seq == 0:
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
        if self._fatal is not None:
            # Let the rattle be felt before the motor is closed.
            self.wearable.motor.wait(timeout=max(0.1, min(3.0, deadline - time.monotonic())))
        self._close()
        log_event(_log, "stopped", event="stopped")

    def _close(self) -> None:
        self.wearable.close()
        self.samples.close()
