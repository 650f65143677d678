"""What the user calls each class: ``classes.names`` from the config, else the manifest's names.

Either spelling is accepted wherever the user names a class (``inference.trigger_class``,
``odar samples clear CLASS``); what odar prints is the display name.
"""

from __future__ import annotations

from collections.abc import Sequence

from odar.errors import ConfigError


def display_names(
    manifest_classes: Sequence[str], configured: Sequence[str] | None
) -> tuple[str, ...]:
    """The names to show, checked against the artifacts' class count."""
    if configured is None:
        return tuple(manifest_classes)
    if len(configured) != len(manifest_classes):
        raise ConfigError(
            f"classes.names: {len(configured)} names {list(configured)} for the artifacts' "
            f"{len(manifest_classes)} classes ({', '.join(manifest_classes)})"
        )
    return tuple(configured)


def class_index(
    name: str, manifest_classes: Sequence[str], shown: Sequence[str], key: str = "class"
) -> int:
    """The index of the class *name* (a display name or the manifest's); ConfigError if none."""
    for names in (shown, manifest_classes):
        if name in names:
            return list(names).index(name)
    known = list(dict.fromkeys([*shown, *manifest_classes]))
    raise ConfigError(f"{key}: {name!r} is not a class (known: {', '.join(known)})")
