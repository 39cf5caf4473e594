#!/usr/bin/env python3
"""What a WebSocket costs the server with permessage-deflate, by --ws-deflate mode.

    scripts/ws-deflate-memory.py [N]        (N connections, default 3000; needs `ulimit -n` > 2N)

For each row: a fresh release server (`$CARGO_TARGET_DIR` or target, epoll), N WebSockets on
/echo that offer permessage-deflate, idle or after one 324-byte JSON message each way; the
server's VmRSS before and after, from /proc (user space only: kernel socket buffers are extra).
"""
import os, socket, struct, subprocess, sys, time

BIN = os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release", "realtime")
N = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
TEXT = b'{"id":"k3f9-17","text":"the quick brown fox jumps over the lazy dog, again and again","time":1700000000000}' * 3


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])


def masked_text_frame(payload):
    """A client text frame (RFC 6455 §5.2) of 126 to 65535 bytes, masked as §5.3 requires."""
    mask = b"\x01\x02\x03\x04"
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | 126]) + struct.pack(">H", len(payload)) + mask + body


def run(mode, message):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    server = subprocess.Popen([BIN, "serve", "--addr", f"127.0.0.1:{port}", "--ws-deflate", mode,
                               "--keepalive", "3600"], stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    before = rss_kib(server.pid)
    sockets = []
    for _ in range(N):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                  b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n")
        sockets.append(s)
    for s in sockets:
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(4096)
        assert b" 101 " in head
    if message:
        for s in sockets:
            s.sendall(masked_text_frame(TEXT))
        for s in sockets:
            s.recv(65536)
    time.sleep(1.0)
    after = rss_kib(server.pid)
    server.terminate()
    server.wait()
    for s in sockets:
        s.close()
    what = "one message each way" if message else "idle"
    print(f"| {mode} | {what} | {before / 1024:.1f} -> {after / 1024:.1f} MiB | {(after - before) / N:.2f} |", flush=True)


print("| --ws-deflate | connections | RSS before -> after | KiB/conn |")
print("|---|---|---|---|")
for mode, message in [("off", False), ("no-context", False), ("off", True), ("no-context", True), ("context", True)]:
    run(mode, message)
