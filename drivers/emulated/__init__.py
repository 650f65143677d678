"""Emulated hardware: a register-level MPU6050 behind an smbus2-compatible bus, motion input."""
