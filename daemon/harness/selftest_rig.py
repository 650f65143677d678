"""``odar selftest`` on the emulated wearable: the same checks as on a Pi, with the scenario's
wearer keeping still and pressing the buttons the self-test asks for.

Scenario timing: the checks before the buttons take 4-5 virtual seconds (1 s of data,
the FIFO filling, the motor and LED pulses); a scenario presses mode, class and start after
that, within the button timeout (``etc/scenarios/selftest.yaml``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from odar.config import Config
from odar.harness.emulated_wearable import EmulatedWearable
from odar.selftest import Check, SelfTest


@dataclass(frozen=True)
class _View:
    """What the scenario player asks of a daemon: the self-test is 'ready' from the start."""

    ready: bool = True
    stopping: bool = False


class _SelfTestView:
    def __init__(self) -> None:
        self.done = False

    def status(self) -> _View:
        return _View(stopping=self.done)

    @property
    def stopping(self) -> bool:
        return self.done

    def request_stop(self) -> None:
        self.done = True


def run_emulated_selftest(
    config: Config,
    config_path: Path,
    say: Callable[[str], None],
    button_timeout: float,
    skip_buttons: bool,
) -> list[Check]:
    world = EmulatedWearable.open(config, config_path.resolve().parent)
    view = _SelfTestView()
    player = world.player(view)  # type: ignore[arg-type]
    with contextlib.closing(world.wearable):
        player.start()
        try:
            return SelfTest(config, world.wearable, say, button_timeout, skip_buttons).run()
        finally:
            view.done = True
            player.cancel()
