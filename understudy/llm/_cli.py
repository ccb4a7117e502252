"""``understudy costs DB``: the cost allocation of the recorded model calls."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sqlite3
import sys
from typing import Any, TextIO

from understudy.llm._records import GROUPINGS, format_table, read_records, summarize

FORMATS = ("table", "json", "csv")


def add_costs(commands: Any) -> None:
    parser = commands.add_parser(
        "costs",
        help="cost allocation of the model calls recorded in a store",
        description="Print the model calls recorded in a store (read-only), one row per call, "
        "or their totals per agent, model, conversation or day (UTC), dearest first.",
    )
    parser.add_argument("store", help="the SQLite file given to Runtime(store=...)")
    parser.add_argument("--by", default="call", metavar="|".join(GROUPINGS[1:]))
    parser.add_argument("--format", default="table", metavar="|".join(FORMATS))
    parser.set_defaults(handler=costs_command)


def costs_command(args: argparse.Namespace, out: TextIO) -> int:
    def fail(message: str) -> int:
        print(f"understudy costs: {message}", file=sys.stderr)
        return 2

    if args.by not in GROUPINGS:
        return fail(f"--by must be one of {', '.join(GROUPINGS[1:])}, not {args.by!r}")
    if args.format not in FORMATS:
        return fail(f"--format must be one of {', '.join(FORMATS)}, not {args.format!r}")
    if not os.path.isfile(args.store):
        return fail(f"no database file at {args.store!r}")
    try:
        rows = summarize(read_records(args.store), args.by)
    except sqlite3.Error as exc:
        return fail(f"cannot read {args.store!r}: {exc}")
    if args.format == "json":
        json.dump(rows, out, indent=2)
        out.write("\n")
    elif args.format == "csv":
        buffer = io.StringIO()
        if rows:
            writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        out.write(buffer.getvalue())
    else:
        out.write(format_table(rows) + "\n")
    return 0
