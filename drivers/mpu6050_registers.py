"""The MPU-6050 register map as data, named as in InvenSense RM-MPU-6000A (rev 4.2).

Registers are addresses; bit fields are (name, register, bit offset, width) so that writing
one field can only ever touch its own bits of its own register. Drivers read-modify-write
through :meth:`BitField.insert` instead of composing register bytes by hand, which is how
a DLPF value once ended up in the wrong bits of CONFIG in a popular driver.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Register(IntEnum):
    """Register addresses (RM-MPU-6000A section 3, "Register Map")."""

    SMPLRT_DIV = 0x19
    CONFIG = 0x1A
    GYRO_CONFIG = 0x1B
    ACCEL_CONFIG = 0x1C
    ACCEL_CONFIG2 = 0x1D  # 6500-class parts only (MPU-6500 register map)
    FIFO_EN = 0x23
    INT_PIN_CFG = 0x37
    INT_ENABLE = 0x38
    INT_STATUS = 0x3A
    ACCEL_XOUT_H = 0x3B
    TEMP_OUT_H = 0x41
    GYRO_XOUT_H = 0x43
    GYRO_ZOUT_L = 0x48
    SIGNAL_PATH_RESET = 0x68
    USER_CTRL = 0x6A
    PWR_MGMT_1 = 0x6B
    PWR_MGMT_2 = 0x6C
    FIFO_COUNTH = 0x72
    FIFO_COUNTL = 0x73
    FIFO_R_W = 0x74
    WHO_AM_I = 0x75


@dataclass(frozen=True)
class BitField:
    """``width`` bits of ``register`` starting at bit ``offset`` (bit 0 = least significant)."""

    name: str
    register: Register
    offset: int
    width: int = 1

    def __post_init__(self) -> None:
        if not (self.offset >= 0 and self.width >= 1 and self.offset + self.width <= 8):
            raise ValueError(
                f"{self.name}: bits {self.offset}+{self.width} do not fit in an 8-bit register"
            )

    @property
    def mask(self) -> int:
        """The field's bits in place within the register byte."""
        return ((1 << self.width) - 1) << self.offset

    @property
    def max_value(self) -> int:
        return (1 << self.width) - 1

    def insert(self, register_value: int, field_value: int) -> int:
        """``register_value`` with this field set to ``field_value``; other bits unchanged."""
        if not 0 <= field_value <= self.max_value:
            raise ValueError(
                f"{self.register.name}.{self.name}: {field_value!r} does not fit in "
                f"{self.width} bit(s) (0-{self.max_value})"
            )
        return (register_value & ~self.mask & 0xFF) | (field_value << self.offset)

    def extract(self, register_value: int) -> int:
        """This field's value within ``register_value``."""
        return (register_value & self.mask) >> self.offset


# The RM reuses some bit names in several registers (FIFO_EN is both register 35 and a
# USER_CTRL bit), so the constants carry their register as a prefix; ``name`` stays the RM's.
SMPLRT_DIV = BitField("SMPLRT_DIV", Register.SMPLRT_DIV, 0, 8)

CONFIG_DLPF_CFG = BitField("DLPF_CFG", Register.CONFIG, 0, 3)
CONFIG_EXT_SYNC_SET = BitField("EXT_SYNC_SET", Register.CONFIG, 3, 3)

GYRO_CONFIG_FS_SEL = BitField("FS_SEL", Register.GYRO_CONFIG, 3, 2)
GYRO_CONFIG_ZG_ST = BitField("ZG_ST", Register.GYRO_CONFIG, 5)
GYRO_CONFIG_YG_ST = BitField("YG_ST", Register.GYRO_CONFIG, 6)
GYRO_CONFIG_XG_ST = BitField("XG_ST", Register.GYRO_CONFIG, 7)

ACCEL_CONFIG_AFS_SEL = BitField("AFS_SEL", Register.ACCEL_CONFIG, 3, 2)
#: 6500-class accelerometer low-pass filter, apart from the gyro's DLPF_CFG.
ACCEL_CONFIG2_A_DLPF_CFG = BitField("A_DLPF_CFG", Register.ACCEL_CONFIG2, 0, 3)
ACCEL_CONFIG2_ACCEL_FCHOICE_B = BitField("ACCEL_FCHOICE_B", Register.ACCEL_CONFIG2, 3)
ACCEL_CONFIG_ZA_ST = BitField("ZA_ST", Register.ACCEL_CONFIG, 5)
ACCEL_CONFIG_YA_ST = BitField("YA_ST", Register.ACCEL_CONFIG, 6)
ACCEL_CONFIG_XA_ST = BitField("XA_ST", Register.ACCEL_CONFIG, 7)

FIFO_EN_SLV0 = BitField("SLV0_FIFO_EN", Register.FIFO_EN, 0)
FIFO_EN_SLV1 = BitField("SLV1_FIFO_EN", Register.FIFO_EN, 1)
FIFO_EN_SLV2 = BitField("SLV2_FIFO_EN", Register.FIFO_EN, 2)
FIFO_EN_ACCEL = BitField("ACCEL_FIFO_EN", Register.FIFO_EN, 3)
FIFO_EN_ZG = BitField("ZG_FIFO_EN", Register.FIFO_EN, 4)
FIFO_EN_YG = BitField("YG_FIFO_EN", Register.FIFO_EN, 5)
FIFO_EN_XG = BitField("XG_FIFO_EN", Register.FIFO_EN, 6)
FIFO_EN_TEMP = BitField("TEMP_FIFO_EN", Register.FIFO_EN, 7)

INT_ENABLE_DATA_RDY_EN = BitField("DATA_RDY_EN", Register.INT_ENABLE, 0)
INT_ENABLE_FIFO_OFLOW_EN = BitField("FIFO_OFLOW_EN", Register.INT_ENABLE, 4)

INT_STATUS_DATA_RDY_INT = BitField("DATA_RDY_INT", Register.INT_STATUS, 0)
INT_STATUS_FIFO_OFLOW_INT = BitField("FIFO_OFLOW_INT", Register.INT_STATUS, 4)

USER_CTRL_SIG_COND_RESET = BitField("SIG_COND_RESET", Register.USER_CTRL, 0)
USER_CTRL_I2C_MST_RESET = BitField("I2C_MST_RESET", Register.USER_CTRL, 1)
USER_CTRL_FIFO_RESET = BitField("FIFO_RESET", Register.USER_CTRL, 2)
USER_CTRL_I2C_IF_DIS = BitField("I2C_IF_DIS", Register.USER_CTRL, 4)
USER_CTRL_I2C_MST_EN = BitField("I2C_MST_EN", Register.USER_CTRL, 5)
USER_CTRL_FIFO_EN = BitField("FIFO_EN", Register.USER_CTRL, 6)

PWR_MGMT_1_CLKSEL = BitField("CLKSEL", Register.PWR_MGMT_1, 0, 3)
PWR_MGMT_1_TEMP_DIS = BitField("TEMP_DIS", Register.PWR_MGMT_1, 3)
PWR_MGMT_1_CYCLE = BitField("CYCLE", Register.PWR_MGMT_1, 5)
PWR_MGMT_1_SLEEP = BitField("SLEEP", Register.PWR_MGMT_1, 6)
PWR_MGMT_1_DEVICE_RESET = BitField("DEVICE_RESET", Register.PWR_MGMT_1, 7)

#: Every field above, for table-driven checks (no overlaps, names unique per register).
ALL_FIELDS: tuple[BitField, ...] = tuple(
    v for v in list(globals().values()) if isinstance(v, BitField)
)

#: CLKSEL 1: PLL with the X axis gyroscope as reference; the RM recommends it over the
#: internal 8 MHz oscillator for stability.
CLKSEL_PLL_X_GYRO = 1

#: WHO_AM_I answers (RM section 4.32 gives 0x68 for the MPU-6050, whatever AD0 is).
WHO_AM_I_MPU6050 = 0x68


@dataclass(frozen=True)
class Part:
    """What differs between the parts sold as "MPU6050": FIFO size, the separate accel filter
    register, and how long the gyro takes to settle after wake."""

    name: str
    fifo_bytes: int
    has_accel_config2: bool
    gyro_startup_s: float


#: By WHO_AM_I, from the Linux inv_mpu6050 driver's hw_info table (FIFO sizes, and its
#: INV_MPU6050_GYRO_STARTUP_TIME 60 ms / INV_MPU6500_GYRO_STARTUP_TIME 70 ms). 0x72 is sold as
#: an MPU6050 but is in no public table: it is treated as 6500-class with the smallest FIFO.
PARTS: dict[int, Part] = {
    0x68: Part("MPU-6050", 1024, False, 0.060),
    0x70: Part("MPU-6500", 512, True, 0.070),
    0x71: Part("MPU-9250", 512, True, 0.070),
    0x72: Part("unlisted 6500-class part (0x72)", 512, True, 0.070),
    0x73: Part("MPU-9255", 512, True, 0.070),
    0x98: Part("ICM-20689", 4096, True, 0.070),
}
#: What a 512-byte part costs on the bus at 1 kHz: 42 whole 12-byte frames, full in 40 ms
#: on a chip 5 % fast (1050 frames/s), so at least 25 reads a second with no headroom at all.
#: Count-then-data (the kernel's way, two transactions a read) is then at least 50
#: transactions/s; the combined read (one) 25, plus INT_STATUS's own 4/s on i2c-bcm2835.
#: The driver reads at its fill target, 0.7 of the FIFO for a chip 10 % fast (26.7 ms, 37
#: reads/s), so that a read 13 ms late still finds room; 30 transactions/s would leave 6.7 ms
#: of headroom with INT_STATUS in the same transaction (i2c-gpio), 1.5 ms without
#: (i2c-bcm2835). The issue's <= 30/s is for 1024- and 4096-byte parts; a 512-byte part at
#: 1 kHz measured 43.7/s (docs/sensor-figures.md).
#: Clones sold as MPU6050 that run the same register map.
WHO_AM_I_CLONES: dict[int, str] = {k: p.name for k, p in PARTS.items() if k != WHO_AM_I_MPU6050}

#: FIFO geometry of the MPU-6050 (other parts: PARTS): 1024 bytes; with XG|YG|ZG|ACCEL
#: enabled each sample is accel xyz then gyro xyz (written in register order, RM 4.33), six
#: big-endian int16.
FIFO_SIZE_BYTES = 1024
SAMPLE_BYTES = 12
FIFO_CAPACITY_SAMPLES = FIFO_SIZE_BYTES // SAMPLE_BYTES  # 85
#: The data registers ACCEL_XOUT_H..GYRO_ZOUT_L: accel xyz, temperature, gyro xyz.
DATA_REGISTER_COUNT = Register.GYRO_ZOUT_L - Register.ACCEL_XOUT_H + 1  # 14

#: DEVICE_RESET: registers return to their reset values; the RM's reset sequence waits 100 ms.
RESET_DELAY_S = 0.100

#: smbus2 / SMBus block transfers stop at 32 bytes (I2C_SMBUS_BLOCK_MAX).
SMBUS_BLOCK_MAX = 32
