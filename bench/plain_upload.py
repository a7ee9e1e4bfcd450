#!/usr/bin/env python3
"""Uploads blob files into a registry the way `narbor push` does (POST, then
PATCHes of 8 MiB with Content-Range, then the closing PUT ?digest=), with no
hashing, dumping or compressing: what the registry alone needs to take the
bytes in under narbor's request pattern. Not run by the harness; row 7's
notes (bench/results/notes.md) compare it by hand.

    plain_upload.py PORT JOBS < LIST    (LIST: lines "FILE SHA256HEX")
"""
import http.client
import os
import queue
import sys
import threading

CHUNK = 8 << 20


def path_of(location):
    """The registry may answer an absolute URL or a path."""
    return "/" + location.split("/", 3)[3] if location.startswith("http") else location


def upload(conn, path, digest):
    conn.request("POST", "/v2/floor/blobs/uploads/", headers={"Content-Length": "0"})
    r = conn.getresponse()
    r.read()
    if r.status != 202:
        raise RuntimeError(f"POST: {r.status}")
    loc = path_of(r.getheader("Location"))
    size, off = os.path.getsize(path), 0
    with open(path, "rb", buffering=0) as f:
        while off < size:
            data = f.read(CHUNK)
            conn.request("PATCH", loc, body=data, headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{off}-{off + len(data) - 1}",
                "Content-Length": str(len(data)),
            })
            r = conn.getresponse()
            r.read()
            if r.status != 202:
                raise RuntimeError(f"PATCH {path} at {off}: {r.status}")
            loc = path_of(r.getheader("Location"))
            off += len(data)
    sep = "&" if "?" in loc else "?"
    conn.request("PUT", f"{loc}{sep}digest=sha256:{digest}", body=b"",
                 headers={"Content-Length": "0"})
    r = conn.getresponse()
    r.read()
    if r.status != 201:
        raise RuntimeError(f"PUT {path}: {r.status}")


def main():
    port, jobs = int(sys.argv[1]), int(sys.argv[2])
    work = queue.Queue()
    for line in sys.stdin:
        work.put(tuple(line.split()))
    errors = []

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port)
        while True:
            try:
                path, digest = work.get_nowait()
            except queue.Empty:
                return
            try:
                upload(conn, path, digest)
            except Exception as e:  # reported below, after every worker ends
                errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        sys.exit(f"plain_upload: {errors}")


if __name__ == "__main__":
    main()
