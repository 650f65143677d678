"""MESSAGE_IDs of the journal entries a user or a script looks for.

``journalctl MESSAGE_ID=<id>`` finds them across restarts and log levels; ``etc/odar.catalog``
(installed to /usr/lib/systemd/catalog/) explains each one (``journalctl -x``). The ids are
random 128-bit values, fixed forever once released: never reuse or change one.
"""

from __future__ import annotations

STARTED = "79a8fcfb470f404c823ce0e243e7ce5d"
READY = "bf059fec5d444b65a90695454c2d743e"
MODE_CHANGED = "c54bcc6cefcb4bdfbbd9b0e93d3f719a"
TRAINING_FINISHED = "de7e9955f7e74ae0abfcd55e2a5dbcc8"
SENSOR_LOST = "2f653afb2eda4deb8afcbfd08a9a0494"
SENSOR_RECOVERED = "cad3607602b5476593f79f6d72074828"
SAMPLE_REMOVED = "cc1561a335594755bbe764be4045e870"
STOPPED = "6941bba95bcb44929e3415a8054e8642"

#: Name -> id, for the catalog test and the docs.
ALL = {name: value for name, value in globals().items() if name.isupper() and len(value) == 32}
