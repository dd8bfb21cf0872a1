#!/usr/bin/env python3
"""A real SMTP server for the TLS and login tests: aiosmtpd with STARTTLS or implicit TLS,
AUTH PLAIN, LOGIN or XOAUTH2, writing each message it accepts to a folder (a JSON line with
the envelope, the login and whether TLS was on, then the message). Prints READY when it
listens."""
import argparse
import base64
import json
import os
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--mode", choices=["starttls", "tls", "plain"], required=True)
p.add_argument("--cert")
p.add_argument("--key")
p.add_argument("--user")
p.add_argument("--password")
p.add_argument("--token", help="the XOAUTH2 bearer tokens accepted, comma-separated")
p.add_argument("--exclude", default="", help="AUTH mechanisms not offered, comma-separated")
p.add_argument("--no-smtputf8", action="store_true")
p.add_argument("--dir", required=True)
args = p.parse_args()


def cipher(server):
    """The TLS cipher suite the client and this server agreed on (implicit TLS or STARTTLS)."""
    extra = server._tls_protocol._extra if server._tls_protocol is not None else {}
    suite = server.transport.get_extra_info("cipher") or extra.get("cipher")
    return suite[0] if suite else None


class Handler:
    def __init__(self):
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        meta = {
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "login": session.auth_data,
            "tls": server.transport.get_extra_info("ssl_object") is not None
            or server._tls_protocol is not None,
            "smtputf8": envelope.smtp_utf8,
            "cipher": cipher(server),
        }
        path = os.path.join(args.dir, f"{self.count:06d}.eml")
        with open(path + ".part", "wb") as f:
            f.write(json.dumps(meta).encode() + b"\n")
            f.write(envelope.original_content)
        os.rename(path + ".part", path)
        return "250 2.0.0 OK"

    async def auth_XOAUTH2(self, server, arguments):
        # RFC-less but documented by Google and Microsoft: base64 of
        # "user=U\x01auth=Bearer T\x01\x01" as the initial response.
        if len(arguments) != 2:
            return AuthResult(success=False, handled=False, message="501 5.5.2 initial response required")
        try:
            text = base64.b64decode(arguments[1]).decode()
            fields = dict(f.split("=", 1) for f in text.split("\x01") if f)
        except Exception:
            return AuthResult(success=False, handled=False, message="501 5.5.2 bad XOAUTH2 response")
        tokens = (args.token or "").split(",")
        if fields.get("user") == args.user and fields.get("auth", "").removeprefix("Bearer ") in tokens:
            return AuthResult(success=True, auth_data=fields["user"])
        return AuthResult(success=False, handled=False, message="535 5.7.3 Authentication unsuccessful")


def authenticator(server, session, envelope, mechanism, auth_data):
    login = auth_data.login.decode()
    ok = login == args.user and auth_data.password.decode() == args.password
    return AuthResult(success=ok, handled=False, auth_data=login if ok else None)


context = None
if args.mode != "plain":
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    # The client's order of cipher suites decides, as with Postfix (tls_preempt_cipherlist = no)
    # and stunnel by default; Python's default context would impose its own.
    context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE

kwargs = dict(
    hostname="127.0.0.1",
    port=args.port,
    enable_SMTPUTF8=not args.no_smtputf8,
    decode_data=False,
    auth_exclude_mechanism=[m for m in args.exclude.split(",") if m],
)
if args.user:
    # aiosmtpd counts only STARTTLS as TLS; on implicit TLS every command is encrypted anyway.
    kwargs.update(authenticator=authenticator, auth_required=True, auth_require_tls=args.mode == "starttls")
if args.mode == "tls":
    kwargs["ssl_context"] = context
elif args.mode == "starttls":
    kwargs.update(tls_context=context, require_starttls=True)

controller = Controller(Handler(), **kwargs)
controller.start()
print("READY", flush=True)
try:
    while True:
        time.sleep(3600)
except KeyboardInterrupt:
    controller.stop()
    sys.exit(0)
