#!/usr/bin/env python3
"""1,000 SSE streams as 1,000 HTTP/1.1 connections, and as one h2c connection (issue 19).

    scripts/h2c-sse-memory.py [N] [EVENTS]     (N streams, default 1000; EVENTS, default 100)

For each row: a fresh release server (`$CARGO_TARGET_DIR` or target, epoll, memory broker);
h2load (Debian's nghttp2-client) opens N streams on /sse/m, as N HTTP/1.1 connections
(`--h1 -c N`) or as N concurrent streams on one h2c connection (`-c 1 -m N`). Once /stats
counts N streams: the server's VmRSS (user space only; kernel socket buffers are extra), then
the server's open descriptors, then EVENTS publishes of a 60-byte text, and the server's bytes out per delivered event, from
/stats (the publishes' own answers, read here, are subtracted).
"""
import json, os, socket, subprocess, sys, time

BIN = os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release", "realtime")
N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
EVENTS = int(sys.argv[2]) if len(sys.argv) > 2 else 100
TEXT = b"x" * 60


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def request(port, raw):
    """One HTTP/1.1 exchange on its own connection; the whole answer."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(raw)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
        return answer


def stats(port):
    answer = request(port, b"GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])


def wait_for(what, condition):
    deadline = time.time() + 60
    while not condition():
        if time.time() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.1)


def run(name, h2load_args):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    server = subprocess.Popen([BIN, "serve", "--addr", f"127.0.0.1:{port}", "--keepalive", "3600"],
                              stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    before, fds_before = rss_kib(server.pid), fds(server.pid)
    clients = subprocess.Popen(["h2load", *h2load_args, "-D", "600", "-H", "accept: text/event-stream",
                                f"http://127.0.0.1:{port}/sse/m"], stdout=subprocess.DEVNULL)
    wait_for(f"{N} streams", lambda: stats(port)["connections"]["sse"] >= N)
    time.sleep(1)
    held, sockets = rss_kib(server.pid), fds(server.pid) - fds_before
    start = stats(port)
    answers = 0
    for _ in range(EVENTS):
        answers += len(request(port, b"POST /publish/m HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                     b"Content-Length: %d\r\n\r\n%s" % (len(TEXT), TEXT)))
    target = start["messages"]["delivered"] + EVENTS * N
    wait_for("every delivery", lambda: stats(port)["messages"]["delivered"] >= target)
    end = stats(port)
    # Each /stats answer is counted too: the one that read `end` only partly; close enough
    # to subtract the `start` one's size once per look is not worth the noise it removes.
    out = end["bytes"]["out"] - start["bytes"]["out"] - answers
    print(f"| {name} | {N} | {sockets} | {(held - before) / 1024:.1f} MiB | {(held - before) / N:.2f} KiB "
          f"| {out / (EVENTS * N):.1f} |")
    clients.kill()
    server.kill()
    clients.wait()
    server.wait()


print("| clients as | streams | server sockets | server RSS for them | per stream | bytes out per event per stream |")
print("|---|---|---|---|---|---|")
run("HTTP/1.1, one connection each", ["--h1", "-n", str(N), "-c", str(N)])
run("h2c, one connection", ["-n", str(N), "-c", "1", "-m", str(N)])
