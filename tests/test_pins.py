"""Pin names in the user's words, resolved by gpiozero's board data."""

from __future__ import annotations

import subprocess
import sys

import pytest

from odar.pins import PinNameError, describe_pin, parse_pin


@pytest.mark.parametrize(
    ("name", "bcm"),
    [(17, 17), ("17", 17), ("GPIO17", 17), ("BCM17", 17), ("BOARD11", 17), ("board40", 21)],
)
def test_names_resolve_to_the_bcm_number(name, bcm):
    assert parse_pin(name) == bcm


@pytest.mark.parametrize("name", [2, "GPIO3", "BOARD3", "BOARD5"])
def test_the_sensor_i2c_pins_are_refused_with_the_reason(name):
    with pytest.raises(PinNameError, match=r"the sensor's I2C S(DA|CL)"):
        parse_pin(name)


def test_a_header_pin_that_is_not_a_gpio_is_refused():
    with pytest.raises(PinNameError, match="BOARD6"):
        parse_pin("BOARD6")


def test_describe_names_the_header_pin():
    assert describe_pin(17) == "GPIO17 (header pin 11)"


def test_odar_run_refuses_a_button_on_the_i2c_pin_naming_the_key(config_writer):
    path = config_writer.write({"pins": {"mode_button": "GPIO2"}})
    result = subprocess.run(
        [sys.executable, "-m", "odar.cli", "run", "--allow-root", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 78
    assert "pins.mode_button: 'GPIO2' is GPIO2, the sensor's I2C SDA" in result.stderr
    assert "Traceback" not in result.stderr
