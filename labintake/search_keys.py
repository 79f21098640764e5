"""Keys the queue sorts and searches by, computed once when an order is written.

`fold` makes names comparable whatever the case and accents ("Núñez", "NUNEZ" and "nunez"
give the same key), in Python rather than in SQL: SQLite's `lower()` only knows ASCII, and
both databases must answer a search the same way. `priority_rank` orders HL7 priorities
(table 0027) so that STAT comes first.
"""

from __future__ import annotations

import unicodedata

# Letters that carry no combining mark to strip, written as a reader would search for them.
_LETTERS = str.maketrans(
    {"ø": "o", "æ": "ae", "œ": "oe", "đ": "d", "ð": "d", "ł": "l", "ħ": "h", "ı": "i"}
)
# HL7 table 0027 (priority), by its first letter: S stat; A as soon as possible and T timing
# critical; P preoperative and C callback; R routine and anything else.
STAT_RANK = 0
ROUTINE_RANK = 3
_RANKS = {"S": STAT_RANK, "A": 1, "T": 1, "P": 2, "C": 2, "R": ROUTINE_RANK}
PRIORITY_LABELS = {0: "STAT", 1: "ASAP", 2: "timed", 3: "routine"}


def fold(text: str) -> str:
    """Lower case without accents: 'Núñez' -> 'nunez', 'Þórsdóttir' -> 'þorsdottir'."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(bare.translate(_LETTERS).split())


def priority_rank(priority: str) -> int:
    """0 for STAT ('S', 'STAT'), 1 for ASAP / timing critical, 2 preop / callback, 3 routine."""
    first = priority.strip()[:1].upper()
    return _RANKS.get(first, ROUTINE_RANK)
