"""Hardware: the MPU6050 over I2C, buttons, LED and motor over GPIO, and their emulations."""
