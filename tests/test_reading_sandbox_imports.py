"""The reading sandbox loads the reader alone: not the database side (SQLAlchemy, SQLModel,
the models) nor the settings. Two of them run beside every worker process, and the models
cost each about 40 MB and half a second at start. The column limits they need come from the
parent, which reads them from the models."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from labintake.hl7.limits import ReadingLimits
from labintake.interfaces import load_interfaces
from labintake.models import Order, OrderDiagnosis, OrderTest
from labintake.models.limits import column_limits
from labintake.reading.plan import plan_message
from labintake.reading.rows import model_column_limits
from labintake.reading.sandbox import ReadingSandbox, StoredMessage
from tests.poison_reader import plan_and_modules

INTERFACES = Path(__file__).resolve().parent.parent / "interfaces"
SAMPLE = INTERFACES / "northside-epic" / "samples" / "01-two-orders-dx-before-orc.hl7"


def test_the_sandbox_reads_orders_without_loading_the_database_side() -> None:
    sandbox = ReadingSandbox(INTERFACES, ReadingLimits(), plan_and_modules)
    try:
        message = StoredMessage(1, SAMPLE.read_bytes(), "", "", "")
        plan, loaded = sandbox.read(message, timeout=60)
    finally:
        sandbox.stop()
    assert [order.order["placer_order_number"] for order in plan.orders] == ["NS1001", "NS1002"]
    assert loaded == []


def test_the_sandbox_is_handed_the_models_column_limits() -> None:
    columns = ReadingSandbox(INTERFACES, ReadingLimits()).columns
    assert columns.order == column_limits(Order)
    assert columns.test == column_limits(OrderTest)
    assert columns.diagnosis == column_limits(OrderDiagnosis)
    assert columns.order["patient_family_name"] > 0


def test_the_limits_handed_in_are_the_ones_text_is_cut_to() -> None:
    registry = load_interfaces(INTERFACES)
    models = model_column_limits()
    narrow = dataclasses.replace(models, order={**models.order, "placer_order_number": 4})
    raw = SAMPLE.read_bytes()
    plan = plan_message(1, raw, "", "", "", registry, None, narrow)
    order = plan.orders[0].order
    assert order["placer_order_number"] == "NS10"
    assert "order.placer_order_number cut to 4 characters" in order["details"]["warnings"]
    assert plan_message(1, raw, "", "", "", registry).orders[0].order["placer_order_number"] == (
        "NS1001"
    )
