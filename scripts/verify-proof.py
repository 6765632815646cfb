#!/usr/bin/env python3
"""Checks a mailjournal inclusion proof (`mailjournal prove ID`, `GET /m/{id}/proof`)
independently of mailjournal: the checkpoint's Ed25519 signature (C2SP signed-note) with
the log's verifier key (`mailjournal log-key`), and the RFC 6962/9162 inclusion path of the
leaf up to the checkpoint's root. Needs python3 and its `cryptography` package (Debian:
python3-cryptography).

    scripts/verify-proof.py proof.json --key 'name+keyid+base64'

Exit status 0 and "OK ..." when the proof holds, 1 and "FAILED: ..." otherwise.
"""
import argparse, base64, hashlib, json, sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def h(*parts):
    return hashlib.sha256(b"".join(parts)).digest()


def open_note(note, vkey):
    """The checkpoint (origin, size, root) of a note signed by vkey, or raises."""
    name, keyid, key = vkey.strip().split("+", 2)
    key = base64.b64decode(key)
    if key[0] != 1 or h(name.encode(), b"\n", key)[:4].hex() != keyid:
        raise ValueError("not an Ed25519 verifier key, or its key id is wrong")
    body, sigs = note[: note.rindex("\n\n") + 1], note[note.rindex("\n\n") + 2 :]
    for line in sigs.splitlines():
        sig_name, sig = line.removeprefix("\u2014 ").split(" ", 1)
        sig = base64.b64decode(sig)
        if sig_name == name and sig[:4].hex() == keyid:
            Ed25519PublicKey.from_public_bytes(key[1:]).verify(sig[4:], body.encode())
            origin, size, root = body.split("\n")[:3]
            if origin != name:
                raise ValueError("the checkpoint's origin is not the key's name")
            return origin, int(size), base64.b64decode(root)
    raise ValueError("the checkpoint has no signature by " + name)


def root_from_path(leaf_hash, index, size, path):
    """RFC 9162 section 2.1.3.2."""
    if index >= size:
        raise ValueError("leaf index outside the tree")
    fn, sn, r = index, size - 1, leaf_hash
    for p in path:
        if sn == 0:
            raise ValueError("inclusion path too long")
        if fn & 1 or fn == sn:
            r = h(b"\x01", p, r)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = h(b"\x01", r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ValueError("inclusion path too short")
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("proof")
    ap.add_argument("--key", required=True, help="the verifier key (what `mailjournal log-key` prints)")
    args = ap.parse_args()
    try:
        with open(args.proof, encoding="utf-8") as f:
            proof = json.load(f)
        if proof.get("format") != "mailjournal-inclusion-proof/1":
            raise ValueError("not a mailjournal inclusion proof")
        origin, size, root = open_note(proof["checkpoint"], args.key)
        if size != proof["tree_size"]:
            raise ValueError("the checkpoint is of another tree size")
        leaf = base64.b64decode(proof["leaf"])
        fields = proof["leaf_fields"]
        # The leaf's bytes must say what its fields say (kind 1: a stored copy).
        id_ = fields["id"].encode()
        want = (bytes([1]) + fields["uid"].to_bytes(4, "big") + fields["arrived"].to_bytes(8, "big", signed=True)
                + bytes.fromhex(fields["blob"]) + bytes([len(id_)]) + id_)
        if leaf != want:
            raise ValueError("leaf_fields say something else than the leaf")
        path = [base64.b64decode(p) for p in proof["inclusion"]]
        if root_from_path(h(b"\x00", leaf), proof["leaf_index"], size, path) != root:
            raise ValueError("the inclusion path does not lead to the checkpoint's root")
    except Exception as e:  # any malformed or wrong proof is a failure, said plainly
        print(f"FAILED: {e or type(e).__name__}", file=sys.stderr)
        return 1
    print(f"OK: message {fields['id']} (UID {fields['uid']}, blob {fields['blob']}) is leaf "
          f"{proof['leaf_index']} of {origin}, tree of {size} leaves")
    return 0


if __name__ == "__main__":
    sys.exit(main())
