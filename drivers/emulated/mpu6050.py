"""A register-level MPU6050 as an I2C target, checked against the datasheet, not a driver.

Sources: InvenSense PS-MPU-6000A (product specification) and RM-MPU-6000A rev 4.2 (register
map). What the chip does here, and where the documents say so:

* Reset values: 0x00 everywhere except PWR_MGMT_1 = 0x40 (asleep) and WHO_AM_I = 0x68
  (RM section 3). DEVICE_RESET resets every register and clears itself (RM 4.28).
* I2C access (PS 9.3): a write sets the register pointer, then writes with auto-increment;
  a read continues from the pointer with auto-increment, except that FIFO_R_W (0x74) does
  not increment: every byte read there pops the FIFO (RM 4.31).
* Samples at gyro output rate / (1 + SMPLRT_DIV), the gyro output rate being 8 kHz when
  DLPF_CFG is 0 or 7 and 1 kHz otherwise (RM 4.2). The data registers 0x3B-0x48 are updated
  at the sample rate; the user-facing copy is refreshed while the interface is idle, so one
  burst read sees one sampling instant (RM 4.17-4.19): here, at the start of a transaction.
* FIFO (RM 4.6, 4.31): 1024 bytes; per sample the enabled sensors' registers in register
  order (accel, temp, gyro x/y/z); on overflow the OLDEST bytes are lost, new data is written
  and FIFO_OFLOW_INT is set. Bytes, not frames, are lost: 1024 is not a multiple of a 12-byte
  frame, so after an overflow the FIFO no longer starts on a frame boundary, as on the chip.
  Reading an empty FIFO returns the last byte previously read from it.
* FIFO_COUNT (RM 4.30): big-endian; both bytes are latched when FIFO_COUNT_H is read, so
  reading only FIFO_COUNT_L returns a stale value.
* INT_STATUS (RM 4.16): cleared when read (or on any read when INT_PIN_CFG.INT_RD_CLEAR).
* Temperature (RM 4.18): degC = TEMP_OUT / 340 + 36.53.

What a chip on a wearable does that an ideal one does not (the "honest" part):

* The sample clock is the chip's own (PS 6.4: the internal oscillator or the gyro PLL, a few
  per cent off nominal and drifting with temperature): ``clock_offset`` (a fraction, +0.05 is
  5 % fast) and ``clock_drift_per_s`` (fraction per second of run time) set it.
* A frame enters the FIFO byte by byte over ``frame_write_s``, so a FIFO_COUNT latched while
  a frame is being written includes part of it.
* FIFO capacity by part (the Linux inv_mpu6050 driver's hw_info table): 1024 bytes for the
  MPU-6000/6050/9150 (WHO_AM_I 0x68), 512 for the MPU-6500/9250/9255 (0x70, 0x71, 0x73),
  4096 for the ICM-20689 (0x98); 0x72 is not in the kernel's table: 512, the smallest.
* DEVICE_RESET takes ``reset_s`` (PS: register access after 100 ms at most; the kernel waits
  INV_MPU6050_POWER_UP_TIME, 100 ms): the chip does not acknowledge until it is done.
* After wake the gyro settles for ``settle_s`` (PS 6.1: gyro start-up time 30 ms typical; the
  kernel skips INV_MPU6050_GYRO_STARTUP_TIME, 60 ms): those samples carry a decaying gyro
  offset and are marked unsettled in the ground truth.
* ``brown_out()`` resets the chip silently (power-on reset values, asleep, nothing NACKs), as a
  supply dip beside a vibration motor does.
* ACCEL_CONFIG2 (0x1D) exists on the 6500-class parts (kernel: INV_MPU6500_REG_ACCEL_CONFIG_2);
  here it is plain storage on every part.
* The chip's own computing (the wearer's motion for every sample due: about a millisecond of
  Python a transaction) is silicon's work, done in no time: on a :class:`ScaledClock` the
  clock stands still meanwhile. Counted, it would be ``speed`` times the wearer's time, at
  speed 10 an eighth of what the FIFO holds at 1 kHz for every transaction.
* ``record_truth`` keeps every sample the chip produced (time, raw accel+gyro, settled), so a
  bench can compare each delivered sample with what the chip really sampled.

Not emulated: the DLPF's filtering (DLPF_CFG only selects the gyro output rate), CYCLE and
standby modes, TEMP_DIS, self-test, motion interrupts, FSYNC, the auxiliary I2C master, DMP.
Registers without behaviour here are plain storage.

``strict=True`` enforces two preconditions the register map states but real chips are
believed to tolerate: FIFO_RESET acts only when written while USER_CTRL.FIFO_EN is 0 (RM 4.29),
and INT_STATUS bits are set only for interrupts enabled in INT_ENABLE ("sets to 1 when a ...
interrupt is generated"). A driver that passes in strict mode works either way.
"""

from __future__ import annotations

import math
import threading
from typing import Protocol

import numpy as np

from odar.drivers.clock import Clock
from odar.drivers.emulated.clock import computing_takes_no_time
from odar.errors import EmulationError

STANDARD_GRAVITY = 9.80665  # m/s^2 per g
REGISTER_COUNT = 128
FIFO_CAPACITY_BYTES = 1024

#: (part name, FIFO bytes) by WHO_AM_I, from the Linux inv_mpu6050 driver's hw_info table;
#: 0x72 is sold as "MPU6050" but is in no public table: the smallest FIFO is assumed.
PARTS_BY_WHO_AM_I: dict[int, tuple[str, int]] = {
    0x68: ("MPU-6050", 1024),
    0x70: ("MPU-6500", 512),
    0x71: ("MPU-9250", 512),
    0x72: ("unlisted 6500-class part", 512),
    0x73: ("MPU-9255", 512),
    0x98: ("ICM-20689", 4096),
}
#: Gyro start-up time after wake (PS-MPU-6000A 6.1: 30 ms typical).
GYRO_SETTLE_S = 0.030
#: DEVICE_RESET until registers answer again (PS: within 100 ms; assumed 50 ms here).
DEVICE_RESET_S = 0.050
#: Time for one frame to enter the FIFO; the documents give none (an assumption: 50 us).
FRAME_WRITE_S = 50e-6
#: Gyro offset at wake while settling, in LSB, decaying with this time constant.
SETTLE_OFFSET_LSB = 3000.0
SETTLE_TIME_CONSTANT_S = 0.010

# Register addresses (RM section 3).
SMPLRT_DIV = 0x19
CONFIG = 0x1A
GYRO_CONFIG = 0x1B
ACCEL_CONFIG = 0x1C
ACCEL_CONFIG2 = 0x1D
FIFO_EN = 0x23
I2C_MST_STATUS = 0x36
INT_PIN_CFG = 0x37
INT_ENABLE = 0x38
INT_STATUS = 0x3A
ACCEL_XOUT_H = 0x3B
TEMP_OUT_H = 0x41
GYRO_XOUT_H = 0x43
EXT_SENS_DATA_23 = 0x60
SIGNAL_PATH_RESET = 0x68
USER_CTRL = 0x6A
PWR_MGMT_1 = 0x6B
FIFO_COUNTH = 0x72
FIFO_COUNTL = 0x73
FIFO_R_W = 0x74
WHO_AM_I = 0x75

# Bits.
INT_RD_CLEAR = 0x10  # INT_PIN_CFG
FIFO_OFLOW_INT = 0x10  # INT_STATUS and, as FIFO_OFLOW_EN, INT_ENABLE
DATA_RDY_INT = 0x01
USER_CTRL_FIFO_EN = 0x40
USER_CTRL_FIFO_RESET = 0x04
USER_CTRL_I2C_MST_RESET = 0x02
USER_CTRL_SIG_COND_RESET = 0x01
DEVICE_RESET = 0x80  # PWR_MGMT_1
SLEEP = 0x40
DLPF_CFG_MASK = 0x07  # CONFIG bits 2:0
FULL_SCALE_SHIFT = 3  # FS_SEL / AFS_SEL, bits 4:3
TEMP_FIFO_EN = 0x80
XG_FIFO_EN = 0x40
YG_FIFO_EN = 0x20
ZG_FIFO_EN = 0x10
ACCEL_FIFO_EN = 0x08

RESET_VALUES = {PWR_MGMT_1: 0x40, WHO_AM_I: 0x68}
READ_ONLY = frozenset(
    {I2C_MST_STATUS, INT_STATUS, FIFO_COUNTH, FIFO_COUNTL, WHO_AM_I}
    | set(range(ACCEL_XOUT_H, EXT_SENS_DATA_23 + 1))
)

ACCEL_LSB_PER_G = (16384.0, 8192.0, 4096.0, 2048.0)  # by AFS_SEL
GYRO_LSB_PER_DPS = (131.0, 65.5, 32.8, 16.4)  # by FS_SEL
TEMP_LSB_PER_DEGC = 340.0
TEMP_OFFSET_DEGC = 36.53

#: Columns of a raw sample, in register order 0x3B..0x48: ax ay az temp gx gy gz.
_FIFO_COLUMNS_BY_BIT = (
    (ACCEL_FIFO_EN, (0, 1, 2)),
    (TEMP_FIFO_EN, (3,)),
    (XG_FIFO_EN, (4,)),
    (YG_FIFO_EN, (5,)),
    (ZG_FIFO_EN, (6,)),
)
# Samples due are counted with floor(); this keeps t = k / rate on the boundary itself.
_DUE_EPSILON = 1e-6


class MotionSource(Protocol):
    """What moves the chip: SI values at the requested instants."""

    def read(self, times: np.ndarray) -> np.ndarray:
        """(n,) seconds, increasing across calls -> (n, 6) float64: ax ay az [m/s^2, gravity
        included], gx gy gz [rad/s]."""
        ...


def si_to_raw(samples: np.ndarray, afs_sel: int, fs_sel: int, temperature_c: float) -> np.ndarray:
    """(n, 6) SI -> (n, 7) int16 in register order, rounded and saturated like the ADC."""
    raw = np.empty((samples.shape[0], 7), dtype=np.float64)
    raw[:, 0:3] = samples[:, 0:3] * (ACCEL_LSB_PER_G[afs_sel] / STANDARD_GRAVITY)
    raw[:, 3] = (temperature_c - TEMP_OFFSET_DEGC) * TEMP_LSB_PER_DEGC
    raw[:, 4:7] = np.degrees(samples[:, 3:6]) * GYRO_LSB_PER_DPS[fs_sel]
    np.rint(raw, out=raw)
    np.clip(raw, -32768, 32767, out=raw)
    return raw.astype(np.int16)


class GroundTruth:
    """Every sample the chip produced, in order: host time, raw accel xyz + gyro xyz (int16,
    what a frame holds when accel and gyro are enabled) and settled (False while the gyro was
    starting up)."""

    def __init__(self) -> None:
        self._times: list[np.ndarray] = []
        self._raw: list[np.ndarray] = []
        self._settled: list[np.ndarray] = []

    def record(self, times: np.ndarray, raw: np.ndarray, settled: np.ndarray) -> None:
        self._times.append(np.array(times, dtype=np.float64))
        self._raw.append(np.array(raw, dtype=np.int16))
        self._settled.append(np.array(settled, dtype=bool))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(times (n,), raw (n, 6) int16, settled (n,)) of every sample so far."""
        if not self._times:
            return np.empty(0), np.empty((0, 6), np.int16), np.empty(0, bool)
        return (
            np.concatenate(self._times),
            np.concatenate(self._raw),
            np.concatenate(self._settled),
        )

    def __len__(self) -> int:
        return sum(len(t) for t in self._times)


class EmulatedMPU6050:
    """The chip. Attach it to :class:`EmulatedSMBus`; it keeps time with *clock*."""

    def __init__(
        self,
        motion: MotionSource,
        clock: Clock,
        *,
        who_am_i: int = 0x68,
        temperature_c: float = 25.0,
        fifo_capacity: int | None = None,
        strict: bool = False,
        clock_offset: float = 0.0,
        clock_drift_per_s: float = 0.0,
        frame_write_s: float = FRAME_WRITE_S,
        settle_s: float = GYRO_SETTLE_S,
        reset_s: float = DEVICE_RESET_S,
        record_truth: bool = False,
    ) -> None:
        if not -0.5 < clock_offset < 0.5:
            raise EmulationError(
                f"EmulatedMPU6050: clock_offset={clock_offset!r} is not in (-0.5, 0.5)"
            )
        for name, value in (
            ("frame_write_s", frame_write_s),
            ("settle_s", settle_s),
            ("reset_s", reset_s),
        ):
            if not value >= 0:
                raise EmulationError(f"EmulatedMPU6050: {name}={value!r} must be >= 0")
        self.motion = motion
        self.clock = clock
        self.temperature_c = float(temperature_c)
        self.strict = strict
        self._who_am_i = self._checked_byte(who_am_i, "who_am_i")
        part = PARTS_BY_WHO_AM_I.get(self._who_am_i, ("unknown part", FIFO_CAPACITY_BYTES))
        self.part_name = part[0]
        self.fifo_capacity = int(fifo_capacity) if fifo_capacity is not None else part[1]
        self.clock_offset = float(clock_offset)
        self.clock_drift_per_s = float(clock_drift_per_s)
        self.frame_write_s = float(frame_write_s)
        self.settle_s = float(settle_s)
        self.reset_s = float(reset_s)
        self.truth: GroundTruth | None = GroundTruth() if record_truth else None
        self._created_at = clock.monotonic()
        self._resetting_until = -math.inf
        self._woke_at = -math.inf
        self._tail = b""  # bytes of the newest frame not yet in the FIFO
        self._tail_started = 0.0
        #: Silent resets (brown-outs) so far.
        self.brown_outs = 0
        self._lock = threading.RLock()
        self._disconnected_until = -math.inf
        self._garbage_until = -math.inf
        self._garbage = np.random.default_rng(0)
        #: Samples the chip has produced, and FIFO bytes lost to overflow, since creation.
        self.samples_produced = 0
        self.fifo_bytes_lost = 0
        self._now = clock.monotonic()
        self._computing = computing_takes_no_time(clock)
        self._transaction_at: float | None = None
        self._power_on_reset()

    # ------------------------------------------------------------------ I2C target

    def begin_transaction(self, moment: float) -> None:
        """The bus starts a transaction that reaches the chip at ``moment``: all its messages
        are seen then. On a real-time clock the emulator's own computing for the first message
        (the wearer's motion for every sample due) takes milliseconds; a chip latches its
        FIFO_COUNT microseconds into the transaction, not after that."""
        with self._lock:
            self._transaction_at = moment

    def end_transaction(self) -> None:
        with self._lock:
            self._transaction_at = None

    def acknowledge(self) -> bool:
        with self._lock:
            moment = self._transaction_at
            self._now = self.clock.monotonic() if moment is None else max(moment, self._now)
            self._catch_up(self._now)
            return self._now >= self._disconnected_until and self._now >= self._resetting_until

    def write(self, data: bytes) -> None:
        with self._lock:
            if not data:
                return
            self._pointer = data[0] & 0x7F  # 128 registers; higher addresses alias
            for value in data[1:]:
                self._write_register(self._pointer, value)
                if self._pointer != FIFO_R_W:
                    self._pointer = (self._pointer + 1) % REGISTER_COUNT

    def read(self, length: int) -> bytes:
        with self._lock:
            out = bytearray()
            while len(out) < length:
                if self._pointer == FIFO_R_W:
                    out += self._pop_fifo(length - len(out))
                    break
                out.append(self._read_register(self._pointer))
                self._pointer = (self._pointer + 1) % REGISTER_COUNT
            if self._registers[INT_PIN_CFG] & INT_RD_CLEAR:
                self._int_status = 0
            return bytes(out)

    # ------------------------------------------------------------------ faults and probes

    def disconnect(self, seconds: float, *, power_loss: bool = False) -> None:
        """NACK every transaction for *seconds* of clock time. A loose wire (default) keeps
        the chip running, so its FIFO overflows; ``power_loss`` resets it to power-up state
        (asleep, reset values), as after a brown-out."""
        if not seconds >= 0:
            raise EmulationError(f"EmulatedMPU6050.disconnect: seconds={seconds!r} must be >= 0")
        with self._lock:
            now = self.clock.monotonic()
            self._catch_up(now)
            self._now = now
            self._disconnected_until = now + seconds
            if power_loss:
                self._power_on_reset()

    def brown_out(self) -> None:
        """A silent power-on reset: registers to their reset values, asleep, FIFO empty; the
        chip keeps acknowledging (nothing tells the host but the registers)."""
        with self._lock:
            now = self.clock.monotonic()
            self._catch_up(now)
            self._now = now
            self._power_on_reset()
            self.brown_outs += 1

    def inject_who_am_i(self, value: int) -> None:
        """Answer WHO_AM_I with *value* from now on (clones: 0x70 MPU-6500, 0x98; garbage)."""
        with self._lock:
            self._who_am_i = self._checked_byte(value, "WHO_AM_I")
            self._registers[WHO_AM_I] = self._who_am_i

    def inject_garbage(self, seconds: float, *, seed: int = 0) -> None:
        """Samples produced in the next *seconds* are random int16 (data registers and
        FIFO), like a chip with a broken ADC or a corrupted bus."""
        if not seconds >= 0:
            raise EmulationError(
                f"EmulatedMPU6050.inject_garbage: seconds={seconds!r} must be >= 0"
            )
        with self._lock:
            now = self.clock.monotonic()
            self._catch_up(now)
            self._garbage_until = now + seconds
            self._garbage = np.random.default_rng(seed)

    @property
    def fifo_count(self) -> int:
        """Bytes in the FIFO as of the last bus access (a probe: no latching, no catch-up)."""
        with self._lock:
            return len(self._fifo)

    @property
    def fifo_bytes_entering(self) -> int:
        """Bytes of the newest frame not yet in the FIFO as of the last bus access (a probe):
        the chip has taken that sample, its frame enters byte by byte over frame_write_s."""
        with self._lock:
            return len(self._tail)

    @property
    def sample_rate_hz(self) -> float:
        with self._lock:
            return self._sample_rate_hz()

    def peek(self, register: int) -> int:
        """A register as of the last bus access, without a bus read's side effects."""
        with self._lock:
            if register == INT_STATUS:
                return self._int_status
            return self._registers[register & 0x7F]

    # ------------------------------------------------------------------ registers

    @staticmethod
    def _checked_byte(value: int, what: str) -> int:
        if not 0 <= value <= 0xFF:
            raise EmulationError(f"EmulatedMPU6050: {what}={value!r} is not a byte")
        return int(value)

    def _power_on_reset(self) -> None:
        # A bytearray: scalar register access is several times faster than with numpy.
        self._registers = bytearray(REGISTER_COUNT)
        for register, value in RESET_VALUES.items():
            self._registers[register] = value
        self._registers[WHO_AM_I] = self._who_am_i
        self._fifo = bytearray()
        self._tail = b""
        self._last_fifo_byte = 0
        self._count_latch = 0
        self._int_status = 0
        self._pointer = 0
        self._restart_sampling()

    def _restart_sampling(self) -> None:
        # The sample grid restarts whenever the chip wakes or its rate changes.
        self._anchor = self._now
        self._produced_since_anchor = 0
        self._phase = 0.0  # samples since the anchor, on the chip's own clock
        self._phase_at = self._now

    def _read_register(self, register: int) -> int:
        if register == INT_STATUS:
            value, self._int_status = self._int_status, 0
            return value
        if register == FIFO_COUNTH:
            self._count_latch = len(self._fifo)
            return self._count_latch >> 8
        if register == FIFO_COUNTL:
            return self._count_latch & 0xFF
        return self._registers[register]

    def _write_register(self, register: int, value: int) -> None:
        if register in READ_ONLY:
            return
        if register == FIFO_R_W:
            self._push_fifo(bytes([value]))
            return
        if register == PWR_MGMT_1:
            self._write_pwr_mgmt_1(value)
            return
        if register == USER_CTRL:
            self._write_user_ctrl(value)
            return
        if register == SIGNAL_PATH_RESET:
            # Its reset bits clear themselves; RM 4.26: it does not clear the data registers.
            self._registers[register] = value & 0xF8
            return
        rate_before = self._sample_rate_hz()
        self._registers[register] = value
        if register in (SMPLRT_DIV, CONFIG) and self._sample_rate_hz() != rate_before:
            self._restart_sampling()

    def _write_pwr_mgmt_1(self, value: int) -> None:
        if value & DEVICE_RESET:
            self._power_on_reset()
            self._resetting_until = self._now + self.reset_s
            return
        was_asleep = self._asleep()
        self._registers[PWR_MGMT_1] = value
        if was_asleep and not self._asleep():
            self._restart_sampling()
            self._woke_at = self._now

    def _write_user_ctrl(self, value: int) -> None:
        self_clearing = USER_CTRL_FIFO_RESET | USER_CTRL_I2C_MST_RESET | USER_CTRL_SIG_COND_RESET
        self._registers[USER_CTRL] = value & ~self_clearing & 0xFF
        if value & USER_CTRL_FIFO_RESET and not (self.strict and value & USER_CTRL_FIFO_EN):
            self._fifo.clear()
            self._tail = b""
        if value & USER_CTRL_SIG_COND_RESET:
            self._registers[ACCEL_XOUT_H : GYRO_XOUT_H + 6] = bytes(14)

    # ------------------------------------------------------------------ FIFO

    def _push_fifo(self, data: bytes) -> None:
        self._fifo += data
        excess = len(self._fifo) - self.fifo_capacity
        if excess > 0:
            del self._fifo[:excess]  # the oldest bytes go (RM 4.31)
            self.fifo_bytes_lost += excess
            self._raise_interrupt(FIFO_OFLOW_INT)

    def _pop_fifo(self, length: int) -> bytes:
        taken = bytes(self._fifo[:length])
        del self._fifo[:length]
        if taken:
            self._last_fifo_byte = taken[-1]
        # Empty FIFO: the last byte read from it, repeated (RM 4.31).
        return taken + bytes([self._last_fifo_byte]) * (length - len(taken))

    def _fifo_columns(self) -> list[int]:
        if not self._registers[USER_CTRL] & USER_CTRL_FIFO_EN:
            return []
        enabled = self._registers[FIFO_EN]
        return [column for bit, cols in _FIFO_COLUMNS_BY_BIT if enabled & bit for column in cols]

    def _raise_interrupt(self, bit: int) -> None:
        if not self.strict or self._registers[INT_ENABLE] & bit:
            self._int_status |= bit

    # ------------------------------------------------------------------ sampling

    def _asleep(self) -> bool:
        return bool(self._registers[PWR_MGMT_1] & SLEEP)

    def _sample_rate_hz(self) -> float:
        dlpf_cfg = self._registers[CONFIG] & DLPF_CFG_MASK
        gyro_output_hz = 8000.0 if dlpf_cfg in (0, 7) else 1000.0
        return gyro_output_hz / (1 + self._registers[SMPLRT_DIV])

    def _chip_rate_at(self, t: float) -> float:
        """Samples per host second at host time *t*: nominal, times the chip's clock error."""
        error = self.clock_offset + self.clock_drift_per_s * (t - self._created_at)
        return self._sample_rate_hz() * (1.0 + min(0.5, max(-0.5, error)))

    def _catch_up(self, now: float) -> None:
        """Produce, in one vectorised step, every sample due between the last access and now.
        On a scaled real-time clock this is silicon's work, done in no time: the clock stands
        still meanwhile (:meth:`ScaledClock.paused`)."""
        with self._computing():
            self._produce_due(now)

    def _produce_due(self, now: float) -> None:
        self._finish_tail(now)
        if self._asleep() or now <= self._phase_at:
            return
        # The chip's clock over the step: its rate at the middle of the step (drift is slow).
        rate = self._chip_rate_at(0.5 * (now + self._phase_at))
        phase_before, at_before = self._phase, self._phase_at
        self._phase = phase_before + (now - at_before) * rate
        self._phase_at = now
        due = math.floor(self._phase + _DUE_EPSILON)
        count = due - self._produced_since_anchor
        if count <= 0:
            return
        columns = self._fifo_columns()
        frame_bytes = 2 * len(columns)
        # Only the newest samples can still be seen: the FIFO's capacity and the registers.
        needed = min(count, self.fifo_capacity // frame_bytes + 2) if frame_bytes else 1
        if self.truth is not None:
            needed = count  # the ground truth wants every sample
        indices = np.arange(due - needed + 1, due + 1, dtype=np.float64)
        times = at_before + (indices - phase_before) / rate
        raw = self._sample(times)
        self._registers[ACCEL_XOUT_H : GYRO_XOUT_H + 6] = raw[-1].astype(">i2").tobytes()
        if self.truth is not None:
            settled = times >= self._woke_at + self.settle_s
            self.truth.record(times, raw[:, [0, 1, 2, 4, 5, 6]], settled)
        if frame_bytes:
            skipped_bytes = (count - needed) * frame_bytes
            self.fifo_bytes_lost += skipped_bytes
            if skipped_bytes:
                self._raise_interrupt(FIFO_OFLOW_INT)
            frames = raw[:, columns].astype(">i2").tobytes()
            # The newest frame may still be entering the FIFO, byte by byte.
            written = self._bytes_written(now - float(times[-1]), frame_bytes)
            cut = len(frames) - frame_bytes + written
            self._push_fifo(frames[:cut])
            self._tail, self._tail_started = frames[cut:], float(times[-1])
        self._raise_interrupt(DATA_RDY_INT)
        self._produced_since_anchor = due
        self.samples_produced += count

    def _bytes_written(self, since_start: float, frame_bytes: int) -> int:
        if self.frame_write_s <= 0 or since_start >= self.frame_write_s:
            return frame_bytes
        return min(frame_bytes, 1 + int(since_start / self.frame_write_s * frame_bytes))

    def _finish_tail(self, now: float) -> None:
        if not self._tail:
            return
        frame_bytes = 2 * len(self._fifo_columns()) or len(self._tail)
        already = frame_bytes - len(self._tail)
        written = self._bytes_written(now - self._tail_started, frame_bytes) - already
        if written > 0:
            self._push_fifo(self._tail[:written])
            self._tail = self._tail[written:]

    def _sample_with_settling(self, times: np.ndarray, raw: np.ndarray) -> np.ndarray:
        since_wake = times - self._woke_at
        settling = since_wake < self.settle_s
        if settling.any():
            offset = SETTLE_OFFSET_LSB * np.exp(-since_wake[settling] / SETTLE_TIME_CONSTANT_S)
            gyro = raw[settling, 4:7].astype(np.float64) + offset[:, None]
            raw[settling, 4:7] = np.clip(np.rint(gyro), -32768, 32767).astype(np.int16)
        return raw

    def _sample(self, times: np.ndarray) -> np.ndarray:
        samples = np.asarray(self.motion.read(times), dtype=np.float64)
        if samples.shape != (times.size, 6):
            raise EmulationError(
                f"EmulatedMPU6050: motion source returned shape {samples.shape} for "
                f"{times.size} times; expected ({times.size}, 6)"
            )
        afs_sel = (self._registers[ACCEL_CONFIG] >> FULL_SCALE_SHIFT) & 0x03
        fs_sel = (self._registers[GYRO_CONFIG] >> FULL_SCALE_SHIFT) & 0x03
        raw = si_to_raw(samples, afs_sel, fs_sel, self.temperature_c)
        garbled = times < self._garbage_until
        if garbled.any():
            noise = self._garbage.integers(-32768, 32768, size=(int(garbled.sum()), 7))
            raw[garbled] = noise.astype(np.int16)
        return self._sample_with_settling(times, raw)
