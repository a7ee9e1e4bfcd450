#!/usr/bin/env python3
"""A flaky binary-cache upstream for the soak test: serves a directory and
misbehaves at random, per request (seeded, so runs are comparable):

  6%  answer 500          3%  answer 503 with Retry-After
  3%  reset mid-body      3%  stall 5 s, then continue
  the rest: serve normally, NAR bodies at a capped rate

Counts requests and faults; prints them on SIGTERM.
Usage: flaky_upstream.py DIR PORT
"""
import http.server, os, random, signal, socket, socketserver, struct, sys, threading, time

ROOT, PORT = sys.argv[1], int(sys.argv[2])
rng = random.Random(1234)
lock = threading.Lock()
counts = {}

def count(what):
    with lock:
        counts[what] = counts.get(what, 0) + 1

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_HEAD(self):
        self.serve(head=True)

    def do_GET(self):
        self.serve(head=False)

    def serve(self, head):
        path = os.path.normpath(self.path.split("?")[0]).lstrip("/")
        full = os.path.join(ROOT, path)
        with lock:
            roll = rng.random()
        if roll < 0.06:
            count("500")
            return self.reply(500, b"")
        if roll < 0.09:
            count("503")
            return self.reply(503, b"", {"Retry-After": "1"})
        if ".." in path or not os.path.isfile(full):
            count("404")
            return self.reply(404, b"not found\n")
        with open(full, "rb") as f:
            body = f.read()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if head:
            count("head")
            return
        if roll < 0.12:
            count("reset")
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        if roll < 0.15:
            count("stall")
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            time.sleep(5)
            self.wfile.write(body[len(body) // 2 :])
            return
        count("ok")
        for i in range(0, len(body), 256 * 1024):
            self.wfile.write(body[i : i + 256 * 1024])
            time.sleep(0.002)

    def reply(self, code, body, headers=None):
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

def report(*_):
    print("upstream:", " ".join(f"{k}={v}" for k, v in sorted(counts.items())), flush=True)
    os._exit(0)

signal.signal(signal.SIGTERM, report)
Server(("127.0.0.1", PORT), Handler).serve_forever()
