"""What the MPU6050 is asked to do, checked against what the chip can do (datasheet values)."""

from __future__ import annotations

from dataclasses import dataclass

from odar.errors import SensorSettingsError

#: AFS_SEL (ACCEL_CONFIG bits 4:3) by full scale in g; sensitivity in LSB/g.
ACCEL_RANGES_G: dict[int, tuple[int, float]] = {
    2: (0, 16384.0),
    4: (1, 8192.0),
    8: (2, 4096.0),
    16: (3, 2048.0),
}
#: FS_SEL (GYRO_CONFIG bits 4:3) by full scale in deg/s; sensitivity in LSB/(deg/s).
GYRO_RANGES_DPS: dict[int, tuple[int, float]] = {
    250: (0, 131.0),
    500: (1, 65.5),
    1000: (2, 32.8),
    2000: (3, 16.4),
}
#: DLPF_CFG (CONFIG bits 2:0) to (accel bandwidth Hz, gyro bandwidth Hz); 7 is reserved.
DLPF_BANDWIDTH_HZ: dict[int, tuple[int, int]] = {
    0: (260, 256),
    1: (184, 188),
    2: (94, 98),
    3: (44, 42),
    4: (21, 20),
    5: (10, 10),
    6: (5, 5),
}

BUS_SPEEDS_HZ = (100_000, 400_000)


@dataclass(frozen=True)
class SensorSettings:
    """Sensor configuration as the user writes it; see ``etc/odar.yaml``."""

    bus: int = 1
    address: int = 0x68
    rate_hz: float = 100.0
    accel_range_g: int = 4
    gyro_range_dps: int = 500
    dlpf_cfg: int = 3
    bus_hz: int = 400_000

    def __post_init__(self) -> None:
        if self.accel_range_g not in ACCEL_RANGES_G:
            raise SensorSettingsError(
                f"sensor.accel_range_g: {self.accel_range_g!r} is not one of "
                f"{sorted(ACCEL_RANGES_G)}"
            )
        if self.gyro_range_dps not in GYRO_RANGES_DPS:
            raise SensorSettingsError(
                f"sensor.gyro_range_dps: {self.gyro_range_dps!r} is not one of "
                f"{sorted(GYRO_RANGES_DPS)}"
            )
        if self.dlpf_cfg not in DLPF_BANDWIDTH_HZ:
            raise SensorSettingsError(
                f"sensor.dlpf_cfg: {self.dlpf_cfg!r} is not one of 0-6 (7 is reserved)"
            )
        if self.address not in (0x68, 0x69):
            raise SensorSettingsError(
                f"sensor.address: {self.address:#04x} is not 0x68 or 0x69 (AD0 low or high)"
            )
        if not 0 <= self.bus <= 255:
            raise SensorSettingsError(f"sensor.bus: {self.bus!r} is not an I2C bus number")
        if not 4.0 <= self.rate_hz <= 1000.0:
            raise SensorSettingsError(
                f"sensor.rate_hz: {self.rate_hz!r} is outside 4-1000 Hz "
                "(the FIFO path with DLPF on reaches 1 kHz / 256 at the lowest)"
            )
        if not 10_000 <= self.bus_hz <= 3_400_000:
            raise SensorSettingsError(f"sensor.bus_hz: {self.bus_hz!r} is not an I2C clock")

    @property
    def gyro_output_rate_hz(self) -> int:
        """8 kHz with the DLPF off (DLPF_CFG 0), 1 kHz otherwise (register map, SMPLRT_DIV)."""
        return 8000 if self.dlpf_cfg == 0 else 1000
