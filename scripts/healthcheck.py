"""A container healthcheck: every address given answers the gRPC health service SERVING.

    python scripts/healthcheck.py --root-certificates CA HOST:PORT [HOST:PORT...]
    python scripts/healthcheck.py --insecure HOST:PORT [HOST:PORT...]

Exit 0 when all serve, else 1 with one line per address that does not (a draining
SuperLink reports NOT_SERVING). compose.yaml runs it in the SuperLink's container; asking
the health service, not merely opening a port, also proves that TLS is set up.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from stamen.common.errors import StamenError
from stamen.transport.grpc import check_health, connect

TIMEOUT = 3.0
"""Seconds each address gets to answer."""


async def failures(
    addresses: list[str], root_certificates: Path | None, insecure: bool
) -> list[str]:
    """One line for each address that does not serve, saying why."""

    async def probe(address: str) -> str | None:
        channel = connect(address, root_certificates=root_certificates, insecure=insecure)
        try:
            await check_health(channel, timeout=TIMEOUT)
        except StamenError as exc:
            return f"{address}: {exc}"
        finally:
            channel.close()
        return None

    results = await asyncio.gather(*(probe(address) for address in addresses))
    return [result for result in results if result is not None]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    security = parser.add_mutually_exclusive_group(required=True)
    security.add_argument("--root-certificates", type=Path, metavar="CA")
    security.add_argument("--insecure", action="store_true")
    parser.add_argument("addresses", nargs="+", metavar="HOST:PORT")
    args = parser.parse_args()
    try:
        problems = asyncio.run(failures(args.addresses, args.root_certificates, args.insecure))
    except StamenError as exc:
        problems = [str(exc)]
    for problem in problems:
        print(f"unhealthy: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
