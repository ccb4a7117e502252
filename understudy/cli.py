"""The ``understudy`` command line.

Each subcommand lives in its own small ``_add_<name>`` function that registers its parser
and handler, so new subcommands are added beside the others without touching them::

    understudy inspect app.db                 # persisted actors: version, update time, state
    understudy inspect app.db --actor alice   # only some actors
    understudy inspect app.db --json          # one JSON document, for scripts
    understudy inspect app.db --journal ledger  # an event-sourced actor's journal, in order

Exit status: 0 on success, 1 when the command failed (the reason on stderr), 2 for bad usage.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import msgspec

Handler = Callable[[argparse.Namespace, TextIO], int]


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

    if args.journal is not None:
        entries = journal_records(args.store, args.journal)
        if args.json:
            _write_json(out, {"store": args.store, "actor": args.journal, "journal": entries})
        elif not entries:
            out.write(f"no journal entries for {args.journal!r}\n")
        else:
            out.write(f"{'SEQ':>8}  {'RECORDED (UTC)':<32}  {'KIND':<20}  EVENT\n")
            for entry in entries:
                event = msgspec.json.encode(entry["event"]).decode()
                out.write(
                    f"{entry['seq']:>8}  {entry['recorded']:<32}  {entry['kind']:<20}  {event}\n"
                )
        return 0
    records = snapshot_records(args.store, args.actor)
    if args.json:
        _write_json(
            out, {"store": args.store, "schema": schema_version(args.store), "actors": records}
        )
        return 0
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


def _write_json(out: TextIO, document: object) -> None:
    out.write(msgspec.json.format(msgspec.json.encode(document).decode(), indent=2) + "\n")


SUBCOMMANDS: tuple[Callable[[Any], None], ...] = (_add_inspect,)
"""Every subcommand's registration function, in the order ``--help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="understudy", description="understudy: an async actor runtime for LLM agents."
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; the process exit status."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args, out if out is not None else sys.stdout)
    except (OSError, sqlite3.Error, ValueError) as exc:
        print(f"understudy {args.handler.__name__.lstrip('_')}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
