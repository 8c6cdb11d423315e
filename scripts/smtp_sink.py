#!/usr/bin/env python3
"""A local SMTP server for the tests (tests/src/smtp.rs), on aiosmtpd.

Every message it accepts is written to DIR as N.eml (the DATA bytes as received) and
N.json (envelope sender and recipients), N counting from 1; each file is written to a
temporary name and renamed, so a reader never sees half a message. With --user and
--password it offers AUTH PLAIN/LOGIN (also without TLS: loopback only) and refuses
mail from a client that did not authenticate. With --maildir DIR it also delivers every
accepted message into that maildir (written to tmp/, renamed into new/), the way a local
delivery agent does: the tests point it at the test dovecot's INBOX, so mail sent to a
test inbox lands there, whether the IMAP server is up or not.
"""
import argparse
import asyncio
import json
import os
import signal
import socket
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Sink:
    def __init__(self, directory, maildir=None):
        self.directory = directory
        self.maildir = maildir
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        base = os.path.join(self.directory, str(self.count))
        for ext, data in (
            (".json", json.dumps({"from": envelope.mail_from, "rcpt": envelope.rcpt_tos}).encode()),
            (".eml", envelope.original_content or envelope.content),
        ):
            tmp = base + ext + ".tmp"
            with open(tmp, "wb") as f:
                f.write(data)
            os.rename(tmp, base + ext)
        if self.maildir:
            name = "%d.P%dQ%d.%s" % (time.time(), os.getpid(), self.count, socket.gethostname())
            # Files belong to the mailbox's owner, as a delivery agent makes them (the
            # tests run as root in CI, dovecot's processes as the mail user).
            owner = os.stat(self.maildir)
            made = []
            for sub in ("tmp", "new", "cur"):
                d = os.path.join(self.maildir, sub)
                if not os.path.isdir(d):
                    os.makedirs(d)
                    made.append(d)
            tmp = os.path.join(self.maildir, "tmp", name)
            with open(tmp, "wb") as f:
                f.write(envelope.original_content or envelope.content)
            if os.geteuid() == 0:
                for path in made + [tmp]:
                    os.chown(path, owner.st_uid, owner.st_gid)
            os.rename(tmp, os.path.join(self.maildir, "new", name))
        return "250 Message accepted for delivery"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--maildir", help="also deliver every message into this maildir")
    a = ap.parse_args()

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and (
            auth_data.login.decode() == a.user and auth_data.password.decode() == a.password
        )
        # handled=False: aiosmtpd answers 535 itself (handled=True would leave the client waiting).
        return AuthResult(success=ok, handled=False)

    kwargs = {}
    if a.user:
        kwargs = dict(authenticator=authenticator, auth_required=True, auth_require_tls=False)
    controller = Controller(Sink(a.dir, a.maildir), hostname="127.0.0.1", port=a.port, decode_data=False, **kwargs)
    controller.start()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.run_until_complete(stop.wait())
    controller.stop()


if __name__ == "__main__":
    main()
