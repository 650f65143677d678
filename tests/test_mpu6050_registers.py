"""The register map against RM-MPU-6000A rev 4.2: addresses (given there in decimal) and bits."""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from odar.drivers import mpu6050_registers as reg

# (register, decimal address in the RM)
RM_ADDRESSES = [
    (reg.Register.SMPLRT_DIV, 25),
    (reg.Register.CONFIG, 26),
    (reg.Register.GYRO_CONFIG, 27),
    (reg.Register.ACCEL_CONFIG, 28),
    (reg.Register.FIFO_EN, 35),
    (reg.Register.INT_PIN_CFG, 55),
    (reg.Register.INT_ENABLE, 56),
    (reg.Register.INT_STATUS, 58),
    (reg.Register.ACCEL_XOUT_H, 59),
    (reg.Register.TEMP_OUT_H, 65),
    (reg.Register.GYRO_XOUT_H, 67),
    (reg.Register.GYRO_ZOUT_L, 72),
    (reg.Register.SIGNAL_PATH_RESET, 104),
    (reg.Register.USER_CTRL, 106),
    (reg.Register.PWR_MGMT_1, 107),
    (reg.Register.PWR_MGMT_2, 108),
    (reg.Register.FIFO_COUNTH, 114),
    (reg.Register.FIFO_COUNTL, 115),
    (reg.Register.FIFO_R_W, 116),
    (reg.Register.WHO_AM_I, 117),
]

# (field, register, mask in the register byte) from the RM's bit tables
RM_MASKS = [
    (reg.CONFIG_DLPF_CFG, reg.Register.CONFIG, 0b0000_0111),
    (reg.CONFIG_EXT_SYNC_SET, reg.Register.CONFIG, 0b0011_1000),
    (reg.GYRO_CONFIG_FS_SEL, reg.Register.GYRO_CONFIG, 0b0001_1000),
    (reg.ACCEL_CONFIG_AFS_SEL, reg.Register.ACCEL_CONFIG, 0b0001_1000),
    (reg.SMPLRT_DIV, reg.Register.SMPLRT_DIV, 0xFF),
    (reg.FIFO_EN_TEMP, reg.Register.FIFO_EN, 0x80),
    (reg.FIFO_EN_XG, reg.Register.FIFO_EN, 0x40),
    (reg.FIFO_EN_YG, reg.Register.FIFO_EN, 0x20),
    (reg.FIFO_EN_ZG, reg.Register.FIFO_EN, 0x10),
    (reg.FIFO_EN_ACCEL, reg.Register.FIFO_EN, 0x08),
    (reg.INT_STATUS_FIFO_OFLOW_INT, reg.Register.INT_STATUS, 0x10),
    (reg.INT_STATUS_DATA_RDY_INT, reg.Register.INT_STATUS, 0x01),
    (reg.USER_CTRL_FIFO_EN, reg.Register.USER_CTRL, 0x40),
    (reg.USER_CTRL_FIFO_RESET, reg.Register.USER_CTRL, 0x04),
    (reg.PWR_MGMT_1_DEVICE_RESET, reg.Register.PWR_MGMT_1, 0x80),
    (reg.PWR_MGMT_1_SLEEP, reg.Register.PWR_MGMT_1, 0x40),
    (reg.PWR_MGMT_1_CLKSEL, reg.Register.PWR_MGMT_1, 0x07),
]


@pytest.mark.parametrize(("register", "decimal"), RM_ADDRESSES)
def test_register_addresses_match_the_register_map(register: reg.Register, decimal: int) -> None:
    assert int(register) == decimal


@pytest.mark.parametrize(("bit_field", "register", "mask"), RM_MASKS)
def test_field_positions_match_the_register_map(
    bit_field: reg.BitField, register: reg.Register, mask: int
) -> None:
    assert bit_field.register is register
    assert bit_field.mask == mask


def test_dlpf_goes_to_config_bits_2_0_and_leaves_ext_sync_alone() -> None:
    # EXT_SYNC_SET = 0b101 in bits 5:3; DLPF_CFG 3 must land in bits 2:0 only.
    assert reg.CONFIG_DLPF_CFG.insert(0b0010_1000, 3) == 0b0010_1011
    assert reg.CONFIG_DLPF_CFG.insert(0b0010_1111, 0) == 0b0010_1000


def test_full_scale_goes_to_bits_4_3_and_leaves_self_test_alone() -> None:
    assert reg.GYRO_CONFIG_FS_SEL.insert(0b1110_0111, 2) == 0b1111_0111
    assert reg.ACCEL_CONFIG_AFS_SEL.insert(0b0000_0000, 3) == 0b0001_1000
    assert reg.ACCEL_CONFIG_AFS_SEL.extract(0b1110_1111) == 1


def test_fields_of_one_register_never_overlap_and_names_are_unique() -> None:
    by_register: dict[reg.Register, list[reg.BitField]] = defaultdict(list)
    for bit_field in reg.ALL_FIELDS:
        by_register[bit_field.register].append(bit_field)
    assert len(reg.ALL_FIELDS) >= len(RM_MASKS)
    for register, fields in by_register.items():
        used = 0
        for bit_field in fields:
            assert used & bit_field.mask == 0, f"{register.name}.{bit_field.name} overlaps"
            used |= bit_field.mask
        assert len({f.name for f in fields}) == len(fields)


def test_values_that_do_not_fit_are_refused_with_the_field_named() -> None:
    with pytest.raises(ValueError, match=r"CONFIG\.DLPF_CFG: 8"):
        reg.CONFIG_DLPF_CFG.insert(0, 8)
    with pytest.raises(ValueError, match="SLEEP"):
        reg.PWR_MGMT_1_SLEEP.insert(0, -1)
    with pytest.raises(ValueError, match="do not fit"):
        reg.BitField("BAD", reg.Register.CONFIG, 6, 3)


def test_fifo_geometry() -> None:
    assert reg.FIFO_CAPACITY_SAMPLES == 85
    assert reg.DATA_REGISTER_COUNT == 14


@given(
    st.sampled_from(reg.ALL_FIELDS),
    st.integers(min_value=0, max_value=0xFF),
    st.data(),
)
def test_insert_changes_only_the_field(bit_field: reg.BitField, before: int, data) -> None:
    value = data.draw(st.integers(min_value=0, max_value=bit_field.max_value))
    after = bit_field.insert(before, value)
    assert 0 <= after <= 0xFF
    assert bit_field.extract(after) == value
    assert after & ~bit_field.mask & 0xFF == before & ~bit_field.mask & 0xFF
