#!/usr/bin/env python3
"""Checks Chronicle's transparency-log proofs with the public key and nothing else.

Written from the specifications, not from Chronicle's code: RFC 9162 section 2.1
(Merkle tree hashing, and the verification algorithms of 2.1.3.2 and 2.1.4.2) and
C2SP signed-note / tlog-checkpoint; Ed25519 through the `cryptography` package.

    tlog_verify.py inclusion PROOF.json --vkey VKEY [--event-hash HEX]
    tlog_verify.py consistency PROOF.json --vkey VKEY [--first-root BASE64]
    tlog_verify.py note NOTE.txt --vkey VKEY
    tlog_verify.py selftest   # the algorithms against the RFC's recursive definitions

PROOF.json is what `GET /v1/audit/proofs/...` or `chronicle audit prove-...` printed;
VKEY the log's verifier key (`chronicle audit log-key`), kept outside the database.
`--event-hash` is the chain hash of the event you hold (e.g. its export line);
`--first-root` the root of the older head you kept. Exit 0 valid, 1 invalid.
"""

import argparse
import base64
import hashlib
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


class Invalid(Exception):
    pass


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def verify_inclusion(leaf_index, tree_size, leaf, path, root):
    """RFC 9162 2.1.3.2."""
    if leaf_index >= tree_size:
        raise Invalid("leaf index beyond the tree")
    fn, sn, r = leaf_index, tree_size - 1, leaf
    for p in path:
        if sn == 0:
            raise Invalid("inclusion path too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn != 0 and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0 or r != root:
        raise Invalid("inclusion path does not lead to the root")


def verify_consistency(first, second, first_root, second_root, path):
    """RFC 9162 2.1.4.2 (first == second: the proof is empty and the roots equal)."""
    if not 0 < first <= second:
        raise Invalid("sizes out of order")
    if first == second:
        if path or first_root != second_root:
            raise Invalid("equal sizes need an empty proof and equal roots")
        return
    if not path:
        raise Invalid("empty consistency path")
    if first & (first - 1) == 0:  # an exact power of 2
        path = [first_root] + list(path)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise Invalid("consistency path too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn != 0 and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if fr != first_root or sr != second_root or sn != 0:
        raise Invalid("consistency path does not join the two roots")


def parse_vkey(vkey: str):
    """`<name>+<hex key id>+<base64(0x01 || 32-byte Ed25519 key)>` (C2SP signed-note)."""
    name, key_id, key = vkey.strip().split("+")
    raw = base64.b64decode(key, validate=True)
    if len(raw) != 33 or raw[0] != 0x01:
        raise Invalid("not an Ed25519 verifier key")
    expected = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
    if bytes.fromhex(key_id) != expected:
        raise Invalid("verifier key id does not match its key")
    return name, expected, Ed25519PublicKey.from_public_bytes(raw[1:])


def verify_note(note: str, vkey: str):
    """Returns (origin, size, root) of a checkpoint signed by `vkey`'s key."""
    name, key_id, public = parse_vkey(vkey)
    text, sep, signatures = note.partition("\n\n")
    if not sep:
        raise Invalid("a note needs a blank line before its signatures")
    text += "\n"
    good = False
    for line in signatures.splitlines():
        if not line.startswith("\u2014 "):
            raise Invalid("malformed signature line")
        signer, blob = line[2:].split(" ")
        raw = base64.b64decode(blob, validate=True)
        if signer == name and raw[:4] == key_id:
            try:
                public.verify(raw[4:], text.encode())
                good = True
            except InvalidSignature:
                raise Invalid("the checkpoint signature does not verify")
    if not good:
        raise Invalid("no signature by the trusted key")
    lines = text.split("\n")
    origin, size, root = lines[0], lines[1], lines[2]
    if origin != name:
        raise Invalid("the checkpoint's origin is not the key's log")
    if not size.isdigit() or str(int(size)) != size:
        raise Invalid("malformed tree size")
    return origin, int(size), base64.b64decode(root, validate=True)


def b64(s):
    return base64.b64decode(s, validate=True)


def check_inclusion(proof, vkey, event_hash=None):
    _, size, root = verify_note(proof["tree_head"]["checkpoint"], vkey)
    if size != proof["tree_head"]["tree_size"] or root != b64(proof["tree_head"]["root_hash"]):
        raise Invalid("the proof's tree head is not the signed one")
    if proof["event"] is None and event_hash is None:
        raise Invalid("the event is gone from the log: pass --event-hash of the event you hold")
    chain_hash = (proof["event"] or {}).get("hash") or ""
    if event_hash is not None:
        if proof["event"] is not None and chain_hash != event_hash:
            raise Invalid("the proof is about another event")
        chain_hash = event_hash
    leaf = leaf_hash(chain_hash.encode())
    path = [b64(p) for p in proof["inclusion_path"]]
    verify_inclusion(proof["leaf_index"], size, leaf, path, root)


def check_consistency(proof, vkey, first_root=None):
    _, size, root = verify_note(proof["second"]["checkpoint"], vkey)
    if size != proof["second"]["tree_size"]:
        raise Invalid("the proof's second head is not the signed one")
    first = proof["first"]
    kept = b64(first_root) if first_root else None
    if first.get("checkpoint"):
        _, fsize, froot = verify_note(first["checkpoint"], vkey)
        if fsize != first["tree_size"]:
            raise Invalid("the first head's size is not the signed one")
        kept = kept or froot
    if kept is None:
        raise Invalid("no trusted root for the first tree: pass --first-root")
    path = [b64(p) for p in proof["consistency_path"]]
    verify_consistency(first["tree_size"], size, kept, root, path)


def mth(leaves):
    """RFC 9162 2.1.1: the Merkle tree hash, by the recursive definition."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def rfc_path(m, leaves):
    """RFC 9162 2.1.3.1: PATH(m, D[n])."""
    if len(leaves) == 1:
        return []
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if m < k:
        return rfc_path(m, leaves[:k]) + [mth(leaves[k:])]
    return rfc_path(m - k, leaves[k:]) + [mth(leaves[:k])]


def rfc_subproof(m, leaves, b):
    """RFC 9162 2.1.4.1: SUBPROOF(m, D[n], b)."""
    n = len(leaves)
    if m == n:
        return [] if b else [mth(leaves)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return rfc_subproof(m, leaves[:k], b) + [mth(leaves[k:])]
    return rfc_subproof(m - k, leaves[k:], False) + [mth(leaves[:k])]


def selftest():
    """The verification algorithms agree with the RFC's definitions (and refuse a
    changed hash) for every tree of up to 40 leaves."""
    for n in range(1, 41):
        leaves = [str(i).encode() for i in range(n)]
        root = mth(leaves)
        for m in range(n):
            path = rfc_path(m, leaves)
            verify_inclusion(m, n, leaf_hash(leaves[m]), path, root)
            for bad in range(len(path)):
                forged = list(path)
                forged[bad] = hashlib.sha256(forged[bad]).digest()
                try:
                    verify_inclusion(m, n, leaf_hash(leaves[m]), forged, root)
                except Invalid:
                    continue
                raise AssertionError("a forged inclusion path verified")
        for m in range(1, n + 1):
            proof = rfc_subproof(m, leaves, True)
            verify_consistency(m, n, mth(leaves[:m]), root, proof)
            if proof:
                try:
                    verify_consistency(m, n, mth(leaves[:m]), root, proof[:-1])
                except Invalid:
                    continue
                raise AssertionError("a shortened consistency path verified")


def main():
    if sys.argv[1:] == ["selftest"]:
        selftest()
        print("OK")
        return 0
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["inclusion", "consistency", "note"])
    parser.add_argument("file")
    parser.add_argument("--vkey", required=True)
    parser.add_argument("--event-hash")
    parser.add_argument("--first-root")
    args = parser.parse_args()
    with open(args.file, encoding="utf-8") as f:
        text = f.read()
    try:
        if args.kind == "inclusion":
            check_inclusion(json.loads(text), args.vkey, args.event_hash)
        elif args.kind == "consistency":
            check_consistency(json.loads(text), args.vkey, args.first_root)
        else:
            verify_note(text, args.vkey)
    except (Invalid, ValueError, KeyError, TypeError) as e:
        print(f"INVALID: {e}")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
