"""The MPU-6050 driver: FIFO bursts over I2C into numpy blocks in SI units.

One ``read()`` is one combined I2C transaction (write the register address, repeated start,
read) that starts at FIFO_COUNTH. The chip's register pointer advances FIFO_COUNTH ->
FIFO_COUNTL -> FIFO_R_W and then stays on FIFO_R_W, whose every read pops the FIFO, so the
transaction returns the FIFO count followed by FIFO bytes. The driver only asks for samples it
knows are there: those the previous count showed it had left behind, plus those that have
certainly arrived since, by the clock, with a margin for the chip's oscillator. The count in
the same answer then confirms the guess (PX4's InvenSense SPI drivers read the same way).

Reading more than the FIFO holds would return repeats of the last byte (RM 4.31) and could
misalign the stream, so the guess errs low and leftovers wait for the next read.
"""

from __future__ import annotations

import errno
import logging
import math
import threading
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from smbus2 import i2c_msg

from odar.drivers import mpu6050_registers as reg
from odar.drivers.clock import Clock, SystemClock
from odar.drivers.i2c_bus import I2CBus
from odar.drivers.sensor_settings import ACCEL_RANGES_G, GYRO_RANGES_DPS, SensorSettings
from odar.errors import SensorError, SensorNotFoundError

STANDARD_GRAVITY = 9.80665  # m/s^2 per g
CHANNELS = 6  # ax ay az gx gy gz

#: I2C errors a loose wire, a brown-out or a busy bus produce; the driver rides them out.
TRANSIENT_I2C_ERRNOS = frozenset({errno.EIO, errno.EREMOTEIO, errno.ETIMEDOUT, errno.EBUSY})

#: The chip's sample clock may run this much faster or slower than nominal; the guess of how
#: many samples have arrived uses the slow end. (The PLL with gyro reference is within about
#: 1 % over temperature; 3 % leaves room.)
SAMPLE_CLOCK_TOLERANCE = 0.03
#: Samples held back from the guess on top of the tolerance, for a sample being written.
SAFETY_SAMPLES = 1
#: Read when the FIFO is about this full: late reads then still have half the FIFO in hand.
FIFO_FILL_TARGET = 0.5
#: ... but at least this often, so that a slow rate does not delay the windows.
MAX_POLL_INTERVAL_S = 0.100
#: A count of 85 whole samples (1020 bytes) or more: the FIFO is full, the next sample pushes
#: out the oldest bytes and the 12-byte framing is lost (1024 is not a multiple of 12).
OVERFLOW_COUNT_BYTES = reg.FIFO_CAPACITY_SAMPLES * reg.SAMPLE_BYTES

#: Bus cost: every bit of a byte plus its ACK is one clock.
BITS_PER_BUS_BYTE = 9
#: Bytes around the payload of one FIFO read: address+W, register, address+R, FIFO_COUNT H/L.
READ_OVERHEAD_BYTES = 5
#: START, repeated START and STOP conditions, in clocks.
READ_OVERHEAD_CONDITIONS = 3
#: Share of the bus clock a stream may plan on: clock stretching and other devices take the rest.
BUS_USABLE_FRACTION = 0.8

#: Backoff between recovery attempts after an I2C error, doubling up to the maximum.
RECOVERY_BACKOFF_INITIAL_S = 0.010
RECOVERY_BACKOFF_MAX_S = 1.0
#: Share of the measured-vs-expected timestamp difference corrected per read: absorbs the
#: drift between the chip's and the host's clocks while smoothing scheduling jitter.
TIMESTAMP_CORRECTION_GAIN = 0.1
#: Most the spacing of a block's timestamps may differ from the period while correcting: above
#: any sample clock's drift (datasheet: a few percent), far below a missing sample.
TIMESTAMP_MAX_STRETCH = 0.05
#: An estimate this far from the continued timestamps is no jitter: re-anchor, marked as a gap.
TIMESTAMP_REANCHOR_S = 1.0


@dataclass(frozen=True)
class SensorBlock:
    """Samples from one read: ``samples`` (n, 6) float32 ax ay az [m/s^2] gx gy gz [rad/s],
    ``timestamps`` (n,) float64 monotonic seconds; ``lost`` samples are known to be missing
    before the first one, and ``gap`` says the block does not continue the previous one."""

    timestamps: np.ndarray
    samples: np.ndarray
    lost: int = 0
    gap: bool = False

    def __len__(self) -> int:
        return int(self.timestamps.shape[0])

    @classmethod
    def empty(cls, lost: int = 0, gap: bool = False) -> SensorBlock:
        return cls(np.empty(0, np.float64), np.empty((0, CHANNELS), np.float32), lost, gap)


@dataclass
class DriverCounters:
    """Totals since construction, for ``odar bench sensor`` and the journal."""

    samples: int = 0
    lost: int = 0
    gaps: int = 0
    reads: int = 0
    transactions: int = 0
    bus_bytes: int = 0
    overflows: int = 0
    i2c_errors: int = 0
    recoveries: int = 0


class BlockSink(Protocol):
    """Where :meth:`MPU6050.stream` puts blocks (``odar.ring_buffer.RingBuffer``)."""

    def append(self, block: SensorBlock) -> None: ...


def si_scale(settings: SensorSettings) -> np.ndarray:
    """Per-channel factor from raw int16 counts to m/s^2 (accel) and rad/s (gyro)."""
    accel_lsb_per_g = ACCEL_RANGES_G[settings.accel_range_g][1]
    gyro_lsb_per_dps = GYRO_RANGES_DPS[settings.gyro_range_dps][1]
    accel = STANDARD_GRAVITY / accel_lsb_per_g
    gyro = math.pi / 180.0 / gyro_lsb_per_dps
    return np.array([accel] * 3 + [gyro] * 3, dtype=np.float64)


def raw_to_si(raw: bytes | bytearray | memoryview, scale: np.ndarray) -> np.ndarray:
    """Big-endian int16 sample records (accel xyz, gyro xyz) to float32 SI, (n, 6)."""
    counts = np.frombuffer(raw, dtype=">i2").reshape(-1, CHANNELS)
    return (counts * scale).astype(np.float32)


def nearest_sample_rate(settings: SensorSettings) -> tuple[int, float]:
    """(SMPLRT_DIV, rate in Hz) closest to ``settings.rate_hz``: rate = gyro output / (1 + div)."""
    output_hz = settings.gyro_output_rate_hz
    ideal = output_hz / settings.rate_hz - 1.0
    candidates = {min(255, max(0, d)) for d in (math.floor(ideal), math.ceil(ideal))}
    divider = min(candidates, key=lambda d: (abs(output_hz / (1 + d) - settings.rate_hz), d))
    return divider, output_hz / (1 + divider)


def poll_interval_for(rate_hz: float) -> float:
    """Seconds between FIFO reads at ``rate_hz``: half a FIFO, at most MAX_POLL_INTERVAL_S."""
    return min(MAX_POLL_INTERVAL_S, FIFO_FILL_TARGET * reg.FIFO_CAPACITY_SAMPLES / rate_hz)


def bus_can_carry(settings: SensorSettings) -> tuple[bool, float]:
    """(whether ``settings.bus_hz`` carries the stream, bus clocks per second it needs).

    The stream needs 12 bytes a sample plus each read's addressing and count; it fits when
    that is within BUS_USABLE_FRACTION of the bus clock. 1 kHz needs ~109 kbit/s: a 400 kHz
    bus, not the Pi's 100 kHz default.
    """
    _, rate_hz = nearest_sample_rate(settings)
    reads_per_s = 1.0 / poll_interval_for(rate_hz)
    payload = rate_hz * reg.SAMPLE_BYTES * BITS_PER_BUS_BYTE
    overhead = reads_per_s * (READ_OVERHEAD_BYTES * BITS_PER_BUS_BYTE + READ_OVERHEAD_CONDITIONS)
    needed = payload + overhead
    return needed <= settings.bus_hz * BUS_USABLE_FRACTION, needed


class MPU6050:
    """An MPU-6050 (or a register-compatible clone) streaming accel+gyro through its FIFO.

    ``bus`` is an smbus2.SMBus-compatible object the caller opened (``smbus2.SMBus(1)`` on a
    Pi); the driver never opens or closes it. Time comes from ``clock``.
    """

    def __init__(
        self,
        bus: I2CBus,
        settings: SensorSettings,
        *,
        clock: Clock | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self._bus = bus
        self._settings = settings
        self._address = settings.address
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._log = logger if logger is not None else logging.getLogger(__name__)
        self._smplrt_div, self._rate_hz = nearest_sample_rate(settings)
        self._period_s = 1.0 / self._rate_hz
        self._scale = si_scale(settings)
        self.counters = DriverCounters()
        self.chip_name = ""
        self._started = False
        self._recovering = False
        self._backoff_s = RECOVERY_BACKOFF_INITIAL_S
        # What the last FIFO_COUNT said, and when it was certainly already latched.
        self._leftover_samples = 0
        self._count_known_at = 0.0
        # Timestamp of the last delivered sample (None: restart timestamps from the clock)
        # and the time from which undelivered samples count as lost.
        self._last_timestamp: float | None = None
        self._delivered_until = 0.0
        self._pending_lost = 0
        self._pending_gap = False

    # -- public surface -----------------------------------------------------------------

    @property
    def actual_rate_hz(self) -> float:
        """The sample rate the chip runs at: the achievable rate nearest the requested one."""
        return self._rate_hz

    @property
    def poll_interval_s(self) -> float:
        """How long a caller should sleep between ``read()`` calls."""
        return poll_interval_for(self._rate_hz)

    @property
    def recovering(self) -> bool:
        """True between an I2C error and the chip answering and being re-initialised."""
        return self._recovering

    @property
    def where(self) -> str:
        return f"I2C bus {self._settings.bus} address {self._address:#04x}"

    def start(self) -> None:
        """Probe WHO_AM_I, reset and configure the chip, start the FIFO.

        Raises SensorNotFoundError when nothing, or not an MPU-6050 family chip, answers.
        """
        fits, needed = bus_can_carry(self._settings)
        if not fits:
            self._log.error(
                "%s: the bus cannot carry %.0f Hz: it needs %.0f bit/s, more than %d Hz "
                "allows; set dtparam=i2c_arm_baudrate=400000 in config.txt and reboot",
                self.where,
                self._rate_hz,
                needed,
                self._settings.bus_hz,
            )
        if self._rate_hz != self._settings.rate_hz:
            self._log.warning(
                "%s: %g Hz is not a rate the chip can make; running at %g Hz (SMPLRT_DIV %d)",
                self.where,
                self._settings.rate_hz,
                self._rate_hz,
                self._smplrt_div,
            )
        self._probe()
        self._configure()
        self._started = True

    def read(self) -> SensorBlock:
        """Whole samples from the FIFO since the last read; empty while recovering."""
        if not self._started:
            raise SensorError(f"{self.where}: read() before start()")
        if self._recovering:
            return self._attempt_recovery()
        try:
            return self._read_fifo()
        except OSError as error:
            if error.errno not in TRANSIENT_I2C_ERRNOS:
                raise
            self._begin_recovery(error)
            return SensorBlock.empty()

    def stream(self, sink: BlockSink, stop: threading.Event) -> None:
        """Read at ``poll_interval_s`` into ``sink`` until ``stop`` is set."""
        next_read = self._clock.monotonic()
        while not stop.is_set():
            block = self.read()
            if len(block):
                sink.append(block)
            next_read += self.poll_interval_s
            now = self._clock.monotonic()
            # Late (a slow read, a busy CPU): start again from now rather than burst-reading.
            next_read = max(next_read, now)
            self._clock.sleep(next_read - now)

    def close(self) -> None:
        """Put the chip to sleep (it draws ~3.9 mA awake); the bus stays the caller's."""
        if not self._started:
            return
        self._started = False
        try:
            self._write_fields((reg.PWR_MGMT_1_SLEEP, 1))
        except OSError as error:
            self._log.debug("%s: could not put the chip to sleep: %s", self.where, error)

    # -- start-up -----------------------------------------------------------------------

    def _probe(self) -> None:
        try:
            who_am_i = self._read_byte(reg.Register.WHO_AM_I)
        except OSError as error:
            raise SensorNotFoundError(
                f"{self.where}: no answer to WHO_AM_I ({reg.Register.WHO_AM_I:#04x}): "
                f"errno {error.errno} ({error.strerror or error})"
            ) from error
        if who_am_i == reg.WHO_AM_I_MPU6050:
            self.chip_name = "MPU-6050"
        elif who_am_i in reg.WHO_AM_I_CLONES:
            self.chip_name = reg.WHO_AM_I_CLONES[who_am_i]
            self._log.warning(
                "%s: WHO_AM_I is %#04x (%s), not 0x68; using it as an MPU-6050",
                self.where,
                who_am_i,
                self.chip_name,
            )
        else:
            raise SensorNotFoundError(
                f"{self.where}: WHO_AM_I ({reg.Register.WHO_AM_I:#04x}) reads {who_am_i:#04x}, "
                "not 0x68 (MPU-6050) nor a known clone (0x70, 0x98)"
            )

    def _configure(self) -> None:
        s = self._settings
        self._write_fields((reg.PWR_MGMT_1_DEVICE_RESET, 1))
        self._clock.sleep(reg.RESET_DELAY_S)
        # The chip comes out of reset asleep: wake it and move it onto the gyro's PLL.
        self._write_fields(
            (reg.PWR_MGMT_1_SLEEP, 0), (reg.PWR_MGMT_1_CLKSEL, reg.CLKSEL_PLL_X_GYRO)
        )
        self._write_fields((reg.CONFIG_DLPF_CFG, s.dlpf_cfg))
        self._write_fields((reg.GYRO_CONFIG_FS_SEL, GYRO_RANGES_DPS[s.gyro_range_dps][0]))
        self._write_fields((reg.ACCEL_CONFIG_AFS_SEL, ACCEL_RANGES_G[s.accel_range_g][0]))
        self._write_fields((reg.SMPLRT_DIV, self._smplrt_div))
        self._restart_fifo()

    def _restart_fifo(self) -> None:
        """Empty the FIFO and start filling it with accel+gyro samples from now."""
        # FIFO_RESET only works while USER_CTRL.FIFO_EN is 0 (RM 4.29); stop the writes first.
        self._write_byte(reg.Register.FIFO_EN, 0)
        self._write_fields((reg.USER_CTRL_FIFO_EN, 0), (reg.USER_CTRL_FIFO_RESET, 1))
        self._write_fields((reg.USER_CTRL_FIFO_EN, 1))
        self._read_byte(reg.Register.INT_STATUS)  # reading clears a stale FIFO_OFLOW_INT
        enable = 0
        for bit in (reg.FIFO_EN_XG, reg.FIFO_EN_YG, reg.FIFO_EN_ZG, reg.FIFO_EN_ACCEL):
            enable = bit.insert(enable, 1)
        self._write_byte(reg.Register.FIFO_EN, enable)
        now = self._clock.monotonic()
        self._leftover_samples = 0
        self._count_known_at = now
        self._last_timestamp = None
        self._delivered_until = now

    # -- the FIFO read --------------------------------------------------------------------

    def _samples_certainly_in_fifo(self, now: float) -> int:
        slow_rate = self._rate_hz * (1.0 - SAMPLE_CLOCK_TOLERANCE)
        arrived = math.floor((now - self._count_known_at) * slow_rate) - SAFETY_SAMPLES
        return min(reg.FIFO_CAPACITY_SAMPLES, self._leftover_samples + max(0, arrived))

    def _read_fifo(self) -> SensorBlock:
        read_at = self._clock.monotonic()
        wanted = self._samples_certainly_in_fifo(read_at)
        answer = self._burst_read(reg.Register.FIFO_COUNTH, 2 + wanted * reg.SAMPLE_BYTES)
        # The count was latched after read_at and before now: the next guess counts from now.
        self._count_known_at = self._clock.monotonic()
        self.counters.reads += 1
        count = (answer[0] << 8) | answer[1]
        if count >= OVERFLOW_COUNT_BYTES:
            self.counters.overflows += 1
            self._log.warning(
                "%s: FIFO overflow (FIFO_COUNT %d of %d bytes); resetting the FIFO",
                self.where,
                count,
                reg.FIFO_SIZE_BYTES,
            )
            self._restart_after_loss()
            return SensorBlock.empty()
        in_fifo = count // reg.SAMPLE_BYTES
        if in_fifo < wanted:
            # Bytes past the count were not samples: the stream may be misaligned.
            self._log.warning(
                "%s: FIFO held %d samples, %d were expected; resetting the FIFO",
                self.where,
                in_fifo,
                wanted,
            )
            self._restart_after_loss()
            return SensorBlock.empty()
        self._leftover_samples = in_fifo - wanted
        if wanted == 0:
            return SensorBlock.empty()
        samples = raw_to_si(memoryview(answer)[2:], self._scale)
        # The newest sample in the FIFO was written just before the count was latched.
        newest_read = read_at - self._leftover_samples * self._period_s
        timestamps = self._stamp(wanted, newest_read)
        block = SensorBlock(timestamps, samples, self._pending_lost, self._pending_gap)
        self._pending_lost = 0
        self._pending_gap = False
        self._last_timestamp = float(timestamps[-1])
        self._delivered_until = self._last_timestamp
        self.counters.samples += wanted
        return block

    def _stamp(self, n: int, newest: float) -> np.ndarray:
        period = self._period_s
        anchored = newest - (n - 1) * period + np.arange(n, dtype=np.float64) * period
        last = self._last_timestamp
        if last is None:
            return anchored
        error = newest - (last + n * period)
        if abs(error) > TIMESTAMP_REANCHOR_S:
            # Not jitter (a stalled host, a chip clock far off): start afresh, as a gap, so no
            # window holds the jump.
            self._pending_gap = True
            return np.maximum(anchored, last + period * np.arange(1, n + 1))
        # Spread the correction over the block's spacing: continuous data never shows a step
        # that could be mistaken for a missing sample, and clock drift is still followed.
        limit = TIMESTAMP_MAX_STRETCH * n * period
        step = period + float(np.clip(TIMESTAMP_CORRECTION_GAIN * error, -limit, limit)) / n
        return last + step * np.arange(1, n + 1, dtype=np.float64)

    def _restart_after_loss(self) -> None:
        """Reset the FIFO and report what was produced since the last delivered sample."""
        lost_from = self._delivered_until
        self._restart_fifo()
        self._mark_gap(max(0, round((self._delivered_until - lost_from) * self._rate_hz)))

    def _mark_gap(self, lost: int) -> None:
        self._pending_lost += lost
        self._pending_gap = True
        self.counters.lost += lost
        self.counters.gaps += 1
        self._log.warning("%s: gap in the sample stream, about %d samples lost", self.where, lost)

    # -- recovery -----------------------------------------------------------------------

    def _begin_recovery(self, error: OSError) -> None:
        self.counters.i2c_errors += 1
        self._recovering = True
        self._backoff_s = RECOVERY_BACKOFF_INITIAL_S
        self._log.warning(
            "%s: I2C error errno %s (%s); recovering", self.where, error.errno, error.strerror
        )

    def _attempt_recovery(self) -> SensorBlock:
        self._clock.sleep(self._backoff_s)
        lost_from = self._delivered_until
        try:
            self._probe()
            self._configure()
        except SensorNotFoundError as error:
            self._backoff_s = min(RECOVERY_BACKOFF_MAX_S, self._backoff_s * 2)
            self._log.debug("%s: still not answering: %s", self.where, error)
            return SensorBlock.empty()
        except OSError as error:
            if error.errno not in TRANSIENT_I2C_ERRNOS:
                raise
            self._backoff_s = min(RECOVERY_BACKOFF_MAX_S, self._backoff_s * 2)
            self._log.debug("%s: re-initialising failed: %s", self.where, error)
            return SensorBlock.empty()
        self._recovering = False
        self.counters.recoveries += 1
        self._log.warning("%s: the chip answers again and is re-initialised", self.where)
        self._mark_gap(max(0, round((self._delivered_until - lost_from) * self._rate_hz)))
        return SensorBlock.empty()

    # -- bus access -----------------------------------------------------------------------

    def _read_byte(self, register: int) -> int:
        value = self._bus.read_byte_data(self._address, register)
        self.counters.transactions += 1
        self.counters.bus_bytes += 4  # address+W, register, address+R, data
        return int(value)

    def _write_byte(self, register: int, value: int) -> None:
        self._bus.write_byte_data(self._address, register, value)
        self.counters.transactions += 1
        self.counters.bus_bytes += 3  # address+W, register, data

    def _write_fields(self, *assignments: tuple[reg.BitField, int]) -> None:
        """Read-modify-write one register so that only the named fields change."""
        registers = {bit_field.register for bit_field, _ in assignments}
        if len(registers) != 1:
            raise ValueError(f"fields of several registers in one write: {sorted(registers)}")
        register = registers.pop()
        covered = sum(bit_field.mask for bit_field, _ in assignments)
        value = 0 if covered == 0xFF else self._read_byte(register)
        for bit_field, field_value in assignments:
            value = bit_field.insert(value, field_value)
        self._write_byte(register, value)

    def _burst_read(self, register: int, length: int) -> bytes:
        """One combined transaction: write ``register``, repeated start, read ``length``."""
        write = i2c_msg.write(self._address, [register])
        read = i2c_msg.read(self._address, length)
        self._bus.i2c_rdwr(write, read)
        self.counters.transactions += 1
        self.counters.bus_bytes += 3 + length  # address+W, register, address+R, data
        return bytes(read)


__all__ = [
    "MPU6050",
    "DriverCounters",
    "SensorBlock",
    "bus_can_carry",
    "nearest_sample_rate",
    "poll_interval_for",
    "raw_to_si",
    "si_scale",
]
