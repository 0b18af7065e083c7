"""Lint fixture files: ``fixtures/PLxxx_fail.yaml`` must raise rule PLxxx at the positions its
``# expect:`` comment lists; ``PLxxx_pass.yaml`` must not raise it.

Secret-shaped strings are assembled here and spliced into ``@@NAME@@`` placeholders, so that the
repository itself holds no key a secret scanner would flag.
"""

from __future__ import annotations

import re
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"

SECRETS = {
    "OPENAI": "sk-proj-" + "Zq8vN3xW1pL7rT5y" + "Bk2mC9dF4gH6jK0s" + "Qa1Wb2Ec3Rd4Tf5Y",
    "AWS": "AKIA" + "Q3ZJ7K2M" + "X5N8P4RT",
    "GITHUB": "ghp_" + "a1B2c3D4e5F6g7H8i9J0" + "k1L2m3N4o5P6" + "q7R8",
    "SLACK": "xoxb-" + "123456789012" + "-" + "1234567890123" + "-" + "AbCdEfGhIjKlMnOpQrStUvWx",
    "PEM": "-----BEGIN " + "OPENSSH PRIVATE" + " KEY-----",
    "GENERIC": "9fQ2" + "xL7pZr4KvB1mWs8T" + "nY3cH6",
}


def fixture_text(name: str) -> str:
    text = (FIXTURES / name).read_text(encoding="utf-8")
    return re.sub(r"@@([A-Z]+)@@", lambda m: SECRETS[m.group(1)], text)


def write_fixture(name: str, folder: Path) -> Path:
    """The fixture ``name`` with its secrets spliced in, written to ``folder``."""
    path = folder / name
    path.write_text(fixture_text(name), encoding="utf-8")
    return path


def expected_positions(name: str) -> list[tuple[str, int, int]]:
    """The (rule, line, column) list of a fixture's ``# expect:`` comment."""
    first = fixture_text(name).splitlines()[0]
    return [(r, int(ln), int(col)) for r, ln, col in re.findall(r"(PL\d{3}) (\d+):(\d+)", first)]
