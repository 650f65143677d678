"""The wearable's physical controls on gpiozero: three buttons, a vibration motor, an LED.

Every class takes gpiozero's ``pin_factory`` (None: gpiozero's default, lgpio on a Pi), so
tests run on ``MockFactory``. Patterns are played on a background thread and never block the
caller: a button callback or the inference loop hands the pattern over and returns.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterable

from gpiozero import LED, Button, DigitalOutputDevice
from gpiozero.pins import Factory

_log = logging.getLogger(__name__)

#: (on_seconds, off_seconds) steps; odar.haptics.Pattern iterates as these.
Steps = Iterable[tuple[float, float]]


class WearableButtons:
    """Mode, class and start/stop buttons, each wired from its pin to ground.

    The internal pull-up holds the pin high; a press pulls it low. gpiozero debounces with
    *bounce_time* seconds (None or 0: no debouncing).
    """

    def __init__(
        self,
        mode_pin: int,
        class_pin: int,
        start_pin: int,
        *,
        bounce_time: float | None = 0.05,
        pin_factory: Factory | None = None,
    ) -> None:
        bounce = bounce_time or None
        self._buttons: list[Button] = []
        # Claim one pin at a time so that a bad pin releases the ones already claimed.
        try:
            for pin in (mode_pin, class_pin, start_pin):
                self._buttons.append(
                    Button(pin, pull_up=True, bounce_time=bounce, pin_factory=pin_factory)
                )
        except Exception:
            self.close()
            raise
        self.mode_button, self.class_button, self.start_button = self._buttons

    def bind(
        self,
        on_mode: Callable[[], object],
        on_class: Callable[[], object],
        on_start_stop: Callable[[], object],
        *,
        on_class_held: Callable[[], object] | None = None,
        hold_seconds: float = 1.5,
    ) -> None:
        """Run the callables on presses (in gpiozero's callback thread); exceptions are logged.

        With *on_class_held*, holding the class button *hold_seconds* runs it instead of
        *on_class*, which then runs on the release of a short press (it cannot know sooner
        that the press is short)."""
        self.mode_button.when_pressed = _logged(on_mode, "mode button")
        self.start_button.when_pressed = _logged(on_start_stop, "start/stop button")
        if on_class_held is None:
            self.class_button.when_pressed = _logged(on_class, "class button")
            return
        held = threading.Event()
        short = _logged(on_class, "class button")
        long = _logged(on_class_held, "class button (held)")

        def pressed() -> None:
            held.clear()

        def hold() -> None:
            held.set()
            long()

        def released() -> None:
            if not held.is_set():
                short()

        self.class_button.hold_time = hold_seconds
        self.class_button.when_pressed = pressed
        self.class_button.when_held = hold
        self.class_button.when_released = released

    def close(self) -> None:
        for button in self._buttons:
            button.close()

    def __enter__(self) -> WearableButtons:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _logged(callback: Callable[[], object], what: str) -> Callable[[], None]:
    # An exception escaping into gpiozero's thread is printed raw and ends that press silently;
    # in the journal with a traceback it can be found.
    @functools.wraps(callback)
    def run() -> None:
        try:
            callback()
        except Exception:
            _log.exception("handling a press of the %s failed", what)

    return run


class PatternPlayer:
    """Plays on/off patterns on a gpiozero output device on its own thread.

    A new :meth:`play` cuts the one in progress short: the latest press is the one the user
    wants confirmed. *speed* > 1 plays patterns faster (emulated runs in scaled time).
    """

    def __init__(self, device: DigitalOutputDevice, *, speed: float = 1.0, name: str) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed!r}")
        self.device = device
        self._speed = speed
        self._condition = threading.Condition()
        self._pending: tuple[tuple[float, float], ...] | None = None
        self._generation = 0
        self._closing = False
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def play(self, pattern: Steps) -> None:
        steps = tuple((float(on), float(off)) for on, off in pattern)
        if any(on < 0 or off < 0 for on, off in steps):
            raise ValueError(f"pattern steps must not be negative: {steps}")
        with self._condition:
            if self._closing:
                return
            self._pending = steps
            self._generation += 1
            self._idle.clear()
            self._condition.notify_all()

    def pulse(self, seconds: float) -> None:
        self.play(((seconds, 0.0),))

    def stop(self) -> None:
        """Cut the current pattern short; the output goes off."""
        self.play(())

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until nothing is playing; False on timeout."""
        return self._idle.wait(timeout)

    @property
    def thread_name(self) -> str:
        return self._thread.name

    @property
    def thread_id(self) -> int | None:
        """The playing thread's kernel id (``native_id``; None once it ended)."""
        return self._thread.native_id if self._thread.is_alive() else None

    @property
    def playing(self) -> bool:
        return not self._idle.is_set()

    def close(self) -> None:
        with self._condition:
            self._closing = True
            self._generation += 1
            self._condition.notify_all()
        self._thread.join()
        self.device.close()

    def __enter__(self) -> PatternPlayer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _run(self) -> None:
        while True:
            with self._condition:
                while self._pending is None and not self._closing:
                    self._idle.set()
                    self._condition.wait()
                steps, self._pending = self._pending, None
                if self._closing or steps is None:  # the wait ends with steps only if open
                    self.device.off()
                    self._idle.set()
                    return
                generation = self._generation
            self._play_steps(steps, generation)

    def _play_steps(self, steps: tuple[tuple[float, float], ...], generation: int) -> None:
        try:
            for on_seconds, off_seconds in steps:
                self.device.on()
                if self._cut_short(generation, on_seconds):
                    break
                self.device.off()
                if self._cut_short(generation, off_seconds):
                    break
        finally:
            self.device.off()

    def _cut_short(self, generation: int, seconds: float) -> bool:
        with self._condition:
            return self._condition.wait_for(
                lambda: self._generation != generation or self._closing,
                timeout=seconds / self._speed,
            )


class VibrationMotor(PatternPlayer):
    """The motor's driver transistor on *pin* (high = vibrate)."""

    def __init__(self, pin: int, *, speed: float = 1.0, pin_factory: Factory | None = None) -> None:
        device = DigitalOutputDevice(pin, initial_value=False, pin_factory=pin_factory)
        super().__init__(device, speed=speed, name=f"motor-gpio{pin}")


class StatusLed(PatternPlayer):
    """An optional LED on *pin* that mirrors the motor's patterns."""

    def __init__(self, pin: int, *, speed: float = 1.0, pin_factory: Factory | None = None) -> None:
        super().__init__(LED(pin, pin_factory=pin_factory), speed=speed, name=f"led-gpio{pin}")
