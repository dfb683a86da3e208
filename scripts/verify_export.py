#!/usr/bin/env python3
"""Reference verifier for a Chronicle audit export (docs/audit.md, "Checking an export").

    python3 verify_export.py --keys keys.json [--trusted-digest HEX]... export.ndjson

Checks the export offline with the public keys alone (the keys file that
`chronicle audit keys` prints, kept where the database's administrators cannot change
it): every event's canonical payload, hash and chain link; that a trusted signature or
the covering checkpoint vouches for every event; the checkpoint chain, its signatures,
the covering checkpoint's digest, and that every head it signed is in the export (for a
complete export). Prints what no checkpoint protects. Exit 0 intact, 1 broken, 2 usage.
Standard library plus `cryptography` (pip install cryptography).
"""
import argparse, base64, hashlib, json, sys
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

GENESIS = "0" * 64


def framed(tag, fields):
    data = tag
    for f in fields:
        b = f.encode()
        data += str(len(b)).encode() + b":" + b + b"\n"
    return data


def strict_object(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate key")
    return dict(pairs)


def no_float(text):
    raise ValueError(f"non-integer number {text}")


def parse(line):
    return json.loads(line, object_pairs_hook=strict_object, parse_float=no_float,
                      parse_constant=no_float)


def canonical(value):
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def event_hash(e):
    m = e["metadata"]
    fields = [e["tenant_id"], e["aggregate_type"], e["aggregate_id"], str(e["sequence"]),
              e["event_type"], e["event_version"]]
    if m.get("hash_version") == "2":
        fields += [e["recorded_at"]] + [m.get(k, "") for k in
                                         ("actor", "request_id", "correlation_id", "causation_id")]
        tag = b"chronicle-event-v2\n"
    elif "hash_version" in m:
        return None
    else:
        tag = b"chronicle-event-v1\n"
    return hashlib.sha256(framed(tag, fields + [canonical(e["payload"]), m.get("prev_hash", "")])).hexdigest()


def verifies(keys, signature, message):
    try:
        sig = base64.b64decode(signature, validate=True)
    except ValueError:
        return False
    for key in keys:
        try:
            key.verify(sig, message)
            return True
        except InvalidSignature:
            pass
    return False


def checkpoint_digest(c, tenant, heads):
    fields = [tenant, c["taken_at"]]
    tag = b"chronicle-checkpoint-v1\n"
    if c["format"] == 2:
        fields += [str(c["counter"]), c["prev_digest"]]
        tag = b"chronicle-checkpoint-v2\n"
    fields.append(str(len(heads)))
    for t, a, s, h in sorted(heads, key=lambda h: (h[0].encode(), h[1].encode())):
        fields += [t, a, str(s), h]
    return hashlib.sha256(framed(tag, fields)).hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", required=True)
    ap.add_argument("--trusted-digest", action="append", default=[])
    ap.add_argument("export")
    args = ap.parse_args()
    with open(args.keys) as f:
        keys = json.load(f)
    load = lambda k: Ed25519PublicKey.from_public_bytes(base64.b64decode(k))
    event_keys = {kid: load(k) for kid, k in keys["event_keys"].items()}
    checkpoint_keys = [load(k) for k in keys["checkpoint_keys"]]
    problems = []
    bad = lambda where, what: problems.append(f"{where}: {what}")

    with open(args.export, encoding="utf-8") as f:
        lines = [parse(line) for line in f if line.strip()]
    if not lines or lines[0].get("type") != "export" or lines[0].get("format") != 2:
        sys.exit("not a format 2 Chronicle export")
    header, tenant = lines[0], lines[0]["tenant_id"]
    complete = header["complete"]
    if complete and (header["since"] or header["until"]):
        bad("header", "claims complete with a time range")
    if lines[-1].get("type") != "end":
        bad("export", "cut short: no end line")
    checkpoints = [l for l in lines if l["type"] == "checkpoint"]
    heads = [(l["aggregate_type"], l["aggregate_id"], l["last_sequence"], l["last_hash"])
             for l in lines if l["type"] == "head"]
    events = [l for l in lines if l["type"] == "event"]
    if lines[-1].get("type") == "end" and lines[-1]["events"] != len(events):
        bad("export", f"end line counts {lines[-1]['events']} events, found {len(events)}")

    # The checkpoint chain: counters, predecessors, signatures; the covering one's digest.
    prev, counter, covering = None, 0, None
    for c in checkpoints:
        where = f"checkpoint {c['id']}"
        if c["format"] == 2:
            if (c["counter"], c["prev_digest"]) != (counter + 1, prev or GENESIS):
                bad(where, "checkpoint_chain_broken")
            counter = c["counter"]
        elif counter:
            bad(where, "checkpoint_chain_broken: a legacy checkpoint after the chain began")
        signed = verifies(checkpoint_keys, c["signature"], bytes.fromhex(c["digest"]))
        if (c["format"] == 2 or c["covering"]) and not signed:
            bad(where, "checkpoint_signature_invalid")
        if c["covering"]:
            digest_ok = checkpoint_digest(c, tenant, heads) == c["digest"]
            if not digest_ok:
                bad(where, "checkpoint_digest_mismatch")
            covering = c if signed and digest_ok else None  # else it vouches for nothing
        prev = c["digest"]
    for pinned in args.trusted_digest:
        if pinned not in {c["digest"] for c in checkpoints}:
            bad("checkpoints", f"checkpoint_rollback: pinned digest {pinned} is missing")

    # The chains: per stream, in order; the first exported event of a cut stream
    # starts from its stored prev_hash.
    streams = {}
    for e in events:
        key = (e["aggregate_type"], e["aggregate_id"])
        where, m = f"{key[0]}/{key[1]} at sequence {e['sequence']}", e["metadata"]
        s = streams.setdefault(key, {"first": e["sequence"], "last": None, "hashes": {},
                                     "signed": [], "broken": False})
        if s["broken"]:
            continue
        if s["last"] is not None:
            expected = (s["last"] + 1, s["hashes"][s["last"]])
        elif complete or e["sequence"] == 1:
            expected = (1, GENESIS)
        else:
            expected = (e["sequence"], m.get("prev_hash"))
        problem = None
        if e["tenant_id"] != tenant:
            problem = "an event of another tenant"
        elif e["sequence"] != expected[0]:
            problem = "sequence_gap"
        elif m.get("prev_hash") != expected[1]:
            problem = "prev_hash_mismatch"
        elif event_hash(e) != m.get("hash"):
            problem = "hash_mismatch"
        if problem:
            s["broken"] = True
            bad(where, problem)
            continue
        s["last"], s["hashes"][e["sequence"]] = e["sequence"], m["hash"]
        if "signature" in m:
            s["signed"].append((e["sequence"], m["hash"], m.get("signature_key"), m["signature"]))

    # Provenance: the newest valid signature vouches for its stream up to it; the
    # covering checkpoint's heads for theirs. A complete export has every signed head.
    signed_heads = {(t, a): (s, h) for t, a, s, h in heads} if covering else {}
    unprotected = 0
    for key, s in streams.items():
        if s["broken"] or s["last"] is None:
            continue
        through = 0
        for seq, h, kid, sig in reversed(s["signed"]):
            if kid in event_keys and verifies([event_keys[kid]], sig, bytes.fromhex(h)):
                through = seq
                break
        head = signed_heads.get(key)
        if head and s["first"] <= head[0] <= s["last"]:
            if s["hashes"][head[0]] != head[1]:
                bad(f"{key[0]}/{key[1]} at sequence {head[0]}", "checkpoint_head_mismatch")
            through = max(through, head[0])
        elif head and head[0] > s["last"] and complete:
            bad(f"{key[0]}/{key[1]} at sequence {head[0]}", "truncated_tail")
        if through < s["last"]:
            bad(f"{key[0]}/{key[1]} at sequence {through + 1}", "unvouched_event")
        unprotected += max(0, s["last"] - max(head[0] if head else 0, s["first"] - 1))
    if complete:
        for key, (seq, _) in signed_heads.items():
            if key not in streams:
                bad(f"{key[0]}/{key[1]} at sequence {seq}", "truncated_tail: the stream is missing")

    print(f"{len(events)} events in {len(streams)} streams, {len(checkpoints)} checkpoints; "
          f"range {'complete' if complete else 'partial'}; "
          f"{unprotected} events after the covering checkpoint"
          + ("" if covering else " (no trusted covering checkpoint)"))
    for p in problems:
        print("BROKEN", p)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
