"""Benchmark of the gateway's per-member PUT path: a new connection per request (mailchimp3
as it comes, the gateway before 0.1.0) against one pooled session per gateway (now).

Both run in the same process, against the same Mailchimp sandbox (in a process of its
own, so it does not share the GIL with the client being timed), interleaved round by
round: ``--rounds`` rounds of ``--addresses`` upserts each, the two variants taking turns
so drift and the growing audience hit them alike. Every upsert goes through
``Gateway.upsert_member`` (the call single syncs make, one ``PUT
/lists/{id}/members/{hash}``); only the client under the gateway differs. No Redis
connection slot is taken, so the figure is the HTTP path alone.

``--latency-ms`` adds the sandbox's injected latency per API request (the round trip to
Mailchimp); a real TLS handshake to Mailchimp costs one or two more round trips per new
connection, which the loopback sandbox (plain HTTP) does not show: the gain on the real
API is larger than here.

Prints the load average before and after (other processes on the same cores change the
figures a lot), then per variant: requests, mean / median / p95 ms per request,
requests/s, and the ratio. It asserts nothing about time.

    python benchmarks/bench_gateway.py [--addresses 1000] [--rounds 3] [--latency-ms 0]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import common
from mailchimp3 import MailChimp

from flask_mcsync.gateway import Gateway
from flask_mcsync.sandbox.state import DEFAULT_API_KEY

LIST_ID = "a1b2c3d4e5"  # the sandbox's default audience
READ_TIMEOUT = 30.0


def pooled(api_url: str) -> Gateway:
    return Gateway(DEFAULT_API_KEY, api_url, READ_TIMEOUT)


def per_request_connection(api_url: str) -> Gateway:
    """The gateway as it was: mailchimp3's own client, ``requests.request`` per call."""
    gateway = Gateway(DEFAULT_API_KEY, api_url, READ_TIMEOUT)
    client = MailChimp(mc_api=DEFAULT_API_KEY, timeout=READ_TIMEOUT)
    client.base_url = api_url
    gateway.client = client
    return gateway


VARIANTS: dict[str, Callable[[str], Gateway]] = {
    "new connection per request (before)": per_request_connection,
    "pooled session per gateway (now)": pooled,
}


def time_round(gateway: Gateway, tag: str, count: int) -> list[float]:
    seconds = []
    for n in range(count):
        email = f"bench.{tag}.{n}@gmail.com"
        start = time.perf_counter()
        gateway.upsert_member(LIST_ID, email, "subscribed", {"FNAME": "Bench", "LNAME": tag})
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--addresses", type=int, default=1000, help="upserts per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()

    load_before = os.getloadavg()
    timings: dict[str, list[float]] = {name: [] for name in VARIANTS}
    with common.sandbox_process() as sandbox:
        api_url = f"{sandbox.base_url}/3.0/"
        if args.latency_ms:
            sandbox.set_faults(latency_ms=args.latency_ms)
        for round_no in range(args.rounds):
            # Alternate which variant goes first, so neither always meets a warmer server.
            names = list(VARIANTS) if round_no % 2 == 0 else list(reversed(VARIANTS))
            for name in names:
                common.note(f"round {round_no + 1}/{args.rounds}: {name}")
                gateway = VARIANTS[name](api_url)
                tag = f"r{round_no}v{list(VARIANTS).index(name)}"  # new addresses each time
                try:
                    timings[name] += time_round(gateway, tag, args.addresses)
                finally:
                    gateway.close()
    load_after = os.getloadavg()

    print(
        f"load average before: {' '.join(f'{x:.2f}' for x in load_before)};"
        f" after: {' '.join(f'{x:.2f}' for x in load_after)} ({os.cpu_count()} cores)"
    )
    print(
        f"{args.rounds} rounds x {args.addresses} upserts per variant,"
        f" sandbox latency {args.latency_ms:g} ms per request"
    )
    print(f"{'variant':40} {'requests':>8} {'mean ms':>8} {'median':>8} {'p95':>8} {'req/s':>8}")
    means = {}
    for name, seconds in timings.items():
        ms = [s * 1000 for s in seconds]
        means[name] = statistics.fmean(ms)
        p95 = statistics.quantiles(ms, n=20)[-1]
        print(
            f"{name:40} {len(ms):8} {means[name]:8.2f} {statistics.median(ms):8.2f}"
            f" {p95:8.2f} {len(ms) / (sum(ms) / 1000):8.0f}"
        )
    before, now = (means[name] for name in VARIANTS)
    print(f"pooled / per-request time per PUT: {now / before:.2f} ({before / now:.2f}x faster)")


if __name__ == "__main__":
    main()
