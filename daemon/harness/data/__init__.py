"""What the demo, the benches and ``odar selftest`` on the emulated wearable read, shipped in
the package so that an installed odar runs them as the checkout does: the demo's config
(``demo.yaml``), the emulated self-test's (``selftest.yaml``) and the built-in scenarios
(``scenarios/``).

These configs name no artifacts directory that exists on every install; :func:`find_artifacts`
looks where a checkout or ``scripts/install.sh`` puts them.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

from odar.config import Config, load_config
from odar.errors import ConfigError

DATA_DIR = Path(__file__).resolve().parent
DEMO_CONFIG = DATA_DIR / "demo.yaml"
SELFTEST_CONFIG = DATA_DIR / "selftest.yaml"
SCENARIOS_DIR = DATA_DIR / "scenarios"
#: scripts/install.sh: the config naming the installed artifacts, and their usual place.
INSTALLED_CONFIG = Path("/etc/odar/odar.yaml")
INSTALLED_ARTIFACTS = Path("/opt/odar/artifacts")
MANIFEST = "manifest.json"


def artifact_candidates(installed_config: Path = INSTALLED_CONFIG) -> list[Path]:
    """Where artifacts may be, in order: the checkout's, the installed config's, /opt/odar's."""
    checkout = Path(__file__).resolve().parents[3] / "artifacts"
    candidates = [checkout]
    # No install here, or a config the daemon would refuse too: skip it.
    with contextlib.suppress(ConfigError):
        candidates.append(load_config(installed_config, environ={}).paths.artifacts_dir)
    candidates.append(INSTALLED_ARTIFACTS)
    return candidates


def find_artifacts(installed_config: Path = INSTALLED_CONFIG) -> Path:
    """The first artifacts directory that holds a manifest; ConfigError naming where it looked."""
    candidates = artifact_candidates(installed_config)
    for candidate in candidates:
        if (candidate / MANIFEST).is_file():
            return candidate
    raise ConfigError(
        "no artifacts found (looked for manifest.json in "
        f"{', '.join(str(c) for c in dict.fromkeys(candidates))}); pass --artifacts DIR"
    )


def with_artifacts(config: Config, artifacts: Path | None) -> Config:
    """*config* with *artifacts* if given, else with its own if they exist, else with
    :func:`find_artifacts`."""
    if artifacts is None:
        if (config.paths.artifacts_dir / MANIFEST).is_file():
            return config
        artifacts = find_artifacts()
    elif not (artifacts / MANIFEST).is_file():
        raise ConfigError(f"--artifacts: {artifacts} holds no {MANIFEST}")
    paths = dataclasses.replace(config.paths, artifacts_dir=artifacts.resolve())
    return dataclasses.replace(config, paths=paths)
