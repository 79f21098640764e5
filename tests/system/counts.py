"""What the database holds for one sender, counted straight from the tables."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import text

from labintake.db import make_engine


def stored_control_ids(database_url: str, sending_application: str) -> Counter[str]:
    """How many inbound rows each control id of `sending_application` has."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT control_id, count(*) FROM inbound_message "
                    "WHERE sending_application = :app GROUP BY control_id"
                ),
                {"app": sending_application},
            ).all()
    finally:
        engine.dispose()
    return Counter({str(control_id): int(count) for control_id, count in rows})
