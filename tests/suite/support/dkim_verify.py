#!/usr/bin/env python3
"""Verifies every DKIM signature of every message file given, with dkimpy (an implementation
that is not ours). The key records come from a JSON file of [{"name", "value"}], as
`newsletter dkim --format json` prints them, instead of DNS.

Prints one line per signature: FILE INDEX ALGORITHM pass|fail; exits 1 if any fails."""
import json
import sys

import dkim

records = {r["name"].rstrip(".") + ".": r["value"].encode() for r in json.load(open(sys.argv[1]))}


def dnsfunc(name, timeout=5):
    name = name.decode() if isinstance(name, bytes) else name
    return records.get(name if name.endswith(".") else name + ".")


failed = 0
for path in sys.argv[2:]:
    message = open(path, "rb").read()
    verifier = dkim.DKIM(message)
    count = sum(1 for line in message.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
                if line.lower().startswith(b"dkim-signature:"))
    if count == 0:
        print(f"{path} - - unsigned")
        failed += 1
    for i in range(count):
        ok = verifier.verify(idx=i, dnsfunc=dnsfunc)
        algorithm = verifier.signature_fields.get(b"a", b"?").decode()
        print(f"{path} {i} {algorithm} {'pass' if ok else 'fail'}")
        failed += 0 if ok else 1
sys.exit(1 if failed else 0)
