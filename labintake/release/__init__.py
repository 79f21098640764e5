"""Release of verified orders to the LIS, replies to placers, and the stub LIS.

enqueue_release(session, order, actor, modifiers=())   the one way to release an order
release_verified(engine, limit=500) -> int              batch: verified orders to the outbox
Sender(engine, endpoint, policy).deliver_due() -> int   one delivery round over MLLP
resend_dead_letter(session, entry_id, actor)            a dead letter back in line
StubLis(port=0).start()                                 an LIS stand-in (demo, tests)
"""

from labintake.release.bulk import release_verified
from labintake.release.connection import Endpoint
from labintake.release.delivery import RetryPolicy, resend_dead_letter
from labintake.release.outbox import enqueue_release
from labintake.release.sender import Sender, SenderOptions, deliver_until_idle
from labintake.release.stub_lis import StubLis

__all__ = [
    "Endpoint",
    "RetryPolicy",
    "Sender",
    "SenderOptions",
    "StubLis",
    "deliver_until_idle",
    "enqueue_release",
    "release_verified",
    "resend_dead_letter",
]
