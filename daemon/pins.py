"""Pin names as a user writes them: ``17``, ``GPIO17``, ``BCM17``, ``BOARD11``, ``J8:11``.

gpiozero's own board data resolves the name (no table of ours to drift from it), on the 40-pin
header every supported Pi shares (a Zero 2 W's revision code stands for all of them), without
touching hardware. The result is the BCM GPIO number the rest of odar uses. The I2C pins that
carry the MPU6050 are refused: a button there would short the sensor's bus.
"""

from __future__ import annotations

from functools import cache

from gpiozero.exc import PinInvalidPin
from gpiozero.pins.pi import PiBoardInfo

#: A Raspberry Pi Zero 2 W (its 40-pin header is the one of every Pi odar runs on).
HEADER_REVISION = 0x902120
#: BCM GPIOs of I2C bus 1 (header pins 3 and 5), where the MPU6050 is wired.
I2C_PINS = {2: "I2C SDA (header pin 3)", 3: "I2C SCL (header pin 5)"}


class PinNameError(ValueError):
    """The reason a pin name was refused (the config loader adds the key)."""


@cache
def _board() -> PiBoardInfo:
    return PiBoardInfo.from_revision(HEADER_REVISION)


def parse_pin(value: object) -> int:
    """The BCM GPIO number *value* names; :class:`PinNameError` with the reason otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise PinNameError(f"{value!r} is not a pin (write 17, GPIO17, BCM17 or BOARD11)")
    name = value.strip().upper() if isinstance(value, str) else value
    try:
        resolved = _board().to_gpio(name)
    except PinInvalidPin as error:
        raise PinNameError(
            f"{value!r} is not a GPIO of the 40-pin header ({error}); write 17, GPIO17, BCM17 "
            "or BOARD11"
        ) from None
    number = int(str(resolved).removeprefix("GPIO"))
    if number in I2C_PINS:
        raise PinNameError(
            f"{value!r} is GPIO{number}, the sensor's {I2C_PINS[number]}; choose another pin"
        )
    return number


def describe_pin(number: int) -> str:
    """``GPIO17 (header pin 11)``, for messages and the self-test."""
    for header in _board().headers.values():
        for info in header.pins.values():
            if info.name == f"GPIO{number}":
                return f"GPIO{number} (header pin {info.number})"
    return f"GPIO{number}"
