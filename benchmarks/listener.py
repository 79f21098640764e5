"""labintake's listener alone: the MLLP server and the durable intake store, nothing else.

Run: ``python -m benchmarks.listener`` with the same ``LABINTAKE_*`` settings as
``labintake serve``. It serves MLLP with labintake's own `MLLPServer` and `Intake`
(store-then-ACK through the group-commit writer) but starts no web app and no background
workers, so the benchmark can show the intake path's own capacity next to the whole service,
whose reading, verification and release workers share the process (and its GIL) with the
listener. Stops on SIGTERM or SIGINT after finishing the commits in flight.
"""

from __future__ import annotations

import asyncio
import signal

from labintake.config import Settings
from labintake.db import make_engine
from labintake.intake import Intake
from labintake.mllp.server import MLLPServer


async def serve(settings: Settings) -> None:
    engine = make_engine(settings.database_url)
    intake = Intake(settings, engine)
    intake.start()
    server = MLLPServer(
        intake,
        host=settings.mllp_host,
        port=settings.mllp_port,
        max_message_bytes=settings.max_message_bytes,
        idle_timeout=settings.idle_timeout_seconds,
        max_connections=settings.max_connections,
        max_connections_per_peer=settings.max_connections_per_peer,
        frame_timeout=settings.frame_timeout_seconds,
    )
    await server.start()
    print(f"listening for HL7 (MLLP) on {settings.mllp_host}:{server.bound_port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()
        await asyncio.to_thread(intake.close)
        engine.dispose()


def main() -> None:
    asyncio.run(serve(Settings()))


if __name__ == "__main__":
    main()
