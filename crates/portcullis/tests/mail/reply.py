"""Sends one reply to Portcullis's reply listener with Python's smtplib, as a mail client
would, and prints what the server answered as JSON: {"code": N, "message": "..."}.

Usage: reply.py PORT ENVELOPE_FROM HEADER_FROM TO BODY_FILE [--pad BYTES] [--announce-size]
--pad adds an attachment of that many bytes; --announce-size states the size in MAIL FROM
(SIZE=), as smtplib's sendmail does, so the server can refuse before the data is sent."""

import json
import smtplib
import sys
from email.message import EmailMessage


def main():
    port, env_from, header_from, to, body_file = sys.argv[1:6]
    pad = 0
    announce = "--announce-size" in sys.argv
    if "--pad" in sys.argv:
        pad = int(sys.argv[sys.argv.index("--pad") + 1])
    msg = EmailMessage()
    msg["From"] = header_from
    msg["To"] = to
    msg["Subject"] = "Re: Approval needed"
    with open(body_file, encoding="utf-8") as f:
        msg.set_content(f.read())
    if pad:
        msg.add_attachment(b"\0" * pad, maintype="application", subtype="octet-stream", filename="big.bin")
    data = msg.as_bytes()
    out = {"code": 250, "message": ""}
    with smtplib.SMTP("127.0.0.1", int(port), timeout=120) as s:
        s.ehlo("client.example.test")
        options = [f"SIZE={len(data)}"] if announce else []
        code, text = s.mail(env_from, options)
        if code != 250:
            out = {"code": code, "message": text.decode()}
        else:
            code, text = s.rcpt(to)
            if code != 250:
                out = {"code": code, "message": text.decode()}
            else:
                try:
                    code, text = s.data(data)
                    out = {"code": code, "message": text.decode()}
                except smtplib.SMTPDataError as e:
                    out = {"code": e.smtp_code, "message": e.smtp_error.decode()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
