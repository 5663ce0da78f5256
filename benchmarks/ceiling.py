"""The ceiling: the fastest any client could export N addresses through the sandbox.

A client with nothing to do but talk to Mailchimp: every ``POST /batches`` payload of
1,000 ``PUT /lists/{id}/members/{hash}`` is built before the clock starts, at most 10
batches are in flight (Mailchimp's limit of simultaneous connections), each is polled
until finished, and its result archive is downloaded and parsed down to every
operation's decoded response. No database, no planning, no Redis, no queue.

The product's export is compared with this figure measured in the same run
(``bench_export.py`` prints both and their ratio): the sandbox's own CPU, which both
pay, then cancels out, and what is left is the cost of our workers.

    python benchmarks/ceiling.py [--addresses 100000] [--batch-size 1000] [--in-flight 10]
        [--poll-interval 0.5]

Standalone it starts its own sandbox process; ``measure`` runs it against one already
started (the benchmark resets the sandbox first, so every PUT creates a member, as in a
first export).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import requests
from common import address, load_average, note, sandbox_process

from example_app.commands import DOMAINS, FIRST, LAST
from flask_mcsync.addresses import subscriber_hash


@dataclass
class Ceiling:
    addresses: int
    batch_size: int
    in_flight: int
    poll_interval: float
    seconds: float
    addresses_per_second: float
    requests_by_kind: dict[str, int]
    results_parsed: int
    errors: int  # operations Mailchimp answered with an error (should be 0)
    client_cpu_s: float  # this process while measuring: the client's own cost
    load_average: str


def people(count: int) -> list[tuple[str, str, str]]:
    """The same customers ``bench_export.py`` seeds, in the same order: address, names."""
    rows = []
    for i in range(count):
        first, last = FIRST[i % len(FIRST)], LAST[(i // len(FIRST)) % len(LAST)]
        rows.append((address(first, last, i, DOMAINS[i % len(DOMAINS)]), first, last))
    return rows


def payloads(list_id: str, rows: list[tuple[str, str, str]], batch_size: int) -> list[bytes]:
    """Every ``POST /batches`` body, ready to send."""
    bodies = []
    for start in range(0, len(rows), batch_size):
        operations = [
            {
                "method": "PUT",
                "path": f"/lists/{list_id}/members/{subscriber_hash(email)}",
                "operation_id": str(index),
                "body": json.dumps(
                    {
                        "email_address": email,
                        "status_if_new": "subscribed",
                        "merge_fields": {"FNAME": first, "LNAME": last},
                    }
                ),
            }
            for index, (email, first, last) in enumerate(rows[start : start + batch_size])
        ]
        bodies.append(json.dumps({"operations": operations}).encode())
    return bodies


def parse_archive(content: bytes) -> tuple[int, int]:
    """Results and errors in one archive, every response decoded."""
    results = errors = 0
    with tarfile.open(fileobj=io.BytesIO(content), mode="r:gz") as archive:
        for member in archive.getmembers():
            handle = archive.extractfile(member) if member.isfile() else None
            if handle is None:
                continue
            for item in json.load(handle):
                json.loads(item.get("response") or "{}")
                results += 1
                errors += int(item.get("status_code") or 0) >= 400
    return results, errors


def measure(
    base_url: str,
    api_key: str,
    list_id: str,
    addresses: int,
    batch_size: int = 1000,
    in_flight: int = 10,
    poll_interval: float = 0.5,
) -> Ceiling:
    """Send ``addresses`` addresses the fastest way a client can; the sandbox is reset."""
    api = f"{base_url}/3.0/"
    bodies = payloads(list_id, people(addresses), batch_size)
    local = threading.local()
    counts: dict[str, int] = {"POST /batches": 0, "GET /batches/{id}": 0, "archive": 0}
    lock = threading.Lock()

    def count(kind: str) -> None:
        with lock:
            counts[kind] += 1

    def session() -> requests.Session:
        if not hasattr(local, "session"):  # keep-alive, one connection per slot
            local.session = requests.Session()
            local.session.auth = ("ceiling", api_key)
            local.session.headers["Content-Type"] = "application/json"
        return local.session

    def one_batch(body: bytes) -> tuple[int, int]:
        http = session()
        reply = http.post(api + "batches", data=body, timeout=120)
        reply.raise_for_status()
        count("POST /batches")
        batch_id = reply.json()["id"]
        while True:
            time.sleep(poll_interval)
            status = http.get(api + f"batches/{batch_id}", timeout=120)
            status.raise_for_status()
            count("GET /batches/{id}")
            data = status.json()
            if data["status"] == "finished":
                break
        archive = http.get(data["response_body_url"], timeout=120)
        archive.raise_for_status()
        count("archive")
        return parse_archive(archive.content)

    cpu = time.process_time()
    load = load_average()
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=in_flight) as pool:
        parsed = list(pool.map(one_batch, bodies))
    seconds = time.perf_counter() - started
    return Ceiling(
        addresses=addresses,
        batch_size=batch_size,
        in_flight=in_flight,
        poll_interval=poll_interval,
        seconds=round(seconds, 2),
        addresses_per_second=round(addresses / seconds, 1),
        requests_by_kind=counts,
        results_parsed=sum(r for r, _ in parsed),
        errors=sum(e for _, e in parsed),
        client_cpu_s=round(time.process_time() - cpu, 2),
        load_average=f"{load} → {load_average()}",
    )


def main(argv: list[str] | None = None) -> int:
    from flask_mcsync.sandbox import DEFAULT_API_KEY, DEFAULT_LIST_ID

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addresses", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=10)
    parser.add_argument("--poll-interval", type=float, default=0.5)
    args = parser.parse_args(argv)
    with sandbox_process() as sandbox:
        sandbox.reset()
        note(f"ceiling: {args.addresses:,} addresses")
        result = measure(
            sandbox.base_url,
            DEFAULT_API_KEY,
            DEFAULT_LIST_ID,
            args.addresses,
            args.batch_size,
            args.in_flight,
            args.poll_interval,
        )
    print(json.dumps(asdict(result), indent=2, ensure_ascii=False))
    return 0 if result.errors == 0 and result.results_parsed == args.addresses else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
