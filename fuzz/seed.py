#!/usr/bin/env python3
"""Writes the fuzzers' seed corpora from tests/vectors/messages.json."""
import hashlib, json, os

root = os.path.dirname(os.path.abspath(__file__))
vectors = json.load(open(os.path.join(root, "..", "tests", "vectors", "messages.json")))

def put(folder, data):
    path = os.path.join(root, "seeds", folder)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)

for group in ("client", "server", "client_invalid"):
    for case in vectors[group]:
        put("client_msg", bytes.fromhex(case["hex"]))
for case in vectors["ascii85"]:
    put("connect_target", case["text"].encode())
for case in vectors["addrs"]:
    put("connect_target", case["connect"].encode())
    put("connect_target", case["connect"][len("/addrs/"):].encode())
    put("connect_target", case["peerID"].encode())
