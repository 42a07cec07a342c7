"""A real SMTP server (aiosmtpd) for the tests: listens on 127.0.0.1 at the given port and
saves every mail it accepts as a file in the given directory. Usage: receiver.py PORT DIR."""

import os
import signal
import sys
import time
import uuid

from aiosmtpd.controller import Controller


class Save:
    def __init__(self, out):
        self.out = out

    async def handle_DATA(self, server, session, envelope):
        name = os.path.join(self.out, f"{time.time_ns()}-{uuid.uuid4().hex}.eml")
        with open(name + ".tmp", "wb") as f:
            f.write(b"X-Envelope-To: " + ",".join(envelope.rcpt_tos).encode() + b"\r\n")
            f.write(envelope.original_content or envelope.content)
        os.rename(name + ".tmp", name)
        return "250 OK"


def main():
    port, out = int(sys.argv[1]), sys.argv[2]
    controller = Controller(Save(out), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    controller.stop()


if __name__ == "__main__":
    main()
