"""Where a business number's secrets live: a reference, never the secret itself.

A reference is `env:NAME` (an environment variable of the process reading it) or
`file:/absolute/path` (a file holding the secret, as Docker and Kubernetes mount them).
Only references are stored in the database, so a database dump or a replica holds no
access token and no app secret; each process resolves them when it reads the numbers.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

__all__ = ["SecretRefError", "check_ref", "resolve_ref"]

# The same shape the `business_numbers` table checks.
_REF = re.compile(r"(env:[A-Za-z_][A-Za-z0-9_]*|file:/.+)")
# A secret file is a line or a few; anything longer is not one.
_MAX_FILE_BYTES = 16 * 1024


class SecretRefError(ValueError):
    """A reference of the wrong shape, or one that names nothing readable here. The
    message names the reference, never a secret."""


def check_ref(ref: str) -> str:
    """`ref` itself when it has the shape of a reference; a clear error otherwise (a
    token pasted where its reference belongs is refused here, before it is stored)."""
    if not _REF.fullmatch(ref):
        raise SecretRefError(
            "a secret is given by reference: env:VARIABLE_NAME or file:/absolute/path"
            " (the value itself is never stored)"
        )
    return ref


def resolve_ref(ref: str, environ: Mapping[str, str] | None = None) -> str:
    """The secret `ref` names, stripped of surrounding whitespace."""
    scheme, _, where = check_ref(ref).partition(":")
    if scheme == "env":
        value = (os.environ if environ is None else environ).get(where, "")
        if not value.strip():
            raise SecretRefError(f"{ref}: the environment variable is unset or empty")
        return value.strip()
    path = Path(where)
    try:
        with path.open("rb") as file:
            raw = file.read(_MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise SecretRefError(f"{ref}: cannot be read ({exc.strerror or exc})") from None
    if len(raw) > _MAX_FILE_BYTES:
        raise SecretRefError(f"{ref}: larger than a secret file can be")
    try:
        value = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise SecretRefError(f"{ref}: the file is not text") from None
    if not value:
        raise SecretRefError(f"{ref}: the file is empty")
    return value
