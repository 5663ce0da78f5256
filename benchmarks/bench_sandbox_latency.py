"""How long the sandbox's API takes to answer while its batch thread runs batches.

Mailchimp answers ``GET /batches/{id}`` and ``POST /batches`` whatever its batch
processors are doing. The sandbox runs batches in a thread of the process that serves
the API, under the account's one lock, which the batch thread takes for each operation.
This benchmark sends N batches of 1,000 member upserts (one after the other, timing
each ``POST``), then asks for the last batch's status every 50 ms until it is finished
(timing each ``GET``), and measures the time from the first ``POST`` until every batch
is finished and the sandbox's CPU over that time.

Two variants of the sandbox, alternating, in processes of their own:

* ``gives way``: as shipped (``AccountLock.give_way`` after each operation);
* ``takes back``: the account's lock a plain ``RLock`` again (with a ``give_way`` that
  does nothing), so the batch thread takes it back at once (the sandbox before it).

    python benchmarks/bench_sandbox_latency.py [--batches 20] [--rounds 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from typing import Any

import requests
from common import cpu_snapshot, load_average, note, sandbox_process

VARIANTS = {
    "gives way": "",
    "takes back": (
        "import _thread\n"
        "from flask_mcsync.sandbox import state\n"
        "class PlainLock(_thread.RLock):\n"
        "    def give_way(self): pass\n"
        "state.AccountLock = PlainLock"
    ),
}


def payloads(batches: int, list_id: str) -> list[bytes]:
    """``POST /batches`` bodies of 1,000 PUTs each, built before the clock starts."""
    bodies = []
    for number in range(batches):
        operations = []
        for index in range(1000):
            email = f"lea.dubois{number}x{index}@gmail.com"
            operations.append(
                {
                    "method": "PUT",
                    "path": f"/lists/{list_id}/members/{hashlib.md5(email.encode()).hexdigest()}",
                    "operation_id": str(index),
                    "body": json.dumps(
                        {
                            "email_address": email,
                            "status_if_new": "subscribed",
                            "merge_fields": {"FNAME": "Léa", "LNAME": "Dubois"},
                        }
                    ),
                }
            )
        bodies.append(json.dumps({"operations": operations}).encode())
    return bodies


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1] if len(values) > 1 else values[0]


def measure(variant: str, bodies: list[bytes]) -> dict[str, Any]:
    from flask_mcsync.sandbox import DEFAULT_API_KEY

    with sandbox_process(VARIANTS[variant]) as sandbox:
        api = f"{sandbox.base_url}/3.0"
        http = requests.Session()
        http.auth = ("bench", DEFAULT_API_KEY)
        http.headers["Content-Type"] = "application/json"
        http.get(f"{api}/lists", timeout=30).raise_for_status()  # connection made
        load_before = load_average()
        cpu_before = cpu_snapshot(sandbox.pid)["sandbox"]
        started = time.perf_counter()
        posts: list[float] = []
        ids: list[str] = []
        for body in bodies:
            sent = time.perf_counter()
            answer = http.post(f"{api}/batches", data=body, timeout=60)
            posts.append((time.perf_counter() - sent) * 1000)
            answer.raise_for_status()
            ids.append(answer.json()["id"])
        gets: list[float] = []
        while True:
            time.sleep(0.05)
            asked = time.perf_counter()
            status = http.get(f"{api}/batches/{ids[-1]}", timeout=60)
            gets.append((time.perf_counter() - asked) * 1000)
            if status.json()["status"] == "finished":
                break
        took = time.perf_counter() - started
        cpu = cpu_snapshot(sandbox.pid)["sandbox"] - cpu_before
        http.close()
    return {
        "variant": variant,
        "batches": len(bodies),
        "seconds": round(took, 2),
        "operations_per_second": round(1000 * len(bodies) / took),
        "sandbox_cpu_s": round(cpu, 2),
        "post_ms_median": round(statistics.median(posts), 1),
        "post_ms_p90": round(p90(posts), 1),
        "get_ms_median": round(statistics.median(gets), 1) if gets else None,
        "get_ms_p90": round(p90(gets), 1) if gets else None,
        "gets": len(gets),
        "load_average": f"{load_before} → {load_average()}",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    from flask_mcsync.sandbox import DEFAULT_LIST_ID

    bodies = payloads(args.batches, DEFAULT_LIST_ID)
    figures = []
    for round_ in range(args.rounds):
        for variant in VARIANTS:
            note(f"round {round_ + 1}: {variant}")
            figures.append(measure(variant, bodies))
            note(json.dumps(figures[-1], ensure_ascii=False))
    columns = [
        "variant",
        "seconds",
        "operations_per_second",
        "sandbox_cpu_s",
        "post_ms_median",
        "post_ms_p90",
        "get_ms_median",
        "get_ms_p90",
        "gets",
        "load_average",
    ]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in figures:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(figures, out, indent=2, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
