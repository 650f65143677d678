"""Property-based fuzzing of everything that reads files a user or a power cut can spoil.

The per-module tests already throw random bytes and random YAML at each reader. This file
adds what they leave out: mutations of the *shipped* files (etc/odar.yaml, the demo
scenario), and mutations *behind the checksums* - a damaged header or payload re-signed with
a correct SHA-256 or CRC32, so that the parsers behind the integrity check meet garbage too.
The only acceptable outcomes are a valid result or the project's own error (never another
exception, never a traceback).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from odar import param_store, sample_store
from odar.config import Config, load_config, parse_config
from odar.controls import Mode, decode_controls_state
from odar.errors import ConfigError, OdarError, StateError
from odar.harness.scenario import Scenario, ScenarioError, load_scenario
from odar.param_store import HeadState, ParamStore, decode_head_state, encode_head_state
from odar.sample_store import SampleStore, StoreLayout, parse_header

REPO = Path(__file__).resolve().parent.parent
SHIPPED_CONFIG = (REPO / "etc" / "odar.yaml").read_text()
DEMO_SCENARIO = (REPO / "etc" / "scenarios" / "demo.yaml").read_text()
MANIFEST = "c" * 64
LAYOUT = StoreLayout(MANIFEST, num_classes=3, feature_size=4, window_shape=(8, 6))
_U32 = struct.Struct("<I")

# ---------------------------------------------------------------------------- text mutations


@st.composite
def mutated_lines(draw, text: str) -> str:
    """*text* with a few lines deleted, duplicated, swapped or partly overwritten."""
    lines = text.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        index = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["delete", "duplicate", "swap", "overwrite", "indent"]))
        if action == "delete":
            del lines[index]
        elif action == "duplicate":
            lines.insert(index, lines[index])
        elif action == "swap":
            other = draw(st.integers(0, len(lines) - 1))
            lines[index], lines[other] = lines[other], lines[index]
        elif action == "indent":
            lines[index] = draw(st.sampled_from([" ", "  ", "\t", "- "])) + lines[index]
        else:
            line = lines[index]
            start = draw(st.integers(0, len(line)))
            junk = draw(st.text(max_size=8))
            lines[index] = line[:start] + junk + line[start + len(junk) :]
    return "\n".join(lines) + "\n"


VALUE_SWAPS = st.sampled_from(
    ["", "null", "-1", "0", "1e999", ".nan", "true", "[1, 2]", "{a: 1}", "0x68", "'17'", "~", "&a"]
)


@st.composite
def shipped_config_with_a_bad_value(draw) -> str:
    """etc/odar.yaml with one `key: value` line's value replaced."""
    lines = SHIPPED_CONFIG.splitlines()
    keyed = [
        i for i, line in enumerate(lines) if ": " in line and not line.lstrip().startswith("#")
    ]
    index = draw(st.sampled_from(keyed))
    key = lines[index].split(": ", 1)[0]
    lines[index] = f"{key}: {draw(VALUE_SWAPS | st.text(max_size=10))}"
    return "\n".join(lines) + "\n"


def config_or_config_error(text: str) -> None:
    try:
        assert isinstance(parse_config(text, environ={}), Config)
    except ConfigError as error:
        assert str(error)


@settings(max_examples=250, deadline=None)
@given(mutated_lines(SHIPPED_CONFIG))
def test_the_shipped_config_mutated_gives_a_config_or_a_config_error(text):
    config_or_config_error(text)


@settings(max_examples=250, deadline=None)
@given(shipped_config_with_a_bad_value())
def test_the_shipped_config_with_any_bad_value_gives_a_config_or_a_config_error(text):
    config_or_config_error(text)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=300))
def test_a_config_file_of_random_bytes_gives_a_config_or_a_config_error(tmp_path, data):
    path = tmp_path / "odar.yaml"
    path.write_bytes(SHIPPED_CONFIG.encode()[:200] + data)
    try:
        assert isinstance(load_config(path, environ={}), Config)
    except ConfigError as error:
        assert str(path) in str(error) or "<string>" not in str(error)


# ---------------------------------------------------------------------------- scenarios


def scenario_or_scenario_error(directory: Path, text: str) -> None:
    path = directory / "scenario.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        scenario = load_scenario(path)
    except ScenarioError as error:
        assert isinstance(error, ConfigError) and str(path) in str(error)
        return
    assert isinstance(scenario, Scenario) and scenario.steps
    for step in scenario.steps:
        # NaN or infinite seconds would make the player spin or wait forever.
        if step.kind in ("wait", "disconnect", "stall"):
            assert math.isfinite(step.value) and step.value >= 0, step
        if step.timeout is not None:
            assert math.isfinite(step.timeout) and step.timeout > 0, step


@settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=mutated_lines(DEMO_SCENARIO))
def test_the_demo_scenario_mutated_gives_a_scenario_or_a_scenario_error(tmp_path, text):
    scenario_or_scenario_error(tmp_path, text)


yaml_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70) | st.just(10**400),
    st.floats(),
    st.text(max_size=10),
)
step_kinds = st.sampled_from(
    ["activity", "press", "wait", "until", "disconnect", "stall", "end", "timeout", "x"]
)
yaml_values = st.recursive(
    yaml_scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(step_kinds | st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=12,
)
scenario_documents = st.fixed_dictionaries(
    {},
    optional={
        "wearer": yaml_values | st.fixed_dictionaries({}, optional={"placement": yaml_values}),
        "steps": st.lists(st.dictionaries(step_kinds, yaml_values, max_size=2), max_size=5)
        | yaml_values,
        "description": yaml_values,
    },
)


@settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(document=scenario_documents | yaml_values)
def test_any_scenario_document_gives_a_scenario_or_a_scenario_error(tmp_path, document):
    try:
        text = yaml.safe_dump(document)
    except yaml.YAMLError:
        return
    scenario_or_scenario_error(tmp_path, text)


# ---------------------------------------------------------------------------- parameters


def small_head(epoch: int = 4) -> HeadState:
    rng = np.random.default_rng(epoch)
    return HeadState(
        {"w": rng.standard_normal((4, 3)).astype(np.float32), "b": np.zeros(3, np.float32)},
        {"step": np.asarray(epoch, np.float32)},
        epoch,
    )


def signed(header: bytes, payload: bytes) -> bytes:
    body = param_store.MAGIC + _U32.pack(len(header)) + header + payload
    return body + hashlib.sha256(body).digest()


def split_params(data: bytes) -> tuple[dict, bytes]:
    (length,) = _U32.unpack_from(data, len(param_store.MAGIC))
    start = len(param_store.MAGIC) + _U32.size
    header = json.loads(data[start : start + length])
    return header, data[start + length : -32]


GOOD_PARAMS = encode_head_state(small_head(), MANIFEST)
GOOD_HEADER, GOOD_PAYLOAD = split_params(GOOD_PARAMS)


@st.composite
def mutated_bytes(draw, data: bytes) -> bytes:
    """*data* with a few bytes flipped, cut, inserted or deleted."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        if not out:
            break
        index = draw(st.integers(0, len(out) - 1))
        action = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        if action == "flip":
            out[index] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del out[index:]
        elif action == "insert":
            out[index:index] = draw(st.binary(min_size=1, max_size=8))
        else:
            del out[index : index + draw(st.integers(1, 16))]
    return bytes(out)


def head_or_state_error(data: bytes) -> None:
    try:
        state = decode_head_state(data, MANIFEST)
    except StateError as error:
        assert str(error).startswith("<bytes>")
        return
    assert isinstance(state, HeadState) and isinstance(state.epoch, int)


header_values = st.one_of(yaml_scalars, st.lists(st.integers(), max_size=2), st.just(MANIFEST))


@settings(max_examples=300, deadline=None)
@given(
    header=st.fixed_dictionaries(
        {},
        optional={
            "schema": header_values | st.just(1),
            "manifest_hash": header_values,
            "payload_length": header_values | st.just(len(GOOD_PAYLOAD)),
            "extra": header_values,
        },
    )
)
def test_a_re_signed_parameter_file_with_any_header_gives_only_our_error(header):
    head_or_state_error(signed(json.dumps(header).encode(), GOOD_PAYLOAD))


@settings(max_examples=300, deadline=None)
@given(payload=mutated_bytes(GOOD_PAYLOAD))
def test_a_re_signed_parameter_file_with_a_damaged_payload_gives_only_our_error(payload):
    header = dict(GOOD_HEADER, payload_length=len(payload))
    head_or_state_error(signed(json.dumps(header).encode(), payload))


@settings(max_examples=150, deadline=None)
@given(
    arrays=st.dictionaries(
        st.sampled_from(["epoch", "param.w", "optimizer.step", "other", "param."]),
        st.sampled_from(
            [np.float32(1.5), np.int64(3), np.zeros((2, 2)), np.array(["x"]), np.array([], "i8")]
        ),
        max_size=4,
    )
)
def test_a_re_signed_parameter_file_with_foreign_arrays_gives_only_our_error(arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **{name: np.asarray(value) for name, value in arrays.items()})
    payload = buffer.getvalue()
    header = dict(GOOD_HEADER, payload_length=len(payload))
    head_or_state_error(signed(json.dumps(header).encode(), payload))


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=mutated_bytes(GOOD_PARAMS))
def test_a_damaged_parameter_file_loads_as_the_original_or_none(tmp_path, data):
    path = tmp_path / "head.params"
    path.write_bytes(data)
    loaded = ParamStore(path, MANIFEST).load()
    if loaded is not None:
        assert data == GOOD_PARAMS or loaded.epoch == small_head().epoch
        assert all(np.array_equal(loaded.params[k], small_head().params[k]) for k in ("w", "b"))
    for aside in tmp_path.glob("head.params.bad-*"):
        aside.unlink()


# ---------------------------------------------------------------------------- sample store


def header_with(fields: dict) -> bytes:
    raw = json.dumps(fields).encode()
    copy = sample_store.MAGIC + _U32.pack(len(raw)) + raw + _U32.pack(zlib.crc32(raw))
    return copy.ljust(sample_store.HEADER_BLOCK, b"\0") * 2


store_header_fields = st.fixed_dictionaries(
    {},
    optional={
        "schema": header_values | st.just(2),
        "bottleneck_sha256": header_values | st.just(MANIFEST),
        "num_classes": header_values | st.integers(-3, 2**31),
        "feature_size": header_values | st.integers(-3, 2**31),
        "window_shape": header_values
        | st.lists(st.integers(-2, 2**21) | st.booleans() | st.floats(), max_size=4),
    },
)


@settings(max_examples=300, deadline=None)
@given(fields=store_header_fields)
def test_a_sample_store_header_with_any_fields_and_a_good_crc_gives_only_our_error(fields):
    try:
        layout, size = parse_header(header_with(fields))
    except StateError:
        return
    assert isinstance(layout, StoreLayout) and size > 0
    assert all(isinstance(n, int) and n > 0 for n in (layout.num_classes, *layout.window_shape))


def one_record(label: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    record = np.zeros(1, LAYOUT.record_dtype())
    record["label"] = label
    record["sample_id"] = seed + 1
    record["features"] = rng.standard_normal(LAYOUT.feature_size)
    record["window"] = rng.standard_normal(LAYOUT.window_shape)
    return sample_store._sealed(record)


def resigned_record(data: bytes) -> bytes:
    """*data* with a good magic and CRC: damage the checksum cannot catch."""
    body = data[8:]
    return _U32.pack(sample_store.RECORD_MAGIC) + _U32.pack(zlib.crc32(body)) + body


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    labels=st.lists(st.integers(0, 2**32 - 1) | st.integers(0, 2), min_size=1, max_size=6),
    damage=mutated_bytes(one_record(1, 0)),
    resign=st.booleans(),
)
def test_a_store_with_re_signed_damaged_records_opens_with_only_whole_valid_records(
    tmp_path, labels, damage, resign
):
    path = tmp_path / "samples"
    records = b"".join(one_record(label, i) for i, label in enumerate(labels))
    tail = resigned_record(damage) if resign and len(damage) > 8 else damage
    path.write_bytes(LAYOUT.header_bytes() * 2 + records + tail)
    with SampleStore.open(path, LAYOUT) as store:
        loaded = store.load()
        assert sum(store.counts()) == len(loaded)
        assert set(loaded.labels.tolist()) <= {0, 1, 2}
        assert loaded.windows.shape == (len(loaded), *LAYOUT.window_shape)
        # Every valid record is kept, in order, whatever lies between or after them; only
        # the damaged tail may add one (a mutation that left a whole, valid record).
        valid = [label for label in labels if label <= 2]
        assert loaded.labels[: len(valid)].tolist() == valid
        assert len(loaded) - len(valid) in (0, 1)
    for aside in tmp_path.glob("samples.bad-*"):
        aside.unlink()
    path.unlink()


# ---------------------------------------------------------------------------- controls.json


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    document=st.fixed_dictionaries(
        {},
        optional={
            "mode": json_values | st.sampled_from([m.value for m in Mode]),
            "class_index": json_values | st.integers(-5, 5),
        },
    )
    | json_values
)
def test_any_json_controls_state_gives_only_our_error_or_a_valid_selection(document):
    data = json.dumps(document).encode()
    try:
        mode, class_index = decode_controls_state(data, num_classes=2, source="controls.json")
    except StateError as error:
        assert isinstance(error, OdarError) and str(error).startswith("controls.json")
        return
    assert isinstance(mode, Mode) and class_index in (0, 1)


@pytest.mark.parametrize(
    ("until", "key"),
    [
        ("{collected: [1]}", "until.collected"),
        ("{epochs: -3}", "until.epochs"),
        ("{epochs: true}", "until.epochs"),
        ("{loss_settled: 2}", "until.loss_settled"),
    ],
)
def test_scenario_until_targets_are_checked_when_loaded(tmp_path, until, key):
    path = tmp_path / "bad.yaml"
    path.write_text(f"steps:\n  - until: {until}\n")
    with pytest.raises(ScenarioError, match=key.replace(".", r"\.")):
        load_scenario(path)
