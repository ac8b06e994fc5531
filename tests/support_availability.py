"""How a check_availability answer lists its free slots, read the same way by the booking
tool tests and by the cost benchmark's placeholder resolver: when the tool's wording
changes, one pattern changes with it."""

from __future__ import annotations

import re

# A slot in a check_availability answer: "City bike 1 (slot 21)", after ": ", ", " or "; ".
LISTED_SLOT = re.compile(r"(?:: |, |; )([^,;:]+?) \(slot (\d+)\)")


def slot_ids(text: str) -> list[int]:
    return [int(found.group(2)) for found in LISTED_SLOT.finditer(text)]
