"""MESSAGE_IDs: unique, in the journal entries, in the catalog, and every ODAR_* field and id
documented in docs/operations.md with an example journalctl line."""

from __future__ import annotations

import ast
import logging
import re
from pathlib import Path

from odar import message_ids
from odar.journal import journal_fields, log_event

REPO = Path(__file__).resolve().parents[1]
OPERATIONS = (REPO / "docs" / "operations.md").read_text()
CATALOG = (REPO / "etc" / "odar.catalog").read_text()


def logged_fields() -> set[str]:
    """Every ODAR_* field a log_event call in the product or the harness writes."""
    found = set()
    for path in [*(REPO / "daemon").rglob("*.py"), *(REPO / "drivers").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "log_event":
                names = {kw.arg: 0 for kw in node.keywords if kw.arg and kw.arg != "message_id"}
                found |= set(journal_fields(**names))
    return found


def test_ids_are_unique_128_bit_hex():
    ids = list(message_ids.ALL.values())
    assert len(ids) == len(set(ids)) >= 6
    assert all(re.fullmatch(r"[0-9a-f]{32}", value) for value in ids)


def test_the_catalog_explains_every_id_once():
    entries = re.findall(r"^-- ([0-9a-f]{32})\nSubject: .+\nDefined-By: odar\n", CATALOG, re.M)
    assert sorted(entries) == sorted(message_ids.ALL.values())


def test_every_field_and_id_is_documented_with_a_journalctl_example():
    rows = {
        match.group(1): match.group(2)
        for match in re.finditer(r"^\| `(ODAR_[A-Z_]+)` \|(.*)\|$", OPERATIONS, re.M)
    }
    fields = logged_fields()
    assert {"ODAR_EVENT", "ODAR_LOSS", "ODAR_EPOCH"} <= fields
    for field in fields:
        assert field in rows, f"{field} is not documented in docs/operations.md"
        assert "journalctl" in rows[field], f"{field} has no example journalctl line"
    for value in message_ids.ALL.values():
        assert value in OPERATIONS


def test_operations_names_the_real_head_file():
    assert "head_params.npz" not in OPERATIONS
    assert "/var/lib/odar/head.params" in OPERATIONS


def test_log_event_sets_message_id(caplog):
    with caplog.at_level(logging.INFO):
        log_event(logging.getLogger("odar.test"), "ready", message_id=message_ids.READY, event="x")
    (record,) = caplog.records
    assert record.MESSAGE_ID == message_ids.READY
    assert record.ODAR_EVENT == "x"
