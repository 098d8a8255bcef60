"""The schema version of a shard sample and the rule for which versions a reader accepts."""
from __future__ import annotations

import re

# MAJOR.MINOR. A minor bump only adds optional fields; a major bump renames, removes or changes
# the meaning of a field. See SPEC.md, "Versioning".
SCHEMA_VERSION = "1.0"

_VERSION_RE = re.compile(r"^(\d+)\.(\d+)$")


class UnsupportedSchemaVersionError(ValueError):
    """A sample was written under a schema version this reader cannot read."""


def _parse(version: str) -> tuple[int, int]:
    match = _VERSION_RE.match(version) if isinstance(version, str) else None
    if match is None:
        raise UnsupportedSchemaVersionError(
            f"schema_version {version!r} is not of the form 'MAJOR.MINOR' (this reader writes {SCHEMA_VERSION!r})"
        )
    return int(match.group(1)), int(match.group(2))


def check_schema_version(version: str) -> None:
    """Raise UnsupportedSchemaVersionError unless a sample at `version` can be read by this code.

    Same major and an equal or older minor are readable. A newer minor is refused too: its extra
    optional fields would otherwise surface as confusing 'extra fields not permitted' errors.
    """
    major, minor = _parse(version)
    own_major, own_minor = _parse(SCHEMA_VERSION)
    if major != own_major:
        raise UnsupportedSchemaVersionError(
            f"schema_version {version!r} has major version {major}, this reader only knows major {own_major} "
            f"(schema {SCHEMA_VERSION}); re-curate the shards or use the data_specs release for major {major}"
        )
    if minor > own_minor:
        raise UnsupportedSchemaVersionError(
            f"schema_version {version!r} is newer than this reader's {SCHEMA_VERSION!r}; "
            "update ovi-pl (data_specs) to read these shards"
        )
