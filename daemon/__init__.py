"""odar: on-device activity recognition for a Raspberry Pi wearable.

The data's path, by module:

    drivers.mpu6050 -> ring_buffer -> windows -> bottleneck -> sample_store / head
    -> motor and journal
"""

__version__ = "0.1.0"
