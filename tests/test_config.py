"""The config loader: the shipped file, defaults, and a clear error for every kind of mistake."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from odar.config import (
    DEFAULT_STATE_DIR,
    Config,
    PathsConfig,
    SensorConfig,
    load_config,
    parse_config,
)
from odar.drivers.sensor_settings import SensorSettings
from odar.errors import ConfigError, OdarError

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "etc" / "odar.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "odar.yaml"
    path.write_text(text)
    return path


def test_shipped_config_loads_and_equals_the_defaults():
    config = load_config(SHIPPED, environ={})
    defaults = Config()
    for section in ("sensor", "pins", "inference", "training", "logging", "runtime"):
        assert getattr(config, section) == getattr(defaults, section), section
    assert config.paths.artifacts_dir == REPO / "artifacts"
    assert config.state_dir == DEFAULT_STATE_DIR


def _field_tree(cls: type) -> dict:
    tree = {}
    for item in dataclasses.fields(cls):
        default = (
            item.default_factory() if item.default_factory is not dataclasses.MISSING else None
        )
        tree[item.name] = _field_tree(type(default)) if dataclasses.is_dataclass(default) else None
    return tree


def _key_tree(document: dict) -> dict:
    return {k: _key_tree(v) if isinstance(v, dict) else None for k, v in document.items()}


def test_shipped_config_documents_every_key():
    assert _key_tree(yaml.safe_load(SHIPPED.read_text())) == _field_tree(Config)


def test_empty_file_gives_defaults_and_state_directory_from_systemd(tmp_path):
    config = load_config(write(tmp_path, ""), environ={"STATE_DIRECTORY": "/var/lib/odar2:/x"})
    assert config.sensor == SensorConfig()
    assert config.state_dir == Path("/var/lib/odar2")
    assert config.paths.artifacts_dir == (tmp_path / "../artifacts").resolve()


def test_explicit_state_dir_wins_over_the_environment_and_relative_paths_follow_the_file(tmp_path):
    text = "paths:\n  state_dir: state\n  artifacts_dir: /opt/odar/artifacts\n"
    config = load_config(write(tmp_path, text), environ={"STATE_DIRECTORY": "/elsewhere"})
    assert config.paths == PathsConfig(
        Path("/opt/odar/artifacts"), tmp_path / "state", Path("/run/odar")
    )


def test_runtime_directory_from_systemd_else_run_odar(tmp_path):
    path = write(tmp_path, "")
    assert load_config(path, environ={"RUNTIME_DIRECTORY": "/run/x:/y"}).runtime_dir == Path(
        "/run/x"
    )
    assert load_config(path, environ={}).runtime_dir == Path("/run/odar")


def test_sensor_section_builds_sensor_settings(tmp_path):
    text = "sensor:\n  address: 0x69\n  rate_hz: 200\n  accel_range_g: 8\n  backend: emulated\n"
    config = load_config(write(tmp_path, text), environ={})
    assert config.sensor.settings == SensorSettings(address=0x69, rate_hz=200.0, accel_range_g=8)
    assert config.sensor.backend == "emulated"
    assert isinstance(config.sensor.rate_hz, float)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sensor: {rate_hz: fast}", "sensor.rate_hz: 'fast' is not a number"),
        ("sensor: {bus: 1.5}", "sensor.bus: 1.5 is not an integer"),
        ("sensor: {bus: true}", "sensor.bus: True is not an integer"),
        ("sensor: {accel_range_g: 3}", "sensor.accel_range_g: 3 is not one of"),
        ("sensor: {address: 0x50}", "sensor.address: 0x50"),
        ("sensor: {backend: fake}", "sensor.backend: 'fake' is not one of ['real', 'emulated']"),
        ("sensor: {emulated: {speed: 0}}", "sensor.emulated.speed: 0.0 is outside"),
        ("sensor: {realtime_priority: 0}", "sensor.realtime_priority: 0 is outside"),
        # The daemon's other threads take one below it: at least 1.
        ("sensor: {realtime_priority: 1}", "sensor.realtime_priority: 1 is outside"),
        ("sensor: {realtime_priority: 100}", "sensor.realtime_priority: 100 is outside"),
        ("pins: {led: 40}", "pins.led: 40 is not a GPIO of the 40-pin header"),
        ("pins: {led: GPIO28}", "pins.led: 'GPIO28' is not a GPIO of the 40-pin header"),
        ("pins: {led: BOARD6}", "pins.led: 'BOARD6' is not a GPIO of the 40-pin header"),
        ("pins: {mode_button: 2}", "pins.mode_button: 2 is GPIO2, the sensor's I2C SDA"),
        ("pins: {motor: GPIO3}", "pins.motor: 'GPIO3' is GPIO3, the sensor's I2C SCL"),
        ("pins: {motor: BOARD11}", "pins.motor: 17 is already used by pins.mode_button"),
        ("pins: {led: true}", "pins.led: True is not a pin"),
        ("classes: {names: sitting}", "classes.names: 'sitting' is not a list of names"),
        ("classes: {names: [a, a]}", "classes.names: the names ['a', 'a'] are not all different"),
        ("classes: {names: [a, '']}", "classes.names: '' is not a non-empty string"),
        ("pins: {motor: 17}", "pins.motor: 17 is already used by pins.mode_button"),
        ("pins: {led: 22}", "pins.led: 22 is already used by pins.start_button"),
        ("inference: {threshold: 1.5}", "inference.threshold: 1.5 is outside"),
        ("inference: {threshold: .nan}", "inference.threshold: nan is not a finite number"),
        ("inference: {trigger_class: ''}", "inference.trigger_class: '' is not a non-empty"),
        ("training: {max_epochs: 0}", "training.max_epochs: 0 is outside"),
        ("logging: {level: loud}", "logging.level: 'loud' is not one of"),
        ("runtime: {num_threads: [2]}", "runtime.num_threads: [2] is not an integer"),
        ("paths: {state_dir: 5}", "paths.state_dir: 5 is not a path"),
        ("storage: {max_samples_mib: 0}", "storage.max_samples_mib: 0 is outside"),
        ("storage: {reserve_free_mib: -1}", "storage.reserve_free_mib: -1 is outside"),
        ("storage: {max_samples_mib: 1.5}", "storage.max_samples_mib: 1.5 is not an integer"),
        ("pins: 17", "pins: expected a mapping of keys, got 17"),
        ("- 1", "top level: expected a mapping of keys, got [1]"),
    ],
)
def test_bad_values_name_the_key_and_the_value(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert expected in str(caught.value)
    assert str(caught.value).startswith(str(path))


def test_unknown_key_suggests_the_closest_known_one():
    with pytest.raises(ConfigError, match=r"pins\.motr: unknown key .*did you mean pins\.motor\?"):
        parse_config("pins:\n  motr: 5\n")
    with pytest.raises(ConfigError, match=r"sensors: unknown key .*did you mean sensor\?"):
        parse_config("sensors: {}\n")


def test_yaml_syntax_error_gives_path_and_line(tmp_path):
    path = write(tmp_path, "sensor:\n  bus: 1\n  rate_hz: [100\n")
    with pytest.raises(ConfigError, match=f"^{re.escape(str(path))}:4: "):
        load_config(path)


def test_duplicate_keys_are_errors_not_silently_merged(tmp_path):
    path = write(tmp_path, "pins:\n  motor: 5\n  motor: 6\n")
    with pytest.raises(ConfigError, match=f"^{re.escape(str(path))}:3: duplicate key 'motor'"):
        load_config(path)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(ConfigError, match=r"nothere\.yaml: config file not found"):
        load_config(tmp_path / "nothere.yaml")


def test_config_error_is_what_the_cli_maps_to_exit_78():
    from odar.cli import EX_CONFIG

    assert EX_CONFIG == 78
    assert issubclass(ConfigError, OdarError) and issubclass(ConfigError, ValueError)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True),
    st.text(max_size=12),
)
keys = st.sampled_from(
    ["sensor", "pins", "bus", "rate_hz", "motor", "led", "threshold", "paths", "state_dir", "x"]
)
documents = st.recursive(
    scalars, lambda inner: st.dictionaries(keys, inner, max_size=5) | st.lists(inner, max_size=3)
)


@settings(max_examples=300, deadline=None)
@given(documents)
def test_any_document_gives_a_config_or_a_config_error(document):
    try:
        text = yaml.safe_dump(document)
    except yaml.YAMLError:
        return
    try:
        assert isinstance(parse_config(text, environ={}), Config)
    except ConfigError as error:
        assert str(error)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_gives_a_config_or_a_config_error(text):
    try:
        assert isinstance(parse_config(text, environ={}), Config)
    except ConfigError as error:
        assert str(error).startswith("<string>")


def test_realtime_priority_null_is_time_sharing():
    config = parse_config("sensor: {realtime_priority: null}", environ={})
    assert config.sensor.realtime_priority is None


@pytest.mark.parametrize("spelling", ["17", "GPIO17", "BCM17", "BOARD11", "gpio17", "J8:11", 17])
def test_pins_accept_gpiozero_names_and_store_the_bcm_number(spelling):
    config = parse_config(yaml.safe_dump({"pins": {"mode_button": spelling}}), environ={})
    assert config.pins.mode_button == 17


def test_class_display_names_come_from_the_config():
    config = parse_config("classes:\n  names: [sitting, walking]\n", environ={})
    assert config.classes.names == ("sitting", "walking")
    assert parse_config("", environ={}).classes.names is None
