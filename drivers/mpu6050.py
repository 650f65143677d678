"""The MPU-6050 driver: FIFO reads over I2C into numpy blocks in SI units.

A read takes FIFO_COUNT, then that many whole 12-byte frames from FIFO_R_W (0x74), as the
Linux inv_mpu6050 driver and PX4's and Klipper's I2C drivers do: two transactions, and the
driver never asks for a byte the count did not promise. Where the chip at hand is proven at
start to carry one combined read across the pointer crossing FIFO_COUNTH (0x72) -> FIFO_COUNTL
-> FIFO_R_W (the proof writes a pattern into the FIFO and reads it back behind the count),
most reads are that one transaction instead: the driver asks only for frames the previous
count left behind plus those that have certainly arrived since, by the chip's measured rate;
the count in the same answer confirms it. Reading more than the FIFO holds would return
repeats of the last byte (RM 4.31) and misalign the stream, so that guess errs low. It errs
lowest after a read whose answer came back late (the host ran something else): the count may
then show far more than was read, and those frames, the oldest in the FIFO, are read at once
in one more transaction (``LEFT_BEHIND_READ_SHARE``), not left to eat the next read's room.

What the chip may do meanwhile, and what the driver does about it:

* the FIFO overflows (a stalled host, a slow bus): FIFO_COUNT at the part's FIFO size (a
  FIFO only drops bytes when full, and stays full until read), or FIFO_OFLOW_INT in
  INT_STATUS (sticky until read), resets the FIFO and marks a gap: the oldest bytes went,
  the frames' alignment with them. Where the count and the data are two transactions, a
  count older than the FIFO's free room is read again;
* INT_STATUS comes at every read without a transaction of its own where the adapter allows
  it: one I2C_RDWR of four messages, [write INT_STATUS's address, read 1, write FIFO_COUNTH's
  address, read 2 (+ the FIFO's bytes where the combined read is proven)], repeated STARTs and
  one STOP; each write message sets the chip's register pointer (PS 9.3). i2c-gpio's
  ``i2c-algo-bit`` (``bit_xfer``) sends any such sequence. The Pi's own controller driver,
  i2c-bcm2835, refuses a read message that is not the last (``bcm2835_i2c_xfer``: EOPNOTSUPP,
  "only one read message supported, has to be last", before anything goes on the wire); there
  the driver says so once at start and reads INT_STATUS on its own every
  ``INT_STATUS_EVERY_S`` (the bit is sticky, so no overflow goes unseen, and a count at the
  FIFO's size still shows one at the very next read), after a plain read's FIFO bytes, never
  before the count: a transaction ahead of it would delay the count the FIFO's room is
  planned for. The bit set then means an overflow since the last INT_STATUS: before the count
  it would have left the count at the FIFO's size; after it, it may have taken the oldest
  bytes while this read was taking them. Either way the bytes just read are not trusted;
* a silent power-on reset (a brown-out beside the motor: PWR_MGMT_1 back to 0x40, asleep,
  nothing NACKs) or any configuration drift: the configuration is read back after start and
  whenever the FIFO delivers less than the clock says it should, and a mismatch re-initialises
  the chip fully;
* I2C errors (EIO, EREMOTEIO, ETIMEDOUT, EBUSY; ENXIO from i2c-gpio; EAGAIN) are transient:
  a failed FIFO read may still have popped bytes, so the FIFO is reset and a gap marked;
* after wake the gyro settles (PS: 30 ms; the kernel waits 60 ms, 70 ms on 6500-class parts):
  the FIFO is only enabled after the part's settling time, so no unsettled frame is delivered;
* parts answer WHO_AM_I 0x68, 0x70-0x73 or 0x98 with 512-4096-byte FIFOs (``PARTS``).
"""

from __future__ import annotations

import errno
import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
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
#: i2c-gpio (the Pi's clock-stretching workaround) reports a missing chip as ENXIO.
TRANSIENT_I2C_ERRNOS = frozenset(
    {errno.EIO, errno.EREMOTEIO, errno.ETIMEDOUT, errno.EBUSY, errno.ENXIO, errno.EAGAIN}
)

#: Read modes: count then data (the kernel's), or the combined read behind a start-up proof.
COUNT_THEN_DATA = "count-then-data"
BURST = "burst"
READ_MODES = ("auto", COUNT_THEN_DATA, BURST)

#: Until the chip's rate is measured, the guess of frames certainly in the FIFO assumes its
#: clock may be this much slow (clones run several per cent off); after, this much.
RATE_MARGIN_UNMEASURED = 0.12
RATE_MARGIN_MEASURED = 0.01
#: Seconds of FIFO counts before the measured rate replaces the nominal one.
RATE_LEARN_S = 0.5
#: Frames held back from the guess on top of the margin, for a frame being written.
SAFETY_SAMPLES = 1
#: Read when the FIFO is about this full, for a chip this much fast: late reads then still
#: find room (a +5 % chip and host jitter of several ms at 1 kHz).
FIFO_FILL_TARGET = 0.7
CHIP_FAST_HEADROOM = 0.10
#: ... but at least this often, so that a vanished sensor is noticed within a second and the
#: sensor thread's heartbeat stays far inside the watchdog's interval. (The windows need no
#: more: the daemon's reader reads each window's end when it is due. At 0.25 s, as first
#: set, 100 Hz read twice as often as its FIFO needs, and a chip 8 % slow, whose windows
#: then came just over two grid steps apart, three times: 12.6 bus bytes a sample.)
MAX_POLL_INTERVAL_S = 1.0
#: ... and for at most this many samples, so that no read holds the bus long (64 samples are
#: ~17 ms at 400 kHz; a big FIFO would otherwise be read a quarter second at a time).
MAX_READ_SAMPLES = 64
#: Where the adapter refuses INT_STATUS and FIFO_COUNT in one transfer (i2c-bcm2835):
#: FIFO_OFLOW_INT is sticky, so reading INT_STATUS on its own this often still sees every
#: overflow, for 4 transactions a second instead of one more at every read. It is read after
#: a plain read's FIFO bytes (the module's docstring says why).
INT_STATUS_EVERY_S = 0.25
#: A combined read that left behind more than this share of the room the fill target leaves
#: reads those frames at once, in one more transaction: the next read, a poll interval on,
#: would find them plus a full interval's arrivals and the FIFO overflowing. (The guess errs
#: low by what arrived while a slow read's answer came back; a read that returned late guesses
#: from a late bound, and its successor leaves most of the FIFO behind.)
LEFT_BEHIND_READ_SHARE = 0.5
#: What an adapter answers to a transfer it cannot make: i2c-bcm2835 EOPNOTSUPP for a read
#: message that is not the last; i2c-dev EINVAL for what it will not pass on.
ADAPTER_REFUSALS = frozenset({errno.EOPNOTSUPP, errno.EINVAL})
#: A FIFO read that finds less than this share of the frames its clock promised since the
#: last count makes the driver read the configuration back (a silent reset stops the FIFO).
SHORT_DELIVERY_SHARE = 0.5
SHORT_DELIVERY_MIN_FRAMES = 4
#: The byte pattern the start-up proof writes into the FIFO and expects behind the count.
BURST_PROOF_PATTERN = (0xA5, 0x5A, 0xC3, 0x3C, 0x96, 0x69, 0x0F, 0xF0, 0x81, 0x7E, 0x24, 0xDB)

#: Bus cost: every bit of a byte plus its ACK is one clock.
BITS_PER_BUS_BYTE = 9
#: The FIFO bytes behind the count are clocked out after the chip latched the count, so the
#: latch came at least their wire time before the transaction returned: the next guess
#: counts arrivals from there, not from the return (else every frame that arrived while the
#: answer was on the wire, ~0.27 ms a frame at 400 kHz, stays behind as backlog and eats the
#: FIFO's headroom). The wire time is taken at a clock this much faster than the configured
#: one, so the bound holds even where the bus runs a little fast.
BUS_CLOCK_FAST_MARGIN = 1.1
#: Bytes around the payload of one FIFO read: address+W, register, address+R, FIFO_COUNT H/L.
READ_OVERHEAD_BYTES = 5
#: START, repeated START and STOP conditions, in clocks.
READ_OVERHEAD_CONDITIONS = 3
#: Share of the bus clock a stream may plan on: clock stretching and other devices take the rest.
BUS_USABLE_FRACTION = 0.8
#: i2c-dev refuses a message longer than this.
I2C_MAX_MESSAGE_BYTES = 8192

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

#: Where the kernel exposes an I2C adapter's clock from the device tree (big-endian u32).
SYSFS_BUS_CLOCK = "class/i2c-adapter/i2c-{bus}/of_node/clock-frequency"


def bus_clock_from_sysfs(bus: int, root: Path = Path("/sys")) -> int | None:
    """The clock the kernel set for I2C bus ``bus``, or None where it does not say."""
    try:
        data = (root / SYSFS_BUS_CLOCK.format(bus=bus)).read_bytes()
    except OSError:
        return None
    return int.from_bytes(data, "big") if len(data) == 4 else None


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
    #: Configuration read-backs, and those that found the chip reset or its setup changed.
    config_checks: int = 0
    resets_detected: int = 0
    #: Reads that found fewer frames than were asked for (only the combined read can).
    misalignments: int = 0


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


def poll_interval_for(rate_hz: float, fifo_bytes: int = reg.FIFO_SIZE_BYTES) -> float:
    """Seconds between FIFO reads at ``rate_hz``: the fill target of a FIFO of ``fifo_bytes``
    for a chip CHIP_FAST_HEADROOM fast, at most MAX_POLL_INTERVAL_S and MAX_READ_SAMPLES."""
    frames = fifo_bytes // reg.SAMPLE_BYTES
    fill_s = FIFO_FILL_TARGET * frames / (rate_hz * (1.0 + CHIP_FAST_HEADROOM))
    return min(MAX_POLL_INTERVAL_S, fill_s, MAX_READ_SAMPLES / rate_hz)


def bus_can_carry(settings: SensorSettings, bus_hz: int | None = None) -> tuple[bool, float]:
    """(whether the bus carries the stream, bus clocks per second it needs).

    The stream needs 12 bytes a sample plus each read's addressing and count; it fits when
    that is within BUS_USABLE_FRACTION of the bus clock (``bus_hz``, default the settings').
    1 kHz needs ~109 kbit/s: a 400 kHz bus, not the Pi's 100 kHz default.
    """
    _, rate_hz = nearest_sample_rate(settings)
    reads_per_s = 1.0 / poll_interval_for(rate_hz)
    payload = rate_hz * reg.SAMPLE_BYTES * BITS_PER_BUS_BYTE
    overhead = reads_per_s * (READ_OVERHEAD_BYTES * BITS_PER_BUS_BYTE + READ_OVERHEAD_CONDITIONS)
    needed = payload + overhead
    clock = settings.bus_hz if bus_hz is None else bus_hz
    return needed <= clock * BUS_USABLE_FRACTION, needed


class MPU6050:
    """An MPU-6050 (or a register-compatible clone) streaming accel+gyro through its FIFO.

    ``bus`` is an smbus2.SMBus-compatible object the caller opened (``smbus2.SMBus(1)`` on a
    Pi); the driver never opens or closes it. Time comes from ``clock``. ``read_mode``:
    "auto" uses the combined read where the start-up proof passes, "count-then-data" never.
    ``sysfs_root`` is where the kernel's bus clock is looked up (tests point it elsewhere).
    """

    def __init__(
        self,
        bus: I2CBus,
        settings: SensorSettings,
        *,
        clock: Clock | None = None,
        logger: logging.Logger | None = None,
        read_mode: str = "auto",
        sysfs_root: Path = Path("/sys"),
    ) -> None:
        if read_mode not in READ_MODES:
            raise SensorError(f"read_mode {read_mode!r} is not one of {', '.join(READ_MODES)}")
        self._bus = bus
        self._settings = settings
        self._address = settings.address
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._log = logger if logger is not None else logging.getLogger(__name__)
        self._read_mode = read_mode
        self._sysfs_root = sysfs_root
        self._smplrt_div, self._rate_hz = nearest_sample_rate(settings)
        self._period_s = 1.0 / self._rate_hz
        self._scale = si_scale(settings)
        self.counters = DriverCounters()
        self.chip_name = ""
        self.part = reg.PARTS[reg.WHO_AM_I_MPU6050]
        self.bus_clock_hz: int | None = None
        self._burst_proven = False
        # INT_STATUS read in the same transfer as FIFO_COUNT (None until start() tried it).
        self._status_with_count: bool | None = None
        self._started = False
        self._recovering = False
        self._backoff_s = RECOVERY_BACKOFF_INITIAL_S
        self._expected: dict[int, int] = {}
        # What the last FIFO_COUNT said, and when it was certainly already latched.
        self._leftover_samples = 0
        self._count_known_at = 0.0
        # Arrivals are counted from the latest count that found new frames: one that found
        # none proves none came since, so the earlier moment still bounds what must come.
        self._arrivals_counted_from = 0.0
        # The chip's own rate, measured from the counts since the FIFO was last started.
        self._fifo_started_at = 0.0
        self._frames_since_start = 0
        self._measured_rate_hz: float | None = None
        self._safe_rate_hz: float | None = None
        self._fifo_started_after = 0.0
        self._next_int_status_at = 0.0
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
    def measured_rate_hz(self) -> float:
        """The chip's rate as its FIFO counts show it (its clock is a few per cent off)."""
        return self._measured_rate_hz or self._rate_hz

    @property
    def fifo_bytes(self) -> int:
        return self.part.fifo_bytes

    @property
    def poll_interval_s(self) -> float:
        """The longest a caller should leave between ``read()`` calls (the fill target);
        0 while recovering: ``read()`` itself waits the recovery's backoff."""
        if self._recovering:
            return 0.0
        return poll_interval_for(self._rate_hz, self.part.fifo_bytes)

    @property
    def fifo_filling_since(self) -> float | None:
        """When the FIFO last began to fill (the clock's time; the earlier bound), None before
        ``start()``: the first read is due a fill target after it, however late the reader
        that makes it begins."""
        return self._fifo_started_after if self._started else None

    @property
    def read_mode(self) -> str:
        """The mode in use: "burst" once proven, else "count-then-data"."""
        return BURST if self._burst_proven else COUNT_THEN_DATA

    @property
    def status_with_count(self) -> bool:
        """True where INT_STATUS comes in the same transaction as FIFO_COUNT at every read."""
        return bool(self._status_with_count)

    @property
    def last_timestamp(self) -> float | None:
        """Timestamp of the newest sample delivered (None right after a restart)."""
        return self._last_timestamp

    @property
    def recovering(self) -> bool:
        """True between an I2C error and the chip answering and being re-initialised."""
        return self._recovering

    @property
    def where(self) -> str:
        return f"I2C bus {self._settings.bus} address {self._address:#04x}"

    def start(self) -> None:
        """Probe WHO_AM_I, reset and configure the chip, check the configuration, start the FIFO.

        Raises SensorNotFoundError when nothing, or not an MPU-6050 family chip, answers.
        """
        self._check_bus_clock()
        if self._rate_hz != self._settings.rate_hz:
            self._log.warning(
                "%s: %g Hz is not a rate the chip can make; running at %g Hz (SMPLRT_DIV %d)",
                self.where,
                self._settings.rate_hz,
                self._rate_hz,
                self._smplrt_div,
            )
        self._probe()
        if self._status_with_count is None:
            self._status_with_count = self._adapter_takes_status_with_count()
        self._configure()
        drift = self._configuration_drift()
        if drift:
            raise SensorError(
                f"{self.where}: the configuration does not read back as written: {'; '.join(drift)}"
            )
        self._started = True

    def read(self, exact: bool = False) -> SensorBlock:
        """Whole samples from the FIFO since the last read; empty while recovering.

        ``exact`` reads the count first and then every whole frame it shows, even where the
        combined read is proven (two transactions): the caller wants the newest sample now.
        """
        if not self._started:
            raise SensorError(f"{self.where}: read() before start()")
        if self._recovering:
            return self._attempt_recovery()
        try:
            return self._read_fifo(exact)
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

    def _check_bus_clock(self) -> None:
        self.bus_clock_hz = bus_clock_from_sysfs(self._settings.bus, self._sysfs_root)
        real = self.bus_clock_hz
        if real is not None and real != self._settings.bus_hz:
            self._log.warning(
                "%s: the kernel runs the bus at %d Hz (%s), the configuration says "
                "sensor.bus_hz %d; timing estimates use %d Hz",
                self.where,
                real,
                self._sysfs_root / SYSFS_BUS_CLOCK.format(bus=self._settings.bus),
                self._settings.bus_hz,
                real,
            )
        fits, needed = bus_can_carry(self._settings, real)
        if not fits:
            self._log.error(
                "%s: the bus cannot carry %.0f Hz: it needs %.0f bit/s, more than %d Hz "
                "allows; set dtparam=i2c_arm_baudrate=400000 in config.txt and reboot",
                self.where,
                self._rate_hz,
                needed,
                real if real is not None else self._settings.bus_hz,
            )

    def _probe(self) -> None:
        try:
            who_am_i = self._read_byte(reg.Register.WHO_AM_I)
        except OSError as error:
            raise SensorNotFoundError(
                f"{self.where}: no answer to WHO_AM_I ({reg.Register.WHO_AM_I:#04x}): "
                f"errno {error.errno} ({error.strerror or error})"
            ) from error
        part = reg.PARTS.get(who_am_i)
        if part is None:
            known = ", ".join(f"{value:#04x}" for value in reg.PARTS)
            raise SensorNotFoundError(
                f"{self.where}: WHO_AM_I ({reg.Register.WHO_AM_I:#04x}) reads {who_am_i:#04x}, "
                f"not an MPU-6050 nor a part sold as one ({known})"
            )
        if part is not self.part or not self.chip_name:
            self.part = part
            self.chip_name = part.name
            if who_am_i != reg.WHO_AM_I_MPU6050:
                self._log.warning(
                    "%s: WHO_AM_I is %#04x (%s, %d-byte FIFO), not 0x68; using it as an MPU-6050",
                    self.where,
                    who_am_i,
                    part.name,
                    part.fifo_bytes,
                )

    def _adapter_takes_status_with_count(self) -> bool:
        """Whether the adapter makes INT_STATUS and FIFO_COUNT one transfer (one try; what
        it reads is of no use before the FIFO starts, and clearing INT_STATUS is harmless)."""
        try:
            self._status_and_fifo_read(2)
        except OSError as error:
            if error.errno not in ADAPTER_REFUSALS:
                raise
            self._log.info(
                "%s: the I2C adapter refuses INT_STATUS and FIFO_COUNT in one transfer "
                "(errno %s, %s; i2c-bcm2835 takes one read message, the last); reading "
                "INT_STATUS on its own every %g s",
                self.where,
                error.errno,
                error.strerror,
                INT_STATUS_EVERY_S,
            )
            return False
        return True

    def _configure(self) -> None:
        """Reset, wake, configure, let the gyro settle, prove the combined read, start the FIFO."""
        s = self._settings
        self._write_fields((reg.PWR_MGMT_1_DEVICE_RESET, 1))
        self._clock.sleep(reg.RESET_DELAY_S)
        # The chip comes out of reset asleep: wake it and move it onto the gyro's PLL.
        pwr_mgmt_1 = reg.PWR_MGMT_1_CLKSEL.insert(0, reg.CLKSEL_PLL_X_GYRO)
        self._write_byte(reg.Register.PWR_MGMT_1, pwr_mgmt_1)
        config = reg.CONFIG_DLPF_CFG.insert(0, s.dlpf_cfg)
        gyro = reg.GYRO_CONFIG_FS_SEL.insert(0, GYRO_RANGES_DPS[s.gyro_range_dps][0])
        accel = reg.ACCEL_CONFIG_AFS_SEL.insert(0, ACCEL_RANGES_G[s.accel_range_g][0])
        self._expected = {
            reg.Register.SMPLRT_DIV: self._smplrt_div,
            reg.Register.CONFIG: config,
            reg.Register.GYRO_CONFIG: gyro,
            reg.Register.ACCEL_CONFIG: accel,
        }
        if self.part.has_accel_config2:
            # The 6500-class accelerometer has its own filter; the same bandwidth index.
            self._expected[reg.Register.ACCEL_CONFIG2] = reg.ACCEL_CONFIG2_A_DLPF_CFG.insert(
                0, s.dlpf_cfg
            )
        # SMPLRT_DIV, CONFIG, GYRO_CONFIG, ACCEL_CONFIG (and ACCEL_CONFIG2) are adjacent.
        values = [self._expected[r] for r in sorted(self._expected)]
        self._write_block(reg.Register.SMPLRT_DIV, values)
        self._write_byte(reg.Register.INT_ENABLE, reg.INT_ENABLE_FIFO_OFLOW_EN.insert(0, 1))
        self._expected[reg.Register.PWR_MGMT_1] = pwr_mgmt_1
        # Nothing enters the FIFO while the gyro settles, so no unsettled frame is delivered.
        self._clock.sleep(self.part.gyro_startup_s)
        self._burst_proven = self._read_mode != COUNT_THEN_DATA and self._prove_burst()
        self._restart_fifo()
        self._expected[reg.Register.USER_CTRL] = reg.USER_CTRL_FIFO_EN.insert(0, 1)
        self._expected[reg.Register.FIFO_EN] = self._fifo_en_value()

    def _prove_burst(self) -> bool:
        """Write a pattern into the (sensor-quiet) FIFO and read it back in one transaction
        from FIFO_COUNTH: true only if the count and then the pattern come back."""
        self._write_byte(reg.Register.FIFO_EN, 0)
        self._write_fields((reg.USER_CTRL_FIFO_EN, 0), (reg.USER_CTRL_FIFO_RESET, 1))
        self._write_fields((reg.USER_CTRL_FIFO_EN, 1))
        pattern = list(BURST_PROOF_PATTERN)
        self._write_block(reg.Register.FIFO_R_W, pattern)
        answer = self._burst_read(reg.Register.FIFO_COUNTH, 2 + len(pattern))
        proven = answer == bytes([0, len(pattern), *pattern])
        if not proven:
            self._log.info(
                "%s: the combined FIFO_COUNT+FIFO_R_W read did not return the pattern "
                "written; reading the count first, then the data",
                self.where,
            )
        return proven

    @staticmethod
    def _fifo_en_value() -> int:
        enable = 0
        for bit in (reg.FIFO_EN_XG, reg.FIFO_EN_YG, reg.FIFO_EN_ZG, reg.FIFO_EN_ACCEL):
            enable = bit.insert(enable, 1)
        return enable

    def _restart_fifo(self) -> None:
        """Empty the FIFO and start filling it with accel+gyro samples from now."""
        # FIFO_RESET only works while USER_CTRL.FIFO_EN is 0 (RM 4.29); stop the writes first.
        self._write_byte(reg.Register.FIFO_EN, 0)
        self._write_fields((reg.USER_CTRL_FIFO_EN, 0), (reg.USER_CTRL_FIFO_RESET, 1))
        self._write_fields((reg.USER_CTRL_FIFO_EN, 1))
        self._read_byte(reg.Register.INT_STATUS)  # reading clears a stale FIFO_OFLOW_INT
        # The FIFO starts filling between these two moments.
        self._fifo_started_after = self._clock.monotonic()
        self._write_byte(reg.Register.FIFO_EN, self._fifo_en_value())
        now = self._clock.monotonic()
        self._fifo_started_at = 0.5 * (self._fifo_started_after + now)
        self._leftover_samples = 0
        self._count_known_at = now
        self._arrivals_counted_from = now
        self._frames_since_start = 0
        self._next_int_status_at = now + INT_STATUS_EVERY_S
        self._last_timestamp = None
        self._delivered_until = now

    def _configuration_drift(self) -> list[str]:
        """What of the configuration no longer reads back as written (3-4 transactions)."""
        self.counters.config_checks += 1
        first = min(r for r in self._expected if r <= reg.Register.ACCEL_CONFIG2)
        last = max(r for r in self._expected if r <= reg.Register.ACCEL_CONFIG2)
        block = self._read_block(first, last - first + 1)
        values = dict(zip(range(first, last + 1), block, strict=True))
        values[reg.Register.FIFO_EN] = self._read_byte(reg.Register.FIFO_EN)
        user_ctrl, pwr_mgmt_1 = self._read_block(reg.Register.USER_CTRL, 2)
        values[reg.Register.USER_CTRL] = user_ctrl
        values[reg.Register.PWR_MGMT_1] = pwr_mgmt_1
        return [
            f"{reg.Register(r).name} reads {values[r]:#04x}, was set to {v:#04x}"
            for r, v in sorted(self._expected.items())
            if values.get(r) != v
        ]

    # -- the FIFO read --------------------------------------------------------------------

    def _frames_certainly_in_fifo(self, now: float) -> int:
        if self._safe_rate_hz is not None:
            slow_rate = self._safe_rate_hz * (1.0 - RATE_MARGIN_MEASURED)
        else:
            slow_rate = self._rate_hz * (1.0 - RATE_MARGIN_UNMEASURED)
        arrived = math.floor((now - self._arrivals_counted_from) * slow_rate) - SAFETY_SAMPLES
        frames = self.part.fifo_bytes // reg.SAMPLE_BYTES
        return min(frames, self._leftover_samples + max(0, arrived))

    def _read_fifo(self, exact: bool) -> SensorBlock:
        read_at = self._clock.monotonic()
        # Frames that have certainly arrived since the last count, by the chip's own rate:
        # a read that finds far fewer has a chip that stopped (a silent reset).
        arrived_since_count = self._frames_certainly_in_fifo(read_at) - self._leftover_samples
        # INT_STATUS on its own comes after the FIFO bytes (the module's docstring says why),
        # and never on a window's read, whose block the motor waits for.
        status_after = (
            not exact and not self._status_with_count and read_at >= self._next_int_status_at
        )
        if self._burst_proven and not exact:
            wanted = self._frames_certainly_in_fifo(read_at)
            length = 2 + wanted * reg.SAMPLE_BYTES
            status = 0
            if self._status_with_count:
                status, answer = self._status_and_fifo_read(length)
            else:
                answer = self._burst_read(reg.Register.FIFO_COUNTH, length)
            count = (answer[0] << 8) | answer[1]
            payload = memoryview(answer)[2:]
            latched_by = max(
                read_at, self._clock.monotonic() - self._wire_seconds(len(payload))
            )
            # The overflow bit came with the count: the bytes read beside it are not trusted.
            if reg.INT_STATUS_FIFO_OFLOW_INT.extract(status):
                return self._overflow("INT_STATUS has FIFO_OFLOW_INT set")
        else:
            count, read_at, status, latched_by = self._fresh_count(read_at)
            wanted = min(count, self.part.fifo_bytes) // reg.SAMPLE_BYTES
            wanted = min(wanted, I2C_MAX_MESSAGE_BYTES // reg.SAMPLE_BYTES)
            if reg.INT_STATUS_FIFO_OFLOW_INT.extract(status):
                return self._overflow("INT_STATUS has FIFO_OFLOW_INT set")
            if count >= self.part.fifo_bytes:
                return self._overflow(f"FIFO_COUNT {count} of {self.part.fifo_bytes} bytes")
            payload = memoryview(self._fifo_data(wanted * reg.SAMPLE_BYTES))
        # The count was latched after read_at and by latched_by: the next guess counts from
        # latched_by.
        self._count_known_at = latched_by
        self.counters.reads += 1
        # Bytes are dropped only from a full FIFO, and it stays full until read: a count of
        # the FIFO's size is an overflow since the last read, a count below it is none.
        if count >= self.part.fifo_bytes:
            return self._overflow(f"FIFO_COUNT {count} of {self.part.fifo_bytes} bytes")
        if status_after:
            self._next_int_status_at = read_at + INT_STATUS_EVERY_S
            if reg.INT_STATUS_FIFO_OFLOW_INT.extract(self._read_byte(reg.Register.INT_STATUS)):
                return self._overflow("INT_STATUS has FIFO_OFLOW_INT set")
        in_fifo = count // reg.SAMPLE_BYTES
        if in_fifo < wanted:
            # Bytes past the count were not whole frames: the stream may be misaligned.
            return self._short_delivery(f"FIFO held {in_fifo} samples, {wanted} were read")
        new_frames = in_fifo - self._leftover_samples
        if new_frames > 0:
            # A count that found nothing new leaves the evidence to add up: reads closer
            # together than the frames a short delivery needs (a window read retried every two
            # periods) would otherwise never see a stopped chip.
            self._arrivals_counted_from = latched_by
        # Since the FIFO started, at the nominal rate less the unmeasured margin: after a
        # while on a chip that runs fast this promises nothing (more came than it promised),
        # so the frames certainly arrived since the last count promise too.
        promised = max(
            arrived_since_count,
            (read_at - self._fifo_started_at) * self._rate_hz * (1.0 - RATE_MARGIN_UNMEASURED)
            - self._frames_since_start
            - SAFETY_SAMPLES,
        )
        self._frames_since_start += new_frames
        self._learn_rate(read_at)
        self._leftover_samples = in_fifo - wanted
        if promised >= SHORT_DELIVERY_MIN_FRAMES and new_frames < SHORT_DELIVERY_SHARE * promised:
            drift = self._configuration_drift()
            if drift:
                return self._reinitialise(drift)
        payload = payload[: wanted * reg.SAMPLE_BYTES]
        left_behind = self._left_behind_to_read(read_at, in_fifo)
        if left_behind:
            # The count promised these whole frames, the oldest in the FIFO, right behind.
            payload = memoryview(bytes(payload) + self._fifo_data(left_behind * reg.SAMPLE_BYTES))
            wanted += left_behind
            self._leftover_samples -= left_behind
        if wanted == 0:
            return SensorBlock.empty()
        samples = raw_to_si(payload, self._scale)
        # The newest frame at the count was sampled within the period before it: centre it.
        period = 1.0 / self.measured_rate_hz
        newest_read = read_at - (self._leftover_samples + 0.5) * period
        timestamps = self._stamp(wanted, newest_read, period)
        block = SensorBlock(timestamps, samples, self._pending_lost, self._pending_gap)
        self._pending_lost = 0
        self._pending_gap = False
        self._last_timestamp = float(timestamps[-1])
        self._delivered_until = self._last_timestamp
        self.counters.samples += wanted
        return block

    def _left_behind_to_read(self, read_at: float, in_fifo: int) -> int:
        """Frames a combined read left in the FIFO that are worth one more transaction now
        (LEFT_BEHIND_READ_SHARE); none where the count is so old that the FIFO may have filled
        since it (then the next read's count tells)."""
        frames = self.part.fifo_bytes // reg.SAMPLE_BYTES
        limit = LEFT_BEHIND_READ_SHARE * (1.0 - FIFO_FILL_TARGET) * frames
        if self._leftover_samples <= limit:
            return 0
        if self._may_have_filled_since(read_at, in_fifo * reg.SAMPLE_BYTES):
            return 0
        return min(self._leftover_samples, I2C_MAX_MESSAGE_BYTES // reg.SAMPLE_BYTES)

    def _fresh_count(self, read_at: float) -> tuple[int, float, int, float]:
        """FIFO_COUNT, read again while the host took so long after it (a stall between two
        transactions) that the FIFO may have filled up meanwhile: its oldest bytes, and the
        frames' alignment, would then be gone before the data read. (count, latched after,
        INT_STATUS where it came with the first count, else 0; latched by)"""
        status = 0
        for attempt in range(3):
            if attempt == 0 and self._status_with_count:
                status, answer = self._status_and_fifo_read(2)
                high, low = answer[0], answer[1]
                if reg.INT_STATUS_FIFO_OFLOW_INT.extract(status):
                    return (high << 8) | low, read_at, status, self._clock.monotonic()
            else:
                high, low = self._read_block(reg.Register.FIFO_COUNTH, 2)
            latched_by = self._clock.monotonic()
            count = (high << 8) | low
            if not self._may_have_filled_since(read_at, count):
                break
            read_at = self._clock.monotonic()
        return count, read_at, status, latched_by

    def _may_have_filled_since(self, read_at: float, count: int) -> bool:
        """Whether a FIFO that held ``count`` bytes at ``read_at`` may be full by now, at the
        chip's rate CHIP_FAST_HEADROOM fast (its oldest bytes, and the frames' alignment,
        then gone)."""
        fast_rate = self.measured_rate_hz * (1.0 + CHIP_FAST_HEADROOM)
        room_s = (self.part.fifo_bytes - count) / reg.SAMPLE_BYTES / fast_rate
        return self._clock.monotonic() - read_at >= room_s

    def _wire_seconds(self, data_bytes: int) -> float:
        """The least time ``data_bytes`` take on the wire."""
        bus_hz = self.bus_clock_hz or self._settings.bus_hz
        return data_bytes * BITS_PER_BUS_BYTE / (bus_hz * BUS_CLOCK_FAST_MARGIN)

    def _learn_rate(self, read_at: float) -> None:
        """The chip's rate from the frames counted since the FIFO started. The count was
        latched between read_at and _count_known_at, the FIFO started within a known span:
        the middles give the rate (timestamps); the widest span a lower bound (the combined
        read's guess, which must never be high, even when the host was descheduled between
        noting the time and the transaction)."""
        elapsed = 0.5 * (read_at + self._count_known_at) - self._fifo_started_at
        if elapsed >= RATE_LEARN_S and self._frames_since_start > 0:
            self._measured_rate_hz = self._frames_since_start / elapsed
            widest = self._count_known_at - self._fifo_started_after
            self._safe_rate_hz = self._frames_since_start / widest

    def _stamp(self, n: int, newest: float, period: float) -> np.ndarray:
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

    # -- faults ---------------------------------------------------------------------------

    def _overflow(self, evidence: str) -> SensorBlock:
        self.counters.overflows += 1
        lost = self._restart_after_loss()
        self._log.warning(
            "%s: FIFO overflow (%s); FIFO reset, about %d samples lost",
            self.where,
            evidence,
            lost,
        )
        return SensorBlock.empty()

    def _short_delivery(self, what: str) -> SensorBlock:
        drift = self._configuration_drift()
        if drift:
            return self._reinitialise(drift)
        self.counters.misalignments += 1
        lost = self._restart_after_loss()
        self._log.warning(
            "%s: %s; FIFO reset to keep frames aligned, about %d samples lost",
            self.where,
            what,
            lost,
        )
        return SensorBlock.empty()

    def _reinitialise(self, drift: list[str]) -> SensorBlock:
        self.counters.resets_detected += 1
        lost_from = self._delivered_until
        self._configure()
        lost = self._mark_gap(self._samples_since(lost_from))
        self._log.warning(
            "%s: the chip lost its configuration (%s): a reset; re-initialised, about %d "
            "samples lost",
            self.where,
            "; ".join(drift),
            lost,
        )
        return SensorBlock.empty()

    def _samples_since(self, moment: float) -> int:
        return max(0, round((self._delivered_until - moment) * self.measured_rate_hz))

    def _restart_after_loss(self) -> int:
        """Reset the FIFO and count what was produced since the last delivered sample."""
        lost_from = self._delivered_until
        self._restart_fifo()
        return self._mark_gap(self._samples_since(lost_from))

    def _mark_gap(self, lost: int) -> int:
        self._pending_lost += lost
        self._pending_gap = True
        self.counters.lost += lost
        self.counters.gaps += 1
        return lost

    # -- recovery -----------------------------------------------------------------------

    def _begin_recovery(self, error: OSError) -> None:
        self.counters.i2c_errors += 1
        self._recovering = True
        self._backoff_s = RECOVERY_BACKOFF_INITIAL_S
        self._log.warning(
            "%s: I2C error errno %s (%s); recovering", self.where, error.errno, error.strerror
        )

    def _attempt_recovery(self) -> SensorBlock:
        """Once the chip answers: its configuration intact, a FIFO reset (a failed read may
        have popped bytes); else a full re-initialise. Either way one gap."""
        self._clock.sleep(self._backoff_s)
        lost_from = self._delivered_until
        try:
            self._probe()
            drift = self._configuration_drift()
            if drift:
                self.counters.resets_detected += 1
                self._configure()
            else:
                self._restart_fifo()
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
        lost = self._mark_gap(self._samples_since(lost_from))
        self._log.warning(
            "%s: the chip answers again and is %s; about %d samples lost",
            self.where,
            "re-initialised (it had reset)" if drift else "resynchronised (FIFO reset)",
            lost,
        )
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

    def _write_block(self, register: int, values: list[int]) -> None:
        self._bus.write_i2c_block_data(self._address, register, values)
        self.counters.transactions += 1
        self.counters.bus_bytes += 2 + len(values)  # address+W, register, data

    def _read_block(self, register: int, length: int) -> list[int]:
        values = self._bus.read_i2c_block_data(self._address, register, length)
        self.counters.transactions += 1
        self.counters.bus_bytes += 3 + length  # address+W, register, address+R, data
        return [int(v) for v in values]

    def _fifo_data(self, length: int) -> bytes:
        """``length`` bytes from FIFO_R_W (the pointer stays there), one transaction."""
        if length == 0:
            return b""
        return self._burst_read(reg.Register.FIFO_R_W, length)

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

    def _status_and_fifo_read(self, length: int) -> tuple[int, bytes]:
        """INT_STATUS, then ``length`` bytes from FIFO_COUNTH on, in one transaction:
        two pointer writes, two reads, repeated STARTs, one STOP. (status, bytes)"""
        status = i2c_msg.read(self._address, 1)
        fifo = i2c_msg.read(self._address, length)
        self._bus.i2c_rdwr(
            i2c_msg.write(self._address, [reg.Register.INT_STATUS]),
            status,
            i2c_msg.write(self._address, [reg.Register.FIFO_COUNTH]),
            fifo,
        )
        self.counters.transactions += 1
        # address+W, register, address+R, status; address+W, register, address+R, data
        self.counters.bus_bytes += 3 + 1 + 3 + length
        return bytes(status)[0], bytes(fifo)

    def _burst_read(self, register: int, length: int) -> bytes:
        """One combined transaction: write ``register``, repeated start, read ``length``."""
        write = i2c_msg.write(self._address, [register])
        read = i2c_msg.read(self._address, length)
        self._bus.i2c_rdwr(write, read)
        self.counters.transactions += 1
        self.counters.bus_bytes += 3 + length  # address+W, register, address+R, data
        return bytes(read)


__all__ = [
    "BURST",
    "COUNT_THEN_DATA",
    "MPU6050",
    "DriverCounters",
    "SensorBlock",
    "bus_can_carry",
    "bus_clock_from_sysfs",
    "nearest_sample_rate",
    "poll_interval_for",
    "raw_to_si",
    "si_scale",
]
