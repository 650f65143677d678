"""Corrupt, truncated and foreign files in place of the daemon's own files and the artifacts.

State files (parameters, sample store, controls.json) are ours: the daemon must start, say in
the log which file was bad, move it aside as ``<name>.bad-<time>`` with its bytes intact and
carry on with fresh state. Artifacts and the manifest are not ours: the daemon must refuse to
start with an ArtifactError naming the file, and leave every file exactly where and as it was.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import build_daemon
from faults_support import artifact_facts, prefill_samples, trained_head

from odar.controls import Mode
from odar.errors import ArtifactError, OdarError
from odar.manifest import ARTIFACT_NAMES, sha256_of
from odar.notifier import SystemdNotifier
from odar.param_store import ParamStore, encode_head_state
from odar.sample_store import SampleStore, parse_header
from odar.service import CONTROLS_FILE, PARAMS_FILE, RECOMPUTE_EXTENSION, SAMPLES_FILE

REPO = Path(__file__).resolve().parent.parent
PNG_START = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4


def flip_middle(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]


# ---------------------------------------------------------------------------- our state files


def good_state_files(state: Path, artifacts_dir: Path) -> dict[str, bytes]:
    """A trained head, a store of 12 samples a class and a saved selection, as bytes."""
    facts = artifact_facts(artifacts_dir)
    state.mkdir(parents=True, exist_ok=True)
    ParamStore(state / PARAMS_FILE, facts.manifest_hash).save(trained_head(facts, epoch=7))
    prefill_samples(state / SAMPLES_FILE, facts, per_class=12)
    (state / CONTROLS_FILE).write_text(json.dumps({"mode": "infer", "class_index": 1}))
    return {
        name: (state / name).read_bytes() for name in (PARAMS_FILE, SAMPLES_FILE, CONTROLS_FILE)
    }


def damaged(kind: str, name: str, good: bytes, artifacts_dir: Path) -> bytes:
    if kind == "corrupt":
        if name == SAMPLES_FILE:
            return flip_middle(good[:200]) + good[200:]  # inside the first header copy
        return flip_middle(good)
    if kind == "truncated":
        return good[: len(good) // 2]
    if name == PARAMS_FILE:  # a good head, but trained for other artifacts
        return encode_head_state(trained_head(artifact_facts(artifacts_dir), epoch=3), "f" * 64)
    if name == CONTROLS_FILE:
        return json.dumps({"volume": 11, "theme": "dark"}).encode()
    return PNG_START


@pytest.mark.parametrize("kind", ["corrupt", "truncated", "foreign"])
def test_bad_state_files_are_named_moved_aside_and_the_daemon_starts_fresh(
    kind, config_writer, start_daemon, artifacts_dir, caplog
):
    state = config_writer.directory / "state"
    good = good_state_files(state, artifacts_dir)
    bad = {name: damaged(kind, name, data, artifacts_dir) for name, data in good.items()}
    for name, data in bad.items():
        (state / name).write_bytes(data)

    with caplog.at_level(logging.WARNING):
        running = start_daemon()
    daemon = running.daemon

    # A sample store with a torn tail or one damaged header copy is repaired, not replaced.
    samples_repaired = kind in ("truncated", "corrupt")
    for name, data in bad.items():
        path = state / name
        if name == SAMPLES_FILE and samples_repaired:
            continue
        named = [r.getMessage() for r in caplog.records if str(path) in r.getMessage()]
        assert named, f"no log line names {path}"
        aside = sorted(state.glob(f"{name}.bad-*"))
        assert len(aside) == 1, f"{name} was not moved aside: {sorted(state.iterdir())}"
        assert aside[0].read_bytes() == data, f"{aside[0].name} is not the bad file's bytes"
        assert aside[0].name in " ".join(named), "the log does not say where it went"

    assert not daemon.latest.trained and daemon.latest.get().epoch == 0
    assert (daemon.controls.mode, daemon.controls.class_index) == (Mode.COLLECT, 0)
    if kind == "truncated":
        # Half the file: exactly the whole records before the cut survive (24 were written).
        layout, header_size = parse_header(good[SAMPLES_FILE])
        whole = (len(bad[SAMPLES_FILE]) - header_size) // layout.record_dtype().itemsize
        assert 0 < whole < 24 and sum(daemon.samples.counts()) == whole
        assert any("torn last record" in r.getMessage() for r in caplog.records)
    elif kind == "corrupt":
        # A flipped byte in the first header copy: restored from the second, every sample kept.
        assert daemon.samples.counts() == (12, 12)
        assert any("restored from the other" in r.getMessage() for r in caplog.records)
    else:
        assert daemon.samples.counts() == (0, 0)

    # The fresh state works: the daemon collects into the new store and saves a selection.
    running.collect(class_index=1, samples=1)
    assert running.counts()[1] >= 1
    assert running.stop() == 0
    assert json.loads((state / CONTROLS_FILE).read_text()) == {"mode": "collect", "class_index": 1}


# ---------------------------------------------------------------------------- the artifacts


def artifact_copy(destination: Path, artifacts_dir: Path) -> Path:
    destination.mkdir()
    for name in ARTIFACT_NAMES:
        shutil.copyfile(artifacts_dir / f"{name}.tflite", destination / f"{name}.tflite")
    shutil.copyfile(artifacts_dir / "manifest.json", destination / "manifest.json")
    return destination


def set_manifest_hash(directory: Path, artifact: str) -> None:
    """Write the artifact's current SHA-256 into the manifest, as a careless rebuild would."""
    path = directory / "manifest.json"
    raw = json.loads(path.read_text())
    raw["artifacts"][artifact]["sha256"] = sha256_of(directory / f"{artifact}.tflite")
    path.write_text(json.dumps(raw))


def donor_for(artifact: str) -> str:
    """Another artifact of the same set: valid TFLite, the wrong model."""
    return "inference" if artifact != "inference" else "train_head"


def damage_artifact(directory: Path, artifact: str, kind: str, hash_updated: bool) -> Path:
    path = directory / f"{artifact}.tflite"
    data = path.read_bytes()
    if kind == "corrupt":
        path.write_bytes(flip_middle(data[:64]) + data[64:])  # the flatbuffer's tables
    elif kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    else:
        shutil.copyfile(directory / f"{donor_for(artifact)}.tflite", path)
    if hash_updated:
        set_manifest_hash(directory, artifact)
    return path


def damage_manifest(directory: Path, kind: str) -> Path:
    path = directory / "manifest.json"
    text = path.read_text()
    if kind == "corrupt":
        path.write_text(text.replace('"classes"', '"classes', 1))
    elif kind == "truncated":
        path.write_text(text[: len(text) // 2])
    else:
        path.write_text(json.dumps({"name": "left-pad", "version": "1.3.0", "main": "index.js"}))
    return path


def snapshot(directory: Path) -> dict[str, str]:
    return {path.name: sha256_of(path) for path in sorted(directory.iterdir())}


def start_refused(config_writer, artifacts: Path) -> ArtifactError:
    """A Daemon built on these artifacts: building it must raise ArtifactError."""
    with pytest.raises(ArtifactError) as refused:
        build_daemon(config_writer.write({"paths": {"artifacts_dir": str(artifacts)}}))
    return refused.value


@pytest.mark.parametrize("kind", ["corrupt", "truncated", "foreign"])
@pytest.mark.parametrize("artifact", ARTIFACT_NAMES)
def test_a_bad_artifact_is_refused_naming_it_and_nothing_is_moved(
    artifact, kind, tmp_path, config_writer, artifacts_dir
):
    # A manifest rewritten to match the bad file leaves only the runtime between it and a
    # crash: tflite-runtime 2.14 segfaults or throws std::bad_alloc on corrupt or truncated
    # flatbuffers, so that is tried with a foreign (valid, wrong) model only.
    for hash_updated in (False, True) if kind == "foreign" else (False,):
        directory = artifact_copy(tmp_path / f"artifacts-{hash_updated}", artifacts_dir)
        bad = damage_artifact(directory, artifact, kind, hash_updated)
        before = snapshot(directory)
        error = start_refused(config_writer, directory)
        assert isinstance(error, OdarError) and isinstance(error, ValueError)
        assert str(bad) in str(error), f"the message does not name {bad}: {error}"
        if not hash_updated:
            assert "SHA-256" in str(error)
        assert snapshot(directory) == before, "an artifact was moved or changed"


@pytest.mark.parametrize("kind", ["corrupt", "truncated", "foreign"])
def test_a_bad_manifest_is_refused_naming_it_and_nothing_is_moved(
    kind, tmp_path, config_writer, artifacts_dir
):
    directory = artifact_copy(tmp_path / "artifacts", artifacts_dir)
    bad = damage_manifest(directory, kind)
    before = snapshot(directory)
    error = start_refused(config_writer, directory)
    assert str(bad) in str(error)
    assert snapshot(directory) == before


def test_odar_run_on_a_corrupt_manifest_exits_78_with_one_clear_line(
    tmp_path, config_writer, artifacts_dir
):
    directory = artifact_copy(tmp_path / "artifacts", artifacts_dir)
    bad = damage_manifest(directory, "truncated")
    config = config_writer.write({"paths": {"artifacts_dir": str(directory)}})
    finished = subprocess.run(
        [sys.executable, "-m", "odar.cli", "run", "--allow-root", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert finished.returncode == 78, finished.stderr
    last = finished.stderr.strip().splitlines()[-1]
    assert last.startswith(f"odar: {bad}: not a readable JSON manifest"), finished.stderr
    assert "Traceback" not in finished.stderr


# ---------------------------------------------------------------------------- what state binds to


def test_a_cosmetic_manifest_edit_keeps_the_samples_and_the_head(
    tmp_path, config_writer, start_daemon, artifacts_dir
):
    """Samples are bound to the bottleneck's SHA-256, the head to its layout: reformatting
    manifest.json and editing its prose changes its bytes, not what they are bound to."""
    state = config_writer.directory / "state"
    good_state_files(state, artifacts_dir)
    directory = artifact_copy(tmp_path / "artifacts", artifacts_dir)
    manifest = directory / "manifest.json"
    raw = json.loads(manifest.read_text())
    raw["head"]["initializer"] += " (edited)"
    manifest.write_text(json.dumps(raw, indent=1) + "\n\n")
    assert sha256_of(manifest) != sha256_of(artifacts_dir / "manifest.json")

    running = start_daemon(config_writer.write({"paths": {"artifacts_dir": str(directory)}}))
    daemon = running.daemon
    assert daemon.latest.trained and daemon.latest.get().epoch == 7
    assert daemon.samples.counts() == (12, 12) and not daemon.samples.features_recomputed
    assert not list(state.glob("*.bad-*"))
    assert running.stop() == 0


def test_a_new_bottleneck_recomputes_the_features_and_says_to_retrain(
    config_writer, start_daemon, artifacts_dir, caplog
):
    """Samples whose features another bottleneck computed (the store says which): their
    windows are re-run through this one, kept, and the journal says to train again; a head
    trained on the old features is set aside."""
    state = config_writer.directory / "state"
    state.mkdir(parents=True)
    facts = artifact_facts(artifacts_dir)
    old = dataclasses.replace(facts, layout=facts.layout.with_bottleneck("0" * 64))
    prefill_samples(state / SAMPLES_FILE, old, per_class=3)
    ParamStore(state / PARAMS_FILE, "head bound to the old bottleneck").save(
        trained_head(facts, epoch=5)
    )
    with SampleStore.open(state / SAMPLES_FILE, old.layout) as before:
        windows = before.load().windows

    with caplog.at_level(logging.WARNING):
        running = start_daemon()
    daemon = running.daemon
    assert daemon.samples.features_recomputed and daemon.samples.counts() == (3, 3)
    loaded = daemon.samples.load()
    np.testing.assert_array_equal(loaded.windows, windows)
    np.testing.assert_allclose(
        loaded.features, daemon.engine.bottleneck.features_of(windows), rtol=1e-6
    )
    assert any("train the head again" in r.getMessage() for r in caplog.records)
    assert not daemon.latest.trained
    assert list(state.glob(f"{PARAMS_FILE}.bad-*")) and not list(
        state.glob(f"{SAMPLES_FILE}.bad-*")
    )
    assert running.stop() == 0


def test_a_recompute_at_start_extends_systemds_start_limit_and_says_so(
    config_writer, start_daemon, artifacts_dir, short_socket_dir
):
    """Re-running a large store through a new bottleneck can outlast TimeoutStartSec: before
    READY the daemon asks for more time (EXTEND_TIMEOUT_USEC) and STATUS says how far it got,
    heard on a real datagram socket where systemd would listen."""
    state = config_writer.directory / "state"
    state.mkdir(parents=True)
    facts = artifact_facts(artifacts_dir)
    old = dataclasses.replace(facts, layout=facts.layout.with_bottleneck("0" * 64))
    prefill_samples(state / SAMPLES_FILE, old, per_class=3)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(short_socket_dir / "notify"))
    listener.settimeout(30)
    try:
        running = start_daemon(
            notifier=SystemdNotifier(environ={"NOTIFY_SOCKET": str(short_socket_dir / "notify")})
        )
        heard: list[str] = []
        while not heard or "READY=1" not in heard[-1]:
            heard.append(listener.recv(65536).decode())
    finally:
        listener.close()
    extension = f"EXTEND_TIMEOUT_USEC={int(RECOMPUTE_EXTENSION * 1e6)}"
    assert extension in heard[:-1], heard
    said = [m for m in heard if m.startswith("STATUS=starting: features")]
    assert said and said[-1].endswith("6 of 6 records"), heard
    assert running.daemon.samples.counts() == (3, 3)
    assert running.stop() == 0


def test_a_head_saved_by_an_earlier_odar_under_the_manifest_hash_still_loads(
    config_writer, start_daemon, artifacts_dir
):
    """Before state was bound by what matters, a head carried manifest.json's SHA-256: an
    upgrade must not discard it."""
    state = config_writer.directory / "state"
    state.mkdir(parents=True)
    facts = artifact_facts(artifacts_dir)
    legacy = sha256_of(artifacts_dir / "manifest.json")
    ParamStore(state / PARAMS_FILE, legacy).save(trained_head(facts, epoch=9))
    running = start_daemon()
    assert running.daemon.latest.trained and running.daemon.latest.get().epoch == 9
    assert not list(state.glob("*.bad-*"))
    assert running.stop() == 0
