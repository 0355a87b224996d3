#!/usr/bin/env python3
"""Load client for benches/load/memory.sh (stdlib only, loopback only).

  mem_client.py mint   HOST PORT SECRET N TOKENS_FILE   mint N tokens via POST /auth/api/token
  mem_client.py verify HOST PORT TOKENS_FILE PATH       GET PATH once with each token
  mem_client.py get    HOST PORT PATH N                 N keep-alive GETs of a public PATH
  mem_client.py idle   HOST PORT PATH N                 open N connections, one request each,
                                                        then hold them open until stdin closes
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


async def idle(host, port, path, n, batch):
    held = []
    start = time.monotonic()
    for i in range(0, n, batch):
        await asyncio.gather(*(one(host, port, path, held) for _ in range(min(batch, n - i))))
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
    elif mode == "idle":
        asyncio.run(idle(host, port, sys.argv[4], int(sys.argv[5]), int(sys.argv[6]) if len(sys.argv) > 6 else 1))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
