"""The harness (odar.harness) and the emulator (odar.drivers.emulated) stay out of the product:
the service a wearable runs, and ``odar run`` as systemd starts it, load none of their modules."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO

TEST_WORLD = ("odar.harness", "odar.drivers.emulated")

#: Runs *code*, then prints the loaded modules of the test world as JSON (SystemExit included:
#: ``--help`` ends with one).
PROBE = """
import json, sys
try:
    {code}
except SystemExit:
    pass
print(json.dumps(sorted(m for m in sys.modules if m.startswith({world!r}))))
"""


def modules_loaded_by(code: str) -> list[str]:
    script = PROBE.format(code=code, world=TEST_WORLD)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "code",
    [
        "import odar.service",
        "from odar.cli import main; main(['run', '--help'])",
    ],
)
def test_the_service_loads_nothing_of_the_harness_or_the_emulator(code):
    assert modules_loaded_by(code) == []


def test_the_probe_sees_the_harness_when_it_is_loaded():
    # The check above would pass vacuously if the probe could not see these modules.
    loaded = modules_loaded_by("from odar.cli import main; main(['demo', '--help'])")
    assert "odar.harness.demo" in loaded and "odar.drivers.emulated.motion" in loaded
