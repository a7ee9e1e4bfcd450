#!/usr/bin/env python3
"""Writes a synthetic binary cache for the soak: N NARs of random sizes named
by their sha256 (nar/<nix32>.nar) and a narinfo for each (unsigned), plus the
list of request paths (hits, misses, malformed) for wrk.
Usage: make_soak_cache.py DIR COUNT PATHS_FILE"""
import hashlib, os, random, sys

ALPHABET = "0123456789abcdfghijklmnpqrsvwxyz"

def nix32(b: bytes) -> str:
    n = (len(b) * 8 - 1) // 5 + 1
    out = []
    for i in range(n - 1, -1, -1):
        bit = i * 5
        j, k = bit // 8, bit % 8
        c = b[j] >> k
        if j + 1 < len(b):
            c |= b[j + 1] << (8 - k)
        out.append(ALPHABET[c & 0x1F])
    return "".join(out)

root, count, paths_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rng = random.Random(7)
os.makedirs(os.path.join(root, "nar"), exist_ok=True)
paths = []
for i in range(count):
    size = rng.randint(64 * 1024, 2 * 1024 * 1024)
    data = rng.randbytes(size)
    digest = hashlib.sha256(data).digest()
    nar = f"nar/{nix32(digest)}.nar"
    with open(os.path.join(root, nar), "wb") as f:
        f.write(data)
    h = nix32(hashlib.sha256(f"soak-{i}".encode()).digest()[:20])
    with open(os.path.join(root, f"{h}.narinfo"), "w") as f:
        f.write(
            f"StorePath: /nix/store/{h}-soak-{i}\nURL: {nar}\nCompression: none\n"
            f"FileHash: sha256:{nix32(digest)}\nFileSize: {size}\n"
            f"NarHash: sha256:{nix32(digest)}\nNarSize: {size}\nReferences: \n"
        )
    paths += [f"/{h}.narinfo"] * 3 + [f"/{nar}"] * 4
    missing = nix32(hashlib.sha256(f"missing-{i}".encode()).digest()[:20])
    paths += [f"/{missing}.narinfo"] * 2
    paths += ["/nar/../../etc/passwd", "/nix-cache-info"][i % 2 : i % 2 + 1]
rng.shuffle(paths)
with open(paths_file, "w") as f:
    f.write("\n".join(paths) + "\n")
