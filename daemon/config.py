"""The daemon's configuration: ``etc/odar.yaml`` read into frozen dataclasses, checked strictly.

Every section is a dataclass; the loader walks its fields and type hints, so a key the
dataclass does not have, a value of the wrong type or out of range is a :class:`ConfigError`
whose message names the dotted key and the bad value. Omitted keys take the defaults below,
which are the ones ``etc/odar.yaml`` documents.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from odar.drivers.sensor_settings import SensorSettings
from odar.errors import ConfigError, SensorSettingsError
from odar.pins import PinNameError, parse_pin

DEFAULT_STATE_DIR = Path("/var/lib/odar")
DEFAULT_RUNTIME_DIR = Path("/run/odar")


def _pin(default: int | None) -> Any:
    """A GPIO as the user names it (17, GPIO17, BCM17, BOARD11), stored as its BCM number."""
    return field(default=default, metadata={"pin": True})


def _setting(default: Any, *, low: float | None = None, high: float | None = None) -> Any:
    """A field with inclusive numeric bounds the loader enforces."""
    return field(default=default, metadata={"low": low, "high": high})


@dataclass(frozen=True)
class EmulatedConfig:
    """The emulated wearable's world (used when ``sensor.backend`` is ``emulated``)."""

    scenario: str = "demo"
    speed: float = _setting(1.0, low=0.01, high=1000.0)
    seed: int | None = None


@dataclass(frozen=True)
class SensorConfig:
    """The MPU6050 as the user configures it; :attr:`settings` is what the driver takes."""

    backend: Literal["real", "emulated"] = "real"
    bus: int = 1
    address: int = 0x68
    rate_hz: float = 100.0
    accel_range_g: int = 4
    gyro_range_dps: int = 500
    dlpf_cfg: int = 3
    bus_hz: int = 400_000
    #: SCHED_FIFO priority of the sensor thread, the daemon's other threads one below
    #: (odar.realtime); None: time-sharing.
    realtime_priority: int | None = _setting(10, low=2, high=99)
    emulated: EmulatedConfig = field(default_factory=EmulatedConfig)

    @property
    def settings(self) -> SensorSettings:
        return SensorSettings(
            bus=self.bus,
            address=self.address,
            rate_hz=self.rate_hz,
            accel_range_g=self.accel_range_g,
            gyro_range_dps=self.gyro_range_dps,
            dlpf_cfg=self.dlpf_cfg,
            bus_hz=self.bus_hz,
        )


@dataclass(frozen=True)
class PinsConfig:
    """BCM GPIO numbers (the config may name them any way gpiozero does: 17, GPIO17, BCM17,
    BOARD11); buttons wire the pin to ground (internal pull-up, active low)."""

    mode_button: int = _pin(17)
    class_button: int = _pin(27)
    start_button: int = _pin(22)
    motor: int = _pin(18)
    led: int | None = _pin(None)
    bounce_time: float = _setting(0.05, low=0.0, high=1.0)
    #: Holding the class button this long removes the last collected sample.
    long_press_seconds: float = _setting(1.5, low=0.1, high=10.0)


@dataclass(frozen=True)
class InferenceConfig:
    trigger_class: str = "Class B"
    threshold: float = _setting(0.75, low=0.0, high=1.0)
    pulse_seconds: float = _setting(0.3, low=0.01, high=5.0)
    hop_samples: int = _setting(100, low=1, high=400)


@dataclass(frozen=True)
class ClassesConfig:
    #: What the journal, ``odar status`` and ``odar samples`` call each class, in the
    #: manifest's order; None: the manifest's names.
    names: tuple[str, ...] | None = None


@dataclass(frozen=True)
class TrainingConfig:
    save_every_seconds: float = _setting(60.0, low=1.0, high=86_400.0)
    max_epochs: int | None = _setting(None, low=1, high=10_000_000)
    #: settled: Train stops by itself (and saves) once the loss settles; never: only the
    #: start/stop button or max_epochs end it.
    stop_when: Literal["settled", "never"] = "settled"


@dataclass(frozen=True)
class StorageConfig:
    """Bounds on what collecting may take of the SD card (MiB = 2**20 bytes)."""

    #: The sample store's largest size: 2 GiB is about 200,000 samples (55 hours of collecting
    #: at one window a second), a sixth of a 16 GB card's room after the OS.
    max_samples_mib: int = _setting(2048, low=1, high=1_048_576)
    #: Collect stops before the file system's free space falls below this.
    reserve_free_mib: int = _setting(512, low=0, high=1_048_576)


@dataclass(frozen=True)
class PathsConfig:
    """Relative paths are taken relative to the config file's directory."""

    artifacts_dir: Path = Path("../artifacts")
    #: None: ``$STATE_DIRECTORY`` (set by systemd's ``StateDirectory=``), else /var/lib/odar.
    state_dir: Path | None = None
    #: Where the daemon keeps its status file (``odar status``, ``odar watch``). None:
    #: ``$RUNTIME_DIRECTORY`` (systemd's ``RuntimeDirectory=``), else /run/odar.
    runtime_dir: Path | None = None


@dataclass(frozen=True)
class LoggingConfig:
    level: Literal["debug", "info", "warning", "error"] = "info"
    loss_lines_per_second: float = _setting(1.0, low=0.001, high=1000.0)
    probability_lines_per_second: float = _setting(1.0, low=0.001, high=1000.0)
    sample_lines_per_second: float = _setting(1.0, low=0.001, high=1000.0)


@dataclass(frozen=True)
class RuntimeConfig:
    num_threads: int = _setting(1, low=1, high=64)


@dataclass(frozen=True)
class Config:
    sensor: SensorConfig = field(default_factory=SensorConfig)
    pins: PinsConfig = field(default_factory=PinsConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    classes: ClassesConfig = field(default_factory=ClassesConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    @property
    def state_dir(self) -> Path:
        """Always set after :func:`load_config`; the property saves callers a None check."""
        assert self.paths.state_dir is not None
        return self.paths.state_dir

    @property
    def runtime_dir(self) -> Path:
        """Always set after :func:`load_config`."""
        assert self.paths.runtime_dir is not None
        return self.paths.runtime_dir


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read, check and complete the config at *path*; raise :class:`ConfigError` on any fault."""
    path = Path(path)
    environ = os.environ if environ is None else environ
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read config: {error}") from None
    return parse_config(text, source=path, environ=environ)


def parse_config(
    text: str, source: Path = Path("<string>"), environ: Mapping[str, str] | None = None
) -> Config:
    """The body of :func:`load_config`, for text that is already in memory."""
    environ = os.environ if environ is None else environ
    try:
        document = yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{source}:{mark.line + 1}" if mark is not None else str(source)
        raise ConfigError(f"{where}: {error.problem or error.context}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: not valid YAML: {error}") from None
    if document is None:
        document = {}
    config = _build(Config, document, "", source)
    return _complete(config, source, environ)


def _complete(config: Config, source: Path, environ: Mapping[str, str]) -> Config:
    """Checks across keys, and paths made absolute."""
    try:
        config.sensor.settings  # noqa: B018 - SensorSettings validates against the datasheet
    except SensorSettingsError as error:
        raise ConfigError(f"{source}: {error}") from None
    _check_pins_distinct(config.pins, source)
    base = source.parent if source.name != "<string>" else Path.cwd()
    state_dir = config.paths.state_dir
    if state_dir is None:
        # systemd may list several directories separated by colons; ours is the first.
        from_systemd = environ.get("STATE_DIRECTORY", "").split(":")[0]
        state_dir = Path(from_systemd) if from_systemd else DEFAULT_STATE_DIR
    runtime_dir = config.paths.runtime_dir
    if runtime_dir is None:
        from_systemd = environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
        runtime_dir = Path(from_systemd) if from_systemd else DEFAULT_RUNTIME_DIR
    paths = PathsConfig(
        artifacts_dir=_absolute(config.paths.artifacts_dir, base),
        state_dir=_absolute(state_dir, base),
        runtime_dir=_absolute(runtime_dir, base),
    )
    return dataclasses.replace(config, paths=paths)


def _absolute(path: Path, base: Path) -> Path:
    return path if path.is_absolute() else (base / path).resolve()


def _check_pins_distinct(pins: PinsConfig, source: Path) -> None:
    seen: dict[int, str] = {}
    for name in ("mode_button", "class_button", "start_button", "motor", "led"):
        pin = getattr(pins, name)
        if pin is None:
            continue
        if pin in seen:
            raise ConfigError(f"{source}: pins.{name}: {pin} is already used by pins.{seen[pin]}")
        seen[pin] = name


def _build(cls: type, value: object, key: str, source: Path) -> Any:
    """*value* (parsed YAML) made into dataclass *cls*, every field checked."""
    section = key or "top level"
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: {section}: expected a mapping of keys, got {value!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for name in value:
        if name not in fields:
            raise ConfigError(f"{source}: {_unknown_key_message(name, key, list(fields))}")
    arguments = {}
    for name, value_of_field in value.items():
        dotted = f"{key}.{name}" if key else str(name)
        arguments[name] = _convert(
            hints[name], value_of_field, dotted, fields[name].metadata, source
        )
    return cls(**arguments)


def _unknown_key_message(name: object, key: str, known: list[str]) -> str:
    dotted = f"{key}.{name}" if key else str(name)
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f"; did you mean {key + '.' if key else ''}{close[0]}?" if close else ""
    return f"{dotted}: unknown key (known: {', '.join(known)}){hint}"


def _convert(hint: Any, value: object, key: str, metadata: Mapping[str, Any], source: Path) -> Any:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if value is None:
            return None
        (hint,) = options  # only "X | None" is used in the sections above
        origin = typing.get_origin(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value, key, source)
    if metadata.get("pin"):
        try:
            return parse_pin(value)
        except PinNameError as error:
            raise ConfigError(f"{source}: {key}: {error}") from None
    if origin is tuple:
        return _string_tuple(value, key, source)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"{source}: {key}: {value!r} is not one of {list(choices)}")
        return value
    if hint is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{source}: {key}: {value!r} is not a path")
        return Path(value)
    if hint is str:
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{source}: {key}: {value!r} is not a non-empty string")
        return value
    # YAML's true/false are ints in Python; a boolean is never a number here.
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: {key}: {value!r} is not an integer")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{source}: {key}: {value!r} is not a number")
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"{source}: {key}: {value!r} is not a finite number")
    else:  # pragma: no cover - a section declared a type this loader does not know
        raise TypeError(f"config field {key} has unsupported type {hint!r}")
    low, high = metadata.get("low"), metadata.get("high")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ConfigError(f"{source}: {key}: {value!r} is outside {low}-{high}")
    return value


def _string_tuple(value: object, key: str, source: Path) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{source}: {key}: {value!r} is not a list of names")
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise ConfigError(f"{source}: {key}: {item!r} is not a non-empty string")
    if len(set(value)) != len(value):
        raise ConfigError(f"{source}: {key}: the names {value!r} are not all different")
    return tuple(value)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, which PyYAML would otherwise silently merge."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, f"{key!r} cannot be a key", key_node.start_mark
                ) from None
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)
