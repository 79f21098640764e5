"""Peer: hl7apy's MLLPServer; parses each message with hl7apy and builds the ACK with it.

Run: ``python -m benchmarks.peers.hl7apy_server --port 0``. Prints ``listening 127.0.0.1 PORT``
once ready and serves until SIGTERM or SIGINT. Nothing is stored.

hl7apy's server reads one message per connection and then closes it (a thread per
connection, reading the frame a byte at a time), so its senders must reconnect for every
message; the benchmark does that for this peer and says so in its table.
"""

from __future__ import annotations

import argparse
import signal
import threading
from datetime import UTC, datetime
from types import FrameType

from hl7apy.core import Message
from hl7apy.mllp import AbstractErrorHandler, AbstractHandler, MLLPServer
from hl7apy.parser import parse_message


def _ack(code: str, control_id: str, sender: tuple[str, str], version: str) -> str:
    ack = Message("ACK", version=version)
    ack.msh.msh_3 = "PEER"
    ack.msh.msh_4 = "BENCH"
    ack.msh.msh_5 = sender[0]
    ack.msh.msh_6 = sender[1]
    ack.msh.msh_7 = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    ack.msh.msh_9 = "ACK"
    ack.msh.msh_10 = f"A{control_id}"[:20]
    ack.msh.msh_11 = "P"
    ack.msa.msa_1 = code
    ack.msa.msa_2 = control_id
    mllp: str = ack.to_mllp()
    return mllp


class OrderHandler(AbstractHandler):  # type: ignore[misc]
    """Parses the order with hl7apy (tolerant, with groups) and answers AA."""

    def reply(self) -> str:
        message = parse_message(self.incoming_message)
        sender = (message.msh.msh_3.value, message.msh.msh_4.value)
        return _ack("AA", message.msh.msh_10.value, sender, message.version)


class ErrorHandler(AbstractErrorHandler):  # type: ignore[misc]
    """Anything the server cannot route or parse gets AR."""

    def reply(self) -> str:
        return _ack("AR", "", ("", ""), "2.5.1")


def build_server(host: str, port: int) -> MLLPServer:
    handlers = {
        "ORM^O01": (OrderHandler,),
        "ORM^O01^ORM_O01": (OrderHandler,),
        "OML^O21": (OrderHandler,),
        "OML^O21^OML_O21": (OrderHandler,),
        "ERR": (ErrorHandler,),
    }
    server = MLLPServer(host, port, handlers)
    server.daemon_threads = True
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = build_server(args.host, args.port)

    def stop(_signum: int, _frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"listening {args.host} {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
