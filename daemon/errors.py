"""The exceptions odar raises.

Every one subclasses both :class:`OdarError` and the builtin a caller would
otherwise expect, so ``except ValueError`` and ``except OdarError`` both work.
"""

from __future__ import annotations


class OdarError(Exception):
    """Base of every error odar raises on purpose."""


class ConfigError(OdarError, ValueError):
    """The configuration names a bad key or value. The message names both."""


class SensorError(OdarError, OSError):
    """The IMU cannot be reached or does not behave like an MPU6050."""


class SensorNotFoundError(SensorError):
    """Nothing (or the wrong chip) answers at the configured bus and address."""


class SensorSettingsError(OdarError, ValueError):
    """A sensor setting the chip cannot do (range, DLPF, rate)."""


class ArtifactError(OdarError, ValueError):
    """An artifact or its manifest is missing, corrupt or does not match."""


class StateError(OdarError, ValueError):
    """Saved state (parameters, sample store) is corrupt or belongs elsewhere."""


class RuntimeMissingError(OdarError, ImportError):
    """Neither tflite-runtime nor ai-edge-litert can be imported."""


class StateWriteError(OdarError, OSError):
    """Saved state could not be written (disk full, read-only); the previous file is intact."""


class EmulationError(OdarError, ValueError):
    """The emulated hardware is asked for something impossible (time going back, a bad fault)."""


class DatasetError(OdarError, ValueError):
    """A data file (such as HHAR's CSVs) does not have the expected format. Names the file."""


class TraceError(OdarError, ValueError):
    """A recorded motion trace (CSV or NPZ) cannot be replayed. Names the file and the fault."""


class NotInstalledError(OdarError, FileNotFoundError):
    """A command needs a file a checkout has and this install does not."""


class StateDirectoryError(OdarError, ValueError):
    """The state directory is unsafe (foreign owner, writable by others) or in use by another
    odar. Names the directory and what is wrong; ``odar run`` exits 78."""


class RootRefusedError(OdarError, ValueError):
    """``odar run`` as root without ``--allow-root``."""


class TrainingProcessError(OdarError, RuntimeError):
    """The training process failed, died (the OOM killer, a crash in the runtime) or did not
    start. Names what it said or how it ended; the trainer thread stops the daemon with it."""
