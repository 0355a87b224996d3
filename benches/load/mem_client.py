#!/usr/bin/env python3
"""Load client for benches/load/memory.sh (stdlib only, loopback only).

  mem_client.py mint   HOST PORT SECRET N TOKENS_FILE   mint N tokens via POST /auth/api/token
  mem_client.py verify HOST PORT TOKENS_FILE PATH       GET PATH once with each token
  mem_client.py get    HOST PORT PATH N                 N keep-alive GETs of a public PATH
  mem_client.py idle   HOST PORT PATH N                 open N connections, one request each,
                                                        then hold them open until stdin closes
  mem_client.py idle2  HOST PORT PATH N                 the same over HTTP/2 with prior knowledge (h2c)
"""

import asyncio
import http.client
import json
import sys
import time


def mint(host, port, secret, n, out):
    conn = http.client.HTTPConnection(host, port)
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    start = time.monotonic()
    with open(out, "w") as f:
        for i in range(n):
            body = json.dumps({"account_id": "acct_bench", "user_email": f"user{i}@example.com",
                               "user_id": f"u_{i}"})
            conn.request("POST", "/auth/api/token", body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            if resp.status != 200:
                sys.exit(f"mint {i}: HTTP {resp.status}: {data[:200]!r}")
            f.write(json.loads(data)["token"] + "\n")
    print(f"minted {n} tokens in {time.monotonic() - start:.1f}s", file=sys.stderr)


def verify(host, port, tokens_file, path):
    conn = http.client.HTTPConnection(host, port)
    ok = 0
    start = time.monotonic()
    with open(tokens_file) as f:
        for line in f:
            conn.request("GET", path, headers={"Authorization": f"Bearer {line.strip()}"})
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                ok += 1
    print(f"{ok} requests with distinct tokens answered 200 in {time.monotonic() - start:.1f}s",
          file=sys.stderr)
    print(ok)


def get(host, port, path, n):
    conn = http.client.HTTPConnection(host, port)
    for _ in range(n):
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            sys.exit(f"GET {path}: HTTP {resp.status}")


async def one(host, port, path, held):
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = head.split(b" ", 2)[1]
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    if status != b"200":
        raise RuntimeError(f"status {status!r}")
    held.append((reader, writer))


def h2_frame(kind, flags, stream, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def hpack_literal(index, value):
    """A header with an indexed name and a literal value, not indexed
    (RFC 7541 6.2.2), no Huffman coding: enough for four pseudo-headers."""
    value = value.encode()
    assert len(value) < 127
    return bytes([index, len(value)]) + value


async def one_h2(host, port, path, held):
    """HTTP/2 with prior knowledge (h2c): the preface, empty SETTINGS, one
    GET on stream 1, the server's SETTINGS acknowledged; the connection is
    kept once the response's last DATA frame arrived."""
    reader, writer = await asyncio.open_connection(host, port)
    block = (b"\x82"  # :method GET
             + b"\x86"  # :scheme http
             + hpack_literal(4, path)  # :path
             + hpack_literal(1, f"{host}:{port}"))  # :authority
    writer.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0)
                 + h2_frame(1, 0x4 | 0x1, 1, block))  # HEADERS, END_HEADERS | END_STREAM
    await writer.drain()
    status_ok = False
    while True:
        head = await reader.readexactly(9)
        length, kind, flags = int.from_bytes(head[:3], "big"), head[3], head[4]
        payload = await reader.readexactly(length)
        if kind == 4 and not flags & 0x1:  # the server's SETTINGS
            writer.write(h2_frame(4, 0x1, 0))
            await writer.drain()
        elif kind == 1:  # response HEADERS: ":status: 200" is static index 8
            status_ok = payload[:1] == b"\x88"
        elif kind == 7:  # GOAWAY
            raise RuntimeError("GOAWAY")
        elif kind == 0 and flags & 0x1:  # the last DATA frame
            break
    if not status_ok:
        raise RuntimeError("HTTP/2 GET did not answer 200")
    held.append((reader, writer))


async def idle(host, port, path, n, batch, proto="h1"):
    held = []
    start = time.monotonic()
    opener = one_h2 if proto == "h2" else one
    for i in range(0, n, batch):
        await asyncio.gather(*(opener(host, port, path, held) for _ in range(min(batch, n - i))))
    print(f"{len(held)} connections open and idle after one request each "
          f"({time.monotonic() - start:.1f}s)", file=sys.stderr)
    print("ready", flush=True)
    # Hold them until our stdin closes (memory.sh closes it when done).
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    closed = sum(1 for r, _ in held if r.at_eof())
    print(f"{len(held) - closed} connections still open at the end ({closed} closed by the server)",
          file=sys.stderr)
    for _, w in held:
        w.close()


def main():
    mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "mint":
        mint(host, port, sys.argv[4], int(sys.argv[5]), sys.argv[6])
    elif mode == "verify":
        verify(host, port, sys.argv[4], sys.argv[5])
    elif mode == "get":
        get(host, port, sys.argv[4], int(sys.argv[5]))
    elif mode in ("idle", "idle2"):
        batch = int(sys.argv[6]) if len(sys.argv) > 6 else 1
        proto = "h2" if mode == "idle2" else "h1"
        asyncio.run(idle(host, port, sys.argv[4], int(sys.argv[5]), batch, proto))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
