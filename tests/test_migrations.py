from sqlalchemy import inspect
from sqlalchemy.engine import Engine


def test_migrations_create_every_table(engine: Engine) -> None:
    tables = set(inspect(engine).get_table_names())
    assert {"inbound_message", "lab_order", "order_test", "finding", "order_event"} <= tables
    assert "alembic_version" in tables
