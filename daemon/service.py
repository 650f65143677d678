"""``odar run``: the daemon systemd starts.

Threads, each with one job:

- sensor: driver -> ring buffer, and WATCHDOG=1 while data flows or recovery is under way;
- windows: ring buffer -> window -> bottleneck -> sample store (collect) or head -> motor
  (infer);
- trainer: epochs over the sample store while Train runs (:mod:`odar.trainer`);
- main: signals (SIGTERM/SIGINT stop, SIGHUP reload), STATUS=, and the orderly shutdown.

Button presses arrive on gpiozero's thread and only flip the mode machine
(:mod:`odar.controls`), confirm with a haptic pattern and start or stop the trainer.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from odar.collector import Collector
from odar.config import Config, load_config
from odar.controls import Controls, Event, EventKind, Mode
from odar.detector import Detection, Detector
from odar.drivers.mpu6050 import nearest_sample_rate
from odar.engine import Engine
from odar.errors import ConfigError, StateWriteError
from odar.haptics import NO_SENSOR, detection_pattern, pattern_for
from odar.journal import RateLimiter, log_event, setup_logging
from odar.notifier import SystemdNotifier
from odar.param_store import HeadState, ParamStore
from odar.ring_buffer import RingBuffer
from odar.sample_store import SampleStore, StoreLayout
from odar.scenario import Faults, ScenarioPlayer
from odar.sensor_presence import SensorPresence
from odar.signals import SignalRequests
from odar.trainer import LatestHead, Trainer
from odar.wearable import Wearable, open_wearable
from odar.windows import Window, WindowCutter

_log = logging.getLogger("odar")

DEFAULT_CONFIG = Path("/etc/odar/odar.yaml")
EX_SOFTWARE = 70
#: Ring capacity in seconds of sensor data: room for a window and a slow consumer.
RING_SECONDS = 30
#: How long start-up waits for the first samples before giving up (real seconds).
FIRST_DATA_TIMEOUT = 20.0
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
    daemon = Daemon(config, args.config.resolve().parent, config_path=args.config)
    return daemon.run()


class Daemon:
    def __init__(
        self,
        config: Config,
        config_dir: Path,
        *,
        config_path: Path | None = None,
        notifier: SystemdNotifier | None = None,
        observer: Observer | None = None,
        seed: int | None = None,
    ) -> None:
        self.config = config
        self.config_dir = config_dir
        self.config_path = config_path
        self.notifier = notifier if notifier is not None else SystemdNotifier()
        self.observer = observer
        self.signals = SignalRequests()
        self._seed = seed
        self._fatal: str | None = None
        self._restart_cutter = threading.Event()
        self._threads: list[threading.Thread] = []
        self._halt = threading.Event()
        self.ready_at: float | None = None
        self.wearable: Wearable | None = None
        self.scenario: ScenarioPlayer | None = None

    # ------------------------------------------------------------------ set-up

    def _build(self) -> None:
        config = self.config
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
        self.param_store = ParamStore(state_dir / PARAMS_FILE, self.engine.manifest_hash)
        head = self.engine.head
        saved = self.param_store.load()
        if saved is None:
            fresh = HeadState(head.initial_parameters(), head.initial_optimizer_state(), 0)
            self.latest = LatestHead(fresh, trained=False)
        else:
            log_event(_log, f"loaded the head trained for {saved.epoch} epochs", epoch=saved.epoch)
            self.latest = LatestHead(saved, trained=True)

        self.controls = Controls(
            manifest.num_classes,
            manifest.train_batch_size,
            self.samples.counts,
            head_available=lambda: self.latest.trained,
            state_path=state_dir / CONTROLS_FILE,
        )
        self.wearable = open_wearable(config, self.config_dir)
        clock = self.wearable.clock
        self.sensor = SensorPresence(self.wearable.sensor, config.sensor.settings, clock)
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
            seed=self._seed,
        )
        self.collector = Collector(self.samples, self.class_names)
        self.detector = Detector(
            head,
            self.latest,
            self.class_names,
            config.inference.trigger_class,
            config.inference.threshold,
            self._pulse,
            RateLimiter(config.logging.probability_lines_per_second, clock),
        )
        self.pulse_seconds = config.inference.pulse_seconds
        rate_samples = round(rate)
        self.ring = RingBuffer(max(rate_samples * RING_SECONDS, 4 * manifest.window_samples))
        self.cutter = WindowCutter(
            self.ring,
            window=manifest.window_samples,
            hop=config.inference.hop_samples,
            decimation=self.decimation,
        )
        self.wearable.buttons.bind(
            lambda: self._press(self.controls.press_mode),
            lambda: self._press(self.controls.press_class),
            lambda: self._press(self.controls.press_start_stop),
        )

    def _check_trigger_class(self, config: Config) -> None:
        if config.inference.trigger_class not in self.class_names:
            raise ConfigError(
                f"inference.trigger_class: {config.inference.trigger_class!r} is not a class of "
                f"the artifacts ({', '.join(self.class_names)})"
            )

    # ------------------------------------------------------------------ events

    def _press(self, press: Callable[[], Event]) -> None:
        if self.sensor.missing is not None:
            # Without data no mode can do anything: say so on the wrist instead.
            self.wearable.motor.play(NO_SENSOR)
            if self.wearable.led is not None:
                self.wearable.led.play(NO_SENSOR)
            log_event(_log, "button press ignored: there is no sensor yet", logging.WARNING)
            return
        self._handle(press())

    def _handle(self, event: Event) -> None:
        pattern = pattern_for(event)
        self.wearable.motor.play(pattern)
        if self.wearable.led is not None:
            self.wearable.led.play(pattern)
        level = logging.WARNING if event.kind is EventKind.REFUSED else logging.INFO
        log_event(
            _log,
            event.describe(self.class_names),
            level,
            event=event.kind.value,
            mode=event.mode.value,
            class_name=self.class_names[event.class_index],
            running=int(event.running),
        )
        if event.kind is EventKind.STARTED:
            self._restart_cutter.set()
            if event.mode is Mode.TRAIN:
                self.trainer.start()
        elif (event.kind is EventKind.STOPPED or event.stopped) and self.trainer.running:
            self.trainer.stop()
        self._publish_status()

    def _training_finished(self) -> None:
        event = self.controls.stop()
        if event is not None:
            self._handle(event)

    def _pulse(self) -> None:
        pattern = detection_pattern(self.pulse_seconds)
        self.wearable.motor.play(pattern)
        if self.wearable.led is not None:
            self.wearable.led.play(pattern)

    # ------------------------------------------------------------------ threads

    def _sensor_loop(self) -> None:
        sensor = self.sensor
        clock = self.wearable.clock
        watchdog_every = self.notifier.watchdog_interval()
        next_ping = time.monotonic()
        try:
            while not self._halt.is_set():
                block = sensor.read()
                if len(block) or block.gap:
                    self.ring.append(block)
                if watchdog_every is not None and (len(block) or sensor.recovering):
                    now = time.monotonic()
                    if now >= next_ping:
                        self.notifier.watchdog()
                        next_ping = now + watchdog_every
                clock.sleep(sensor.poll_interval_s)
        except Exception as error:
            _log.exception("the sensor loop failed")
            self._fail(f"sensor loop: {error}")

    def _window_loop(self) -> None:
        try:
            while not self._halt.is_set():
                if self._restart_cutter.is_set():
                    self._restart_cutter.clear()
                    self.cutter.restart()
                window = self.cutter.next_window(timeout=0.2)
                if window is None:
                    continue
                self._process(window)
        except Exception as error:
            _log.exception("the window loop failed")
            self._fail(f"window loop: {error}")

    def _process(self, window: Window) -> None:
        controls = self.controls
        if not controls.running or controls.mode is Mode.TRAIN:
            return
        mode, class_index = controls.mode, controls.class_index
        features = self.engine.bottleneck.features(window.samples)
        if mode is Mode.COLLECT:
            self.collector.collect(window, features, class_index)
            self._publish_status()
        elif mode is Mode.INFER:
            detection = self.detector.detect(features)
            if self.observer is not None:
                self.observer(Inferred(window, detection, self.wearable.clock.monotonic()))

    def _fail(self, reason: str) -> None:
        self._fatal = reason
        self.signals.request_stop()

    def _start_thread(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    # ------------------------------------------------------------------ probe (scenarios)

    def selected_class_count(self) -> int:
        return self.samples.counts()[self.controls.class_index]

    def epochs_trained(self) -> int:
        return self.latest.get().epoch

    def loss_settled(self) -> bool:
        return self.trainer.loss_settled()

    def request_stop(self) -> None:
        self.signals.request_stop()

    # ------------------------------------------------------------------ status, reload

    def status_text(self) -> str:
        controls = self.controls
        counts = ", ".join(
            f"{name} {n}" for name, n in zip(self.class_names, self.samples.counts(), strict=True)
        )
        problem = self.sensor.problem
        text = (f"{problem}; " if problem else "") + (
            f"{controls.mode.value} {'running' if controls.running else 'stopped'}, "
            f"class {self.class_names[controls.class_index]}; samples: {counts}; "
            f"epoch {self.latest.get().epoch}"
        )
        loss = self.trainer.last_loss
        return text + (f", loss {loss:.4f}" if loss is not None else "")

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
        self.detector.retune(new.inference.trigger_class, new.inference.threshold)
        self.pulse_seconds = new.inference.pulse_seconds
        self.trainer.save_every_seconds = new.training.save_every_seconds
        self.trainer.max_epochs = new.training.max_epochs
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
            self._build()
            self.sensor.start()
        except BaseException:
            self._close()
            raise
        try:
            self._start_thread(self._sensor_loop, "odar-sensor")
            self._start_thread(self._window_loop, "odar-windows")
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
            self._start_scenario()
            self._main_loop()
        finally:
            self._shutdown()
        if self._fatal:
            _log.error("stopping after a failure: %s", self._fatal)
            return EX_SOFTWARE
        return 0

    def _wait_for_first_data(self) -> bool:
        deadline = time.monotonic() + FIRST_DATA_TIMEOUT
        while self.ring.write_seq == 0 and self.sensor.missing is None:
            if self.signals.stop_requested:
                return False
            if time.monotonic() > deadline:
                self._fatal = (
                    f"no samples from the sensor within {FIRST_DATA_TIMEOUT:.0f} s of starting"
                )
                return False
            self.signals.wait(0.05)
        return True

    def _start_scenario(self) -> None:
        world = self.wearable.emulated
        if world is None:
            return
        sensor = world.sensor
        self.scenario = ScenarioPlayer(
            world.scenario,
            world.motion,
            self.wearable.clock,
            world.press_pins(self.config),
            self,
            Faults(
                disconnect=lambda seconds: sensor.disconnect(seconds),
                stall=lambda seconds: sensor.bus.inject_stall(seconds),
            ),
        )
        log_event(_log, f"scenario {world.scenario.path.name} starts", event="scenario")
        self.scenario.start()

    def _main_loop(self) -> None:
        last_status = ""
        while not self.signals.stop_requested:
            self.signals.wait(1.0)
            if self.signals.take_reload():
                self._reload()
            status = self.status_text()
            if status != last_status:
                self.notifier.status(status)
                last_status = status

    def _shutdown(self) -> None:
        self.notifier.stopping()
        if self.scenario is not None:
            self.scenario.cancel()
        controls = getattr(self, "controls", None)
        if controls is not None:
            controls.stop()
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            trainer.stop()
            if self.latest.trained:
                trainer.save()
        self._halt.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._close()
        log_event(_log, "stopped", event="stopped")

    def _close(self) -> None:
        if self.wearable is not None:
            self.wearable.close()
        samples = getattr(self, "samples", None)
        if samples is not None:
            samples.close()
