"""Peak memory of the Mailchimp sandbox while it takes an export through /batches.

Starts the sandbox in its own process (``python -m flask_mcsync.sandbox``), sends N member
PUTs as batch operations (batches of ``--batch-size``, as the export does), waits for every
batch, downloads every results archive, and prints the sandbox process's peak RSS
(VmHWM, Linux) with the load average. Compare two versions with ``--pythonpath``:

    python benchmarks/bench_sandbox_memory.py --addresses 100000
    python benchmarks/bench_sandbox_memory.py --addresses 100000 --pythonpath /tmp/old-tree
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import subprocess
import sys
import time

import requests

KEY = "0123456789abcdef0123456789abcdef-us1"
LIST = "a1b2c3d4e5"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def operations(start: int, count: int) -> list[dict[str, str]]:
    ops = []
    for i in range(start, start + count):
        email = f"customer{i:07d}@mail.shop-demo.io"
        body = {
            "email_address": email,
            "status_if_new": "subscribed",
            "merge_fields": {"FNAME": f"First{i}", "LNAME": f"Last{i}"},
        }
        ops.append(
            {
                "method": "PUT",
                "operation_id": str(i),
                "path": f"/lists/{LIST}/members/{hashlib.md5(email.encode()).hexdigest()}",
                "body": json.dumps(body),
            }
        )
    return ops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addresses", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=5_000)
    parser.add_argument("--pythonpath", default="", help="import the sandbox from this tree")
    args = parser.parse_args()
    port = free_port()
    env = dict(os.environ)
    if args.pythonpath:
        env["PYTHONPATH"] = args.pythonpath
    server = subprocess.Popen(
        [sys.executable, "-m", "flask_mcsync.sandbox", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        cwd=args.pythonpath or None,
    )
    api = f"http://127.0.0.1:{port}/3.0/"
    session = requests.Session()
    session.auth = ("bench", KEY)
    try:
        for _ in range(100):
            try:
                session.get(api + "ping", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        started = time.monotonic()
        idle = peak_rss_mb(server.pid)
        ids = []
        for start in range(0, args.addresses, args.batch_size):
            count = min(args.batch_size, args.addresses - start)
            reply = session.post(
                api + "batches", json={"operations": operations(start, count)}, timeout=120
            )
            reply.raise_for_status()
            ids.append(reply.json()["id"])
        archive_bytes = 0
        for batch_id in ids:
            while (batch := session.get(api + f"batches/{batch_id}", timeout=30).json())[
                "status"
            ] != "finished":
                time.sleep(0.2)
            archive = session.get(batch["response_body_url"], timeout=120)
            archive.raise_for_status()
            archive_bytes += len(archive.content)
        elapsed = time.monotonic() - started
        print(
            f"addresses={args.addresses} batches={len(ids)} elapsed={elapsed:.1f}s "
            f"archives={archive_bytes / 2**20:.1f}MB"
        )
        print(
            f"sandbox peak RSS: {peak_rss_mb(server.pid):.0f} MB (idle {idle:.0f} MB); "
            f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
