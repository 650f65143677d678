"""Class display names from the config; either spelling names a class."""

from __future__ import annotations

import pytest

from odar.class_names import class_index, display_names
from odar.errors import ConfigError

MANIFEST = ("Class A", "Class B")


def test_the_manifest_names_are_the_default():
    assert display_names(MANIFEST, None) == MANIFEST


def test_configured_names_must_match_the_class_count():
    with pytest.raises(ConfigError, match=r"classes\.names: 3 names"):
        display_names(MANIFEST, ("a", "b", "c"))


def test_either_name_finds_the_class():
    shown = ("sitting", "walking")
    assert class_index("walking", MANIFEST, shown) == 1
    assert class_index("Class A", MANIFEST, shown) == 0
    with pytest.raises(ConfigError, match="'running' is not a class"):
        class_index("running", MANIFEST, shown)


def test_the_daemon_shows_the_configured_names(start_daemon, config_writer):
    path = config_writer.write(
        {"classes": {"names": ["sitting", "walking"]}, "inference": {"trigger_class": "walking"}}
    )
    running = start_daemon(path)
    assert running.daemon.class_names == ("sitting", "walking")
    assert "class sitting" in running.daemon.status_text()
    assert running.daemon.detector.trigger_index == 1
    assert running.stop() == 0
