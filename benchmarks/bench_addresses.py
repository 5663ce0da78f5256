"""What checking an address costs the planner, with and without the domains' verdicts
remembered (issue 10, target 1).

The planner checks every address of an export (:func:`flask_mcsync.addresses.invalid_reason`),
and so does every preview of the export window. A shop's addresses share few domains, so
the domain's half of the check is remembered per domain. This checks the benchmark
shop's addresses (those of ``bench_export.py``: example_app's names and domains) once
with the verdicts remembered, as the package does, and once with each domain judged
afresh, alternating, and prints the best CPU time of each and their ratio.

    python benchmarks/bench_addresses.py [--addresses 100000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from unittest import mock

from common import address, load_average

from example_app.commands import DOMAINS, FIRST, LAST
from flask_mcsync import addresses


def _cpu(check: Callable[[str], object], emails: list[str]) -> float:
    started = time.process_time()
    for email in emails:
        check(email)
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--addresses", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    emails = [
        address(FIRST[i % len(FIRST)], LAST[(i // 7) % len(LAST)], i, DOMAINS[i % len(DOMAINS)])
        for i in range(args.addresses)
    ]
    afresh = addresses._good_domain.__wrapped__  # the same check, nothing remembered
    remembered: list[float] = []
    judged: list[float] = []
    load_before = load_average()
    for _ in range(args.rounds):
        remembered.append(_cpu(addresses.invalid_reason, emails))
        with mock.patch.object(addresses, "_good_domain", afresh):
            judged.append(_cpu(addresses.invalid_reason, emails))
    per = 1e6 / args.addresses
    print(
        f"{args.addresses:,} addresses, {len(set(DOMAINS))} domains, best of {args.rounds}"
        f" (load {load_before} → {load_average()}):\n"
        f"  domains remembered: {min(remembered) * per:.2f} µs CPU per address\n"
        f"  domains judged afresh: {min(judged) * per:.2f} µs CPU per address\n"
        f"  remembered / afresh: {min(remembered) / min(judged):.2f}"
    )


if __name__ == "__main__":
    main()
