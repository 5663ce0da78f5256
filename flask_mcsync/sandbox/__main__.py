"""``python -m flask_mcsync.sandbox [--host H] [--port P]``: the sandbox without a host app."""

from __future__ import annotations

import argparse

from .server import serve


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the local Mailchimp API sandbox.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback)")
    parser.add_argument("--port", type=int, default=8025, help="port to listen on")
    args = parser.parse_args()
    serve(args.host, args.port)


if __name__ == "__main__":
    main()
