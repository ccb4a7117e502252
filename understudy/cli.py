"""The ``understudy`` command line.

``understudy tree http://127.0.0.1:9464`` fetches ``/tree`` from a runtime's metrics endpoint
(``Runtime(metrics=(host, port))``) and prints its live actors as an indented tree::

    alice (Account) running  mailbox 0/1000  messages 12  errors 0  restarts 0
      audit (Auditor) running  mailbox 3/1000  oldest 0.004 s  messages 40  ...

``--json`` prints the JSON as served instead. Exit status: 0 on success, 1 when the endpoint
cannot be reached or answers with something else than a tree, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import TextIO

import msgspec

from understudy.metrics import ActorInfo


def tree_url(url: str) -> str:
    """The ``/tree`` URL of an endpoint given as ``http://host:port`` (or its ``/tree``)."""
    if "://" not in url:
        url = "http://" + url
    url = url.rstrip("/")
    for suffix in ("/tree", "/metrics"):
        if url.endswith(suffix):
            url = url[: -len(suffix)]
    return url + "/tree"


def fetch_tree(url: str, timeout: float = 10.0) -> list[ActorInfo]:
    """GET the endpoint's ``/tree`` and decode it. Blocks; raises ``OSError`` (network) or
    ``msgspec.ValidationError``/``msgspec.DecodeError`` (not a tree)."""
    with urllib.request.urlopen(tree_url(url), timeout=timeout) as response:
        body = response.read()
    return msgspec.json.decode(body, type=list[ActorInfo])


def format_tree(actors: Sequence[ActorInfo]) -> str:
    """Actors as an indented tree, one line per actor, children indented below it."""
    lines: list[str] = []

    def walk(actor: ActorInfo, depth: int) -> None:
        parts = [
            f"{'  ' * depth}{actor.name} ({actor.actor_class}) {actor.state}",
            f"mailbox {actor.mailbox_depth}/{actor.mailbox_capacity}",
        ]
        if actor.oldest_message_age is not None:
            parts.append(f"oldest {actor.oldest_message_age:.3f} s")
        if actor.handling is not None:
            parts.append(f"handling {actor.handling}")
        parts.append(f"messages {actor.messages}")
        parts.append(f"errors {actor.errors}")
        parts.append(f"restarts {actor.restarts}")
        lines.append("  ".join(parts))
        for child in actor.children:
            walk(child, depth + 1)

    for actor in actors:
        walk(actor, 0)
    return "\n".join(lines) if lines else "(no live actors)"


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); the exit status."""
    out = out if out is not None else sys.stdout
    parser = argparse.ArgumentParser(prog="understudy", description="understudy runtime tools")
    commands = parser.add_subparsers(dest="command", required=True)
    tree = commands.add_parser(
        "tree", help="print the live actor tree of a runtime's metrics endpoint"
    )
    tree.add_argument("url", help="the endpoint, e.g. http://127.0.0.1:9464")
    tree.add_argument("--json", action="store_true", help="print the JSON as served")
    tree.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    args = parser.parse_args(argv)

    try:
        actors = fetch_tree(args.url, args.timeout)
    except (OSError, urllib.error.URLError) as exc:
        print(f"understudy tree: cannot fetch {tree_url(args.url)}: {exc}", file=sys.stderr)
        return 1
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        print(f"understudy tree: {tree_url(args.url)} did not serve a tree: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(msgspec.json.encode(actors).decode(), file=out)
    else:
        print(format_tree(actors), file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
