"""The ``understudy`` command line.

Each subcommand lives in its own small ``_add_<name>`` function that registers its parser and
its handler, so new subcommands are added beside the others without touching them:

``understudy tree http://127.0.0.1:9464`` fetches ``/tree`` from a runtime's metrics endpoint
(``Runtime(metrics=(host, port))``) and prints its live actors as an indented tree::

    alice (Account) running  mailbox 0/1000  messages 12  errors 0  restarts 0
      audit (Auditor) running  mailbox 3/1000  oldest 0.004 s  messages 40  ...

``--json`` prints the JSON as served instead.

``understudy inspect app.db`` lists the actors persisted in a store (read-only: safe on a live
store) with their version, last update time and state as JSON::

    understudy inspect app.db                   # persisted actors: version, update time, state
    understudy inspect app.db --actor alice     # only some actors
    understudy inspect app.db --json            # one JSON document, for scripts
    understudy inspect app.db --journal ledger  # an event-sourced actor's journal, in order

Exit status: 0 on success, 1 when the command failed (the reason on stderr: an endpoint that
cannot be reached or answers with something else than a tree, a store that cannot be read),
2 for bad arguments.

``understudy costs app.db [--by agent|model|conversation|day] [--format table|json|csv]`` prints
the cost allocation of the model calls recorded in a store (see :mod:`understudy.llm`).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import msgspec

from understudy.metrics import ActorInfo

Handler = Callable[[argparse.Namespace, TextIO], int]

# -- tree ---------------------------------------------------------------------------------------


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


def _add_tree(commands: Any) -> None:
    tree = commands.add_parser(
        "tree", help="print the live actor tree of a runtime's metrics endpoint"
    )
    tree.add_argument("url", help="the endpoint, e.g. http://127.0.0.1:9464")
    tree.add_argument("--json", action="store_true", help="print the JSON as served")
    tree.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    tree.set_defaults(handler=_tree)


def _tree(args: argparse.Namespace, out: TextIO) -> int:
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


# -- inspect ------------------------------------------------------------------------------------


def _add_inspect(commands: Any) -> None:
    parser = commands.add_parser(
        "inspect",
        help="list the actors persisted in a store",
        description="List the persisted actors of a store (read-only: safe on a live store) "
        "with their version, last update time (UTC) and state as JSON.",
    )
    parser.add_argument("store", help="the SQLite file given to Runtime(store=...)")
    parser.add_argument(
        "--actor", action="append", metavar="NAME", help="only this actor (repeatable)"
    )
    parser.add_argument(
        "--journal", metavar="NAME", help="print this event-sourced actor's journal instead"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.set_defaults(handler=_inspect)


def _inspect(args: argparse.Namespace, out: TextIO) -> int:
    from understudy.persistence._inspect import journal_records, schema_version, snapshot_records

    try:
        if args.journal is not None:
            _print_journal(args, out, journal_records(args.store, args.journal))
            return 0
        records = snapshot_records(args.store, args.actor)
        if args.json:
            schema = schema_version(args.store)
            _write_json(out, {"store": args.store, "schema": schema, "actors": records})
            return 0
    except (OSError, sqlite3.Error, ValueError) as exc:
        print(f"understudy inspect: {exc}", file=sys.stderr)
        return 1
    if not records:
        out.write("no persisted actors\n")
        return 0
    width = max(len("ACTOR"), *(len(r["actor"]) for r in records))
    out.write(f"{'ACTOR':<{width}}  {'VERSION':>8}  {'UPDATED (UTC)':<32}  STATE\n")
    for record in records:
        state = msgspec.json.encode(record["state"]).decode()
        out.write(
            f"{record['actor']:<{width}}  {record['version']:>8}  "
            f"{record['updated']:<32}  {state}\n"
        )
    return 0


def _print_journal(args: argparse.Namespace, out: TextIO, entries: list[dict[str, Any]]) -> None:
    if args.json:
        _write_json(out, {"store": args.store, "actor": args.journal, "journal": entries})
    elif not entries:
        out.write(f"no journal entries for {args.journal!r}\n")
    else:
        out.write(f"{'SEQ':>8}  {'RECORDED (UTC)':<32}  {'KIND':<20}  EVENT\n")
        for entry in entries:
            event = msgspec.json.encode(entry["event"]).decode()
            out.write(f"{entry['seq']:>8}  {entry['recorded']:<32}  {entry['kind']:<20}  {event}\n")


def _write_json(out: TextIO, document: object) -> None:
    out.write(msgspec.json.format(msgspec.json.encode(document).decode(), indent=2) + "\n")


# -- the command line ---------------------------------------------------------------------------


def _add_demo(commands: Any) -> None:
    from understudy.demo.cli import add_demo  # the demo pulls in the whole runtime

    add_demo(commands)


def _add_costs(commands: Any) -> None:
    # llm area: the call records' cost allocation (understudy.llm)
    from understudy.llm._cli import add_costs

    add_costs(commands)


SUBCOMMANDS: tuple[Callable[[Any], None], ...] = (_add_demo, _add_tree, _add_inspect, _add_costs)
"""Every subcommand's registration function, in the order ``--help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="understudy", description="understudy runtime tools")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); the exit status."""
    out = out if out is not None else sys.stdout
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args, out)


if __name__ == "__main__":
    sys.exit(main())
