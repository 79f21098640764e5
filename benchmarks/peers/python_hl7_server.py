"""Peer: python-hl7's asyncio MLLP server; parses each message and answers AA, in memory.

Run: ``python -m benchmarks.peers.python_hl7_server --port 0``. Prints
``listening 127.0.0.1 PORT`` once ready and serves until SIGTERM or SIGINT. Nothing is stored:
this is the cost of framing, parsing (``hl7.parse``) and building the ACK (``create_ack``).
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import hl7
import hl7.mllp


async def _answer(reader: hl7.mllp.HL7StreamReader, writer: hl7.mllp.HL7StreamWriter) -> None:
    try:
        while True:
            message = await reader.readmessage()
            writer.writemessage(message.create_ack("AA"))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve(host: str, port: int) -> None:
    server = await hl7.mllp.start_hl7_server(_answer, host, port)
    bound = server.sockets[0].getsockname()[1]
    print(f"listening {host} {bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
