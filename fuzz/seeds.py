#!/usr/bin/env python3
"""Writes the seed corpus of Prism's fuzz targets into fuzz/corpus/<target>/.

Run from anywhere: `python3 fuzz/seeds.py`. Only the standard library is
used. Namespace YAMLs come from examples/config/, prism-proxy/defaults/ and
the configuration reference; the rest is built here. JWTs are signed with a
key made for this run and thrown away (nothing secret is written), page
tokens are encoded as the server encodes them (patterns/core/src/paging.rs,
keyvalue/cursor.rs and timeseries/cursor.rs).
Each run rewrites the corpus (the JWT signatures change every run).
"""

import base64
import hashlib
import hmac
import json
import re
import secrets
import struct
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"


def write(target, data, name=None):
    if isinstance(data, str):
        data = data.encode()
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    name = name or hashlib.sha1(data).hexdigest()[:16]
    (folder / name).write_bytes(data)


# --- namespace YAML --------------------------------------------------------


def namespace_yamls():
    out = {}
    for folder in ["examples/config/namespaces", "prism-proxy/defaults"]:
        for path in sorted((ROOT / folder).glob("*.yaml")):
            out[f"{folder.replace('/', '-')}-{path.name}"] = path.read_text()
    reference = (ROOT / "docs-cms/configuration.md").read_text()
    n = 0
    for block in re.findall(r"```yaml\n(.*?)```", reference, re.S):
        for doc in block.split("\n---\n"):
            if "name:" in doc and "dal:" in doc:
                n += 1
                out[f"configuration-md-{n}.yaml"] = doc
    out["policy-schema.yaml"] = """name: profiles
dal: keyvalue
backend: {kind: memstore}
schema:
  proto: user_profile.proto
  message: acme.users.v1.UserProfile
  encoding: json
  allow_unknown_fields: false
policy:
  admin: ["user:alice"]
  read: ["*", "group:support"]
  write: ["user:profile-service"]
  pii_read: ["group:support-tier2"]
audit: {policy: drop, clear_keys: true}
"""
    out["needs-local.yaml"] = """name: carts
dal: keyvalue
needs:
  durability: durable
  scope: local
  write_rps: 50
"""
    out["needs-shared.yaml"] = """name: carts-shared
dal: keyvalue
needs: {scope: shared, write_rps: 5000, retention_days: 7}
"""
    out["remote-pattern.yaml"] = """name: remote-kv
dal: keyvalue
backend:
  kind: redis
  mode: remote
  pattern:
    address: 127.0.0.1:7000
    start_timeout_secs: 5
"""
    out["anchors.yaml"] = """limits: &l
  max_key_bytes: 64
name: &n anchors
dal: keyvalue
description: *n
backend: {kind: memstore, options: {a: [1, 2, {b: c}], d: "e"}}
"""
    out["block-scalar.yaml"] = """name: scalars
description: |
  - [ { not: nesting } ]
  - - - -
dal: keyvalue
backend:
  kind: sqlite
  options: {path: "a.db"}
"""
    out["deep-flow.yaml"] = "name: deep\ndal: keyvalue\nbackend: {kind: memstore, options: " + (
        "[" * 30
    ) + ("]" * 30) + "}\n"
    # Regressions: brackets after a quote inside a plain scalar, and lone
    # CR line breaks, once passed the depth bound (config/bounds.rs).
    deep = "[" * 40 + "]" * 40
    out["regression-quote-in-plain-scalar.yaml"] = (
        "name: deep\ndal: keyvalue\nbackend: {kind: memstore, options: [a 'b, " + deep + "]}\n"
    )
    out["regression-cr-line-breaks.yaml"] = (
        "name: deep\rdal: keyvalue\rbackend:\r  kind: memstore\r  options:\r    k:\r"
        + "- " * 40
        + "x\r"
    )
    return out


# --- admin JSON ------------------------------------------------------------


def admin_bodies(yamls):
    bodies = [
        "",
        "{}",
        '{"name": "orders"}',
        '{"name": "orders", "expectedVersion": "3"}',
        '{"name": "orders", "expected_version": 0}',
        '{"namespace": "orders", "principal": "alice", "status": "not_found", "follow": true, "limit": 10}',
        '{"name": "orders", "action": "start", "to": "{kind: postgres, options: {url: postgres://prism@db/prism}}", "readSample": 0.05, "backfillRate": 5000, "force": false}',
        '{"name": "orders", "action": "advance"}',
        '{"action": "rollback", "readSample": "NaN"}',
        '{"yaml": "", "dryRun": true}',
        '{"unknown": 1}',
        '{"yaml": null, "dryRun": null, "expectedVersion": "18446744073709551615"}',
    ]
    for text in list(yamls.values())[:6]:
        bodies.append(json.dumps({"yaml": text, "dryRun": True}))
        bodies.append(json.dumps({"yaml": text, "expectedVersion": "0"}))
    return bodies


# --- schema values (fuzz/value.proto, prism.fuzz.v1.Profile) ----------------

PROFILE = {
    "userId": "u-1",
    "email": "jane.doe@example.com",
    "fullName": "Jane Doe",
    "phones": ["+1 415 555 0142", "020 555 0100"],
    "ssn": "123-45-6789",
    "ip": "192.0.2.17",
    "card": "4111 1111 1111 1111",
    "birthDate": "1990-04-01",
    "birthUnixDays": "7395",
    "home": {"street": "1 Main St", "city": "Utrecht", "country": "NL"},
    "previous": [{"street": "9 Old Rd", "country": "BE"}],
    "contacts": {"mobile": "+31 6 1234 5678", "work": "+31 30 123 4567"},
    "offices": {"hq": {"street": "2 Dam", "city": "Amsterdam"}},
    "hiddenAddress": {"street": "secret"},
    "photo": "aGVsbG8=",
    "plan": "PLAN_GOLD",
    "pager": "555 0199",
    "created": "2026-12-07T12:00:00.5Z",
    "ttl": "3600.25s",
    "extra": {"a": [1, "two", None, True, {"b": 2.5}]},
    "nickname": "JD",
    "referrals": [{"userId": "u-2", "email": "bob@example.org", "referrals": [{"ip": "2001:db8::1"}]}],
    "score": 1.5,
    "ratio": "Infinity",
    "visits": "18446744073709551615",
    "delta": -7,
    "checksum": "42",
    "active": True,
    "counts": [1, -2, 3],
    "attachment": {"@type": "type.googleapis.com/prism.fuzz.v1.Address", "street": "in an Any"},
    "dynamic": {"k": [None]},
    "fields": "userId,home.street",
    "plans": ["PLAN_FREE", 2],
    "notes": {"-5": "x@example.com"},
}


def json_values():
    values = [
        PROFILE,
        {},
        {"userId": "u-3", "mail": {"street": "Postbus 1"}},
        {"email": "@", "ip": "not an ip", "birthDate": "19x0", "ssn": "12"},
        {"user_id": "snake case is accepted too", "full_name": "A"},
        {"created": "1970-01-01T00:00:00Z", "ttl": "-315576000000s"},
        {"created": "9999-12-31T23:59:59.999999999Z", "ttl": "315576000000s"},
    ]
    out = [json.dumps(v) for v in values]
    out += [
        '{"undeclared": 1}',
        '{"email": 5}',
        '{"home": {"street": "x", "zip": "1234"}}',
        '{"created": "not a time"}',
        '{"visits": "-1"}',
        "[]",
        "null",
        '{"email": "a@b"} trailing',
        '{"plan": "PLAN_PLATINUM"}',
        '{"extra": ' + "[" * 40 + "]" * 40 + "}",
    ]
    return out


def varint(n):
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(number, wire, payload):
    key = varint(number << 3 | wire)
    if wire == 2:
        return key + varint(len(payload)) + payload
    return key + payload


def s(number, text):
    return field(number, 2, text.encode() if isinstance(text, str) else text)


def v(number, n):
    return field(number, 0, varint(n))


def protobuf_values():
    address = s(1, "1 Main St") + s(2, "Utrecht") + s(3, "NL")
    timestamp = v(1, 1796558400) + v(2, 500000000)
    duration = v(1, 3600) + v(2, 250000000)
    entry = lambda k, val: s(1, k) + s(2, val)  # noqa: E731
    struct = s(1, s(1, "a") + s(2, s(3, "text")))  # Struct{fields: {"a": "text"}}
    full = b"".join(
        [
            s(1, "u-1"),
            s(2, "jane.doe@example.com"),
            s(3, "Jane Doe"),
            s(4, "+1 415 555 0142"),
            s(4, "020 555 0100"),
            s(5, "123-45-6789"),
            s(6, "192.0.2.17"),
            s(7, "4111 1111 1111 1111"),
            s(8, "1990-04-01"),
            v(9, 7395),
            s(10, address),
            s(11, address),
            s(12, entry("mobile", "+31 6 1234 5678")),
            s(13, s(1, "hq") + s(2, address)),
            s(14, address),
            s(15, b"\x89PNG"),
            v(16, 2),
            s(17, "555 0199"),
            s(19, timestamp),
            s(20, duration),
            s(21, struct),
            s(22, s(1, "JD")),
            s(23, s(1, "u-2") + s(2, "bob@example.org")),
            field(24, 1, struct_pack("<d", 1.5)),
            field(25, 5, struct_pack("<f", 0.25)),
            v(26, (1 << 64) - 1),
            v(27, 13),
            field(28, 1, struct_pack("<Q", 42)),
            v(29, 1),
            s(30, varint(1) + varint((1 << 64) - 2) + varint(3)),
            s(31, s(1, "type.googleapis.com/prism.fuzz.v1.Address") + s(2, address)),
            s(32, v(4, 1)),
            s(33, s(1, "user_id")),
            v(34, 1),
            s(35, v(1, (1 << 64) - 5) + s(2, "x@example.com")),
        ]
    )
    return [
        full,
        b"",
        s(18, address),  # the other oneof case
        s(2, "a@b") + s(2, "c@d"),  # a repeated scalar field: the last wins
        v(99, 1),  # an undeclared field
        s(10, address + v(9, 1)),  # an undeclared field in a nested message
        s(2, b"\xff\xfe"),  # not UTF-8
        b"\x0a\x05ab",  # truncated
        v(16, 7),  # an enum value the schema does not declare
        s(23, s(23, s(23, s(2, "deep@example.com")))),
        field(1, 3, b"") + field(1, 4, b""),  # a group
    ]


def struct_pack(fmt, value):
    return struct.pack(fmt, value)


# --- page tokens (pattern-core paging.rs, {keyvalue,timeseries}/cursor.rs) ---

OFFSET = 0xCBF29CE484222325
PRIME = 0x100000001B3
MASK = (1 << 64) - 1


class Fingerprint:
    def __init__(self, domain):
        self.h = OFFSET
        self.str(domain)

    def raw(self, data):
        for b in data:
            self.h = ((self.h ^ b) * PRIME) & MASK

    def bytes(self, data):
        self.raw(struct.pack("<Q", len(data)))
        self.raw(data)

    def str(self, text):
        self.bytes(text.encode())


def request_fingerprint(namespace, rpc, id_, selection="all"):
    fp = Fingerprint("page")
    fp.str(namespace)
    fp.str(rpc)
    fp.str(id_)
    fp.str(selection)  # Selection::All
    return fp.h


def read_fingerprint(namespace, query):
    fp = Fingerprint("timeseries.read.page")
    fp.str(namespace)
    fp.str(query)
    return fp.h


def checksum(body):
    fp = Fingerprint("token")
    fp.bytes(body)
    return (fp.h ^ (fp.h >> 32)) & 0xFFFFFFFF


def chunk(data):
    return struct.pack("<I", len(data)) + data


def frame(request, body):
    body = bytes([1]) + struct.pack("<Q", request) + body
    return (body + struct.pack("<I", checksum(body))).hex()


def page_token(request, after_id, after_key, snapshot=0):
    # A KeyValue cursor.
    return frame(request, struct.pack("<Q", snapshot) + chunk(after_id) + chunk(after_key))


def read_token(request, after_time_us, after_event_id):
    # A TimeSeries Read cursor.
    body = chunk(b"ts.read") + struct.pack("<q", after_time_us) + chunk(after_event_id)
    return frame(request, body)


def page_tokens():
    # The fuzz target's request: a Scan of user-1 in orders.
    request = request_fingerprint("orders", "keyvalue.Scan", "user-1")
    tokens = [
        page_token(request, b"", b"order-0042"),
        page_token(request, b"user-1", b"\x00\xff" * 8, snapshot=17),
        page_token(request, b"", b""),
        page_token(request, b"caf\xc3\xa9", b"k", snapshot=(1 << 64) - 1),
        page_token(request_fingerprint("orders", "keyvalue.Get", "user-1"), b"", b"a"),
        page_token(request, b"series-1", struct.pack(">q", 1796558400000)),
    ]
    # The fuzz target's Read: series-1 in orders.
    read = read_fingerprint("orders", "series-1")
    tokens += [
        read_token(read, 1796558400000000, b"e-1"),
        read_token(read, -1, b""),
        read_token(request, 0, b"evt"),
    ]
    tokens.append(tokens[0].upper())
    tokens.append(tokens[0][:-2])
    tokens.append(tokens[0][:-1] + ("0" if tokens[0][-1] != "0" else "1"))
    tokens += ["", "zz", "01", "0" * 58]
    return tokens


# --- JWTs --------------------------------------------------------------------


def b64(data):
    if isinstance(data, (dict, list)):
        data = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


ISSUER = "https://issuer.fuzz.test/"  # prism_fuzz::JWT_ISSUER
AUDIENCE = "prism"


def claims(**extra):
    c = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "exp": 4102444800,
        "iat": 1796558400,
        "groups": ["orders-writers", "readers"],
        "scope": "kv.read kv.write",
        "scp": ["admin"],
    }
    c.update(extra)
    return c


def jwts():
    key = secrets.token_bytes(32)  # this run's only: the tokens fail at the signature

    def hs256(header, body):
        message = f"{b64(header)}.{b64(body)}"
        sig = hmac.new(key, message.encode(), hashlib.sha256).digest()
        return f"{message}.{b64(sig)}"

    es256 = {"alg": "ES256", "typ": "JWT", "kid": "fuzz-es256"}
    tokens = [
        hs256({"alg": "HS256", "typ": "JWT"}, claims()),
        f"{b64(es256)}.{b64(claims())}.{b64(secrets.token_bytes(64))}",
        f"{b64({'alg': 'RS256', 'kid': 'other'})}.{b64(claims())}.{b64(secrets.token_bytes(256))}",
        f"{b64({'alg': 'none'})}.{b64(claims())}.",
        f"{b64({'alg': 'ES256'})}.{b64(claims())}.{b64(secrets.token_bytes(64))}",
        b64({"alg": "HS256", "typ": "JWT", "kid": "k1", "jku": "https://x", "crit": ["exp"]}),
        f"{b64({'alg': 'EdDSA'})}.e30.",
        "a.b.c",
        "...",
    ]
    out = tokens + [f"Bearer {t}" for t in tokens[:5]] + ["bearer   x.y.z", "Basic dXNlcjpwYXNz"]
    # `<header JSON>\n<claims JSON>`: the target signs these with its own
    # secret, so the claims checks run on a valid signature.
    hs = {"alg": "HS256", "typ": "JWT"}
    for header, body in [
        (hs, claims()),
        (hs, claims(aud=["other", AUDIENCE], nbf=1796558400)),
        (hs, claims(exp=1000000000)),
        (hs, claims(iss="https://evil.test/")),
        (hs, claims(sub="")),
        (hs, claims(groups="one-group", scope=["not", "a", "string"])),
        (hs, claims(exp="4102444800")),
        ({"alg": "HS256", "kid": "fuzz-es256"}, claims()),
        ({"alg": "ES256", "kid": "fuzz-es256"}, claims()),
        (hs, {"sub": "bob"}),
    ]:
        out.append(json.dumps(header) + "\n" + json.dumps(body))
    return out


def main():
    if CORPUS.exists():
        for folder in CORPUS.iterdir():
            for seed in folder.iterdir():
                seed.unlink()
    yamls = namespace_yamls()
    for name, text in yamls.items():
        write("namespace_yaml", text, name)
    for body in admin_bodies(yamls):
        write("admin_json", body)
    for value in json_values():
        write("schema_value_json", value)
    for value in protobuf_values():
        write("schema_value_protobuf", value)
    for token in page_tokens():
        write("page_token", token)
    for token in jwts():
        write("jwt_header", token)
    for target in sorted(p.name for p in CORPUS.iterdir()):
        print(f"{target}: {len(list((CORPUS / target).iterdir()))} seeds")


if __name__ == "__main__":
    main()
