"""odar: on-device activity recognition for a Raspberry Pi wearable.

The data's path through the modules is in DEVELOPERS.md ("The data's path").
"""

__version__ = "0.1.0"
