#!/usr/bin/python3
"""Independent DKIM and ARC checks for the integration tests (tests/auth.rs),
with Debian's python3-dkim (and python3-nacl for Ed25519). Run it with
/usr/bin/python3: a pyenv python does not see Debian's packages.

  verify.py verify RECORDS.json [MESSAGE|-]
      Verifies every DKIM-Signature (topmost first) and the ARC chain of the
      message, looking keys up in RECORDS.json ({"name": "TXT value"}, names
      without the trailing dot) instead of the DNS. Prints JSON:
      {"dkim": [{"d", "s", "a", "valid", "error"}],
       "arc": {"cv": "pass"|"fail"|"none"|null, "reason",
               "instances": [{"instance", "cv", "ams_valid", "as_valid",
                              "ams_domain", "as_domain"}]}}

  verify.py sign DOMAIN SELECTOR C [MESSAGE|-]
      Signs the message with a fresh Ed25519 key (canonicalization C, e.g.
      simple/simple) over From, To, Subject, Date and Message-ID. Prints JSON
      {"header": "DKIM-Signature: ...\\r\\n", "name": "SELECTOR._domainkey.DOMAIN",
       "txt": "v=DKIM1; k=ed25519; p=..."}.
"""

import base64
import json
import re
import sys

import dkim
import nacl.encoding
import nacl.signing


def read_message(arg):
    if arg in (None, "-"):
        return sys.stdin.buffer.read()
    with open(arg, "rb") as f:
        return f.read()


def text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def verify(records_path, message_arg):
    with open(records_path) as f:
        records = {k.rstrip(".").lower(): v for k, v in json.load(f).items()}

    def dnsfunc(name, timeout=5):
        key = text(name).rstrip(".").lower()
        return records.get(key, "").encode("ascii")

    message = read_message(message_arg)
    # Every DKIM-Signature field, in order (python-dkim numbers them top down).
    headers, _ = dkim.rfc822_parse(message)
    count = sum(1 for name, _ in headers if name.lower() == b"dkim-signature")
    results = []
    for idx in range(count):
        d = dkim.DKIM(message, minkey=1024)
        entry = {"d": None, "s": None, "a": None, "valid": False, "error": None}
        try:
            entry["valid"] = bool(d.verify(idx=idx, dnsfunc=dnsfunc))
        except dkim.DKIMException as e:
            entry["error"] = str(e)
        fields = getattr(d, "signature_fields", None) or {}
        entry["d"] = text(fields.get(b"d")) if fields else None
        entry["s"] = text(fields.get(b"s")) if fields else None
        entry["a"] = text(fields.get(b"a")) if fields else None
        results.append(entry)

    cv, instances, reason = dkim.arc_verify(message, dnsfunc=dnsfunc)
    arc = {
        "cv": text(cv) if cv is not None else None,
        "reason": text(reason),
        "instances": [
            {
                "instance": r.get("instance"),
                "cv": text(r.get("cv")),
                "ams_valid": bool(r.get("ams-valid")),
                "as_valid": bool(r.get("as-valid")),
                "ams_domain": text(r.get("ams-domain")),
                "as_domain": text(r.get("as-domain")),
            }
            for r in instances
        ],
    }
    print(json.dumps({"dkim": results, "arc": arc}))


def sign(domain, selector, canon, message_arg):
    message = read_message(message_arg)
    key = nacl.signing.SigningKey.generate()
    seed = key.encode(encoder=nacl.encoding.Base64Encoder)
    public = base64.b64encode(bytes(key.verify_key)).decode("ascii")
    header_canon, body_canon = canon.split("/")
    header = dkim.sign(
        message,
        selector.encode(),
        domain.encode(),
        seed,
        canonicalize=(header_canon.encode(), body_canon.encode()),
        signature_algorithm=b"ed25519-sha256",
        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
    )
    header = re.sub(rb"\r?\n", b"\r\n", header)
    if not header.endswith(b"\r\n"):
        header += b"\r\n"
    print(
        json.dumps(
            {
                "header": header.decode("ascii"),
                "name": "%s._domainkey.%s" % (selector, domain),
                "txt": "v=DKIM1; k=ed25519; p=%s" % public,
            }
        )
    )


def main(argv):
    if len(argv) >= 2 and argv[0] == "verify":
        verify(argv[1], argv[2] if len(argv) > 2 else None)
    elif len(argv) >= 4 and argv[0] == "sign":
        sign(argv[1], argv[2], argv[3], argv[4] if len(argv) > 4 else None)
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
