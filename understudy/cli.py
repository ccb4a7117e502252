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
    understudy inspect app.db --conversation c1 # an agent conversation, turn by turn
    understudy inspect app.db --log conv-1      # an actor's Log fields' entries, in order
    understudy inspect app.db --budgets         # persistent budgets: spent, reserved, limits
    understudy inspect app.db --entities        # entity types and their persisted keys
    understudy inspect app.db --entity chat/42  # one entity's state and Log entries

Exit status: 0 on success, 1 when the command failed (the reason on stderr: an endpoint that
cannot be reached or answers with something else than a tree, a store that cannot be read),
2 for bad arguments (a one-line error on stderr: a timeout that is not a positive number, a
URL that is not ``http(s)://host[:port]``, a ``--db`` in a directory that does not exist).

Names read from an endpoint or a store are printed with control and other unprintable
characters escaped (``\\x1b``, ``\\n``...), so a name cannot forge table rows or recolour the
terminal; ``--json`` output is JSON, escaped by its encoder.

``understudy costs app.db [--by agent|model|conversation|day] [--format table|json|csv]`` prints
the cost allocation of the model calls recorded in a store (see :mod:`understudy.llm`).
"""

from __future__ import annotations

import argparse
import math
import sqlite3
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TextIO

import msgspec

from understudy.metrics import ActorInfo

Handler = Callable[[argparse.Namespace, TextIO], int]


def printable(text: str) -> str:
    """``text`` with every unprintable character (control characters, a lone surrogate...)
    written as a Python escape, and backslashes doubled: safe to print in a terminal row."""
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(c if c.isprintable() and c != "\\" else repr(c)[1:-1] for c in text)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _seconds(text: str) -> float:
    """``--timeout``: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, not {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return value


def check_url(url: str) -> str:
    """``url`` if it is ``http(s)://host[:port][/path]`` (the scheme may be left out);
    raises ``ValueError`` naming what is wrong otherwise."""
    full = url if "://" in url else "http://" + url
    try:
        parts = urllib.parse.urlsplit(full)
        port = parts.port  # ValueError for a port that is not 0..65535
    except ValueError as exc:
        raise ValueError(f"bad URL {url!r}: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"bad URL {url!r}: the scheme must be http or https")
    if not parts.hostname:
        raise ValueError(f"bad URL {url!r}: no host")
    if port == 0:
        raise ValueError(f"bad URL {url!r}: port 0")
    if any(not c.isprintable() or c.isspace() for c in full):
        raise ValueError(f"bad URL {printable(url)!r}: it contains spaces or control characters")
    return url


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
            f"{'  ' * depth}{printable(actor.name)} ({printable(actor.actor_class)}) "
            f"{printable(actor.state)}",
            f"mailbox {actor.mailbox_depth}/{actor.mailbox_capacity}",
        ]
        if actor.oldest_message_age is not None:
            parts.append(f"oldest {actor.oldest_message_age:.3f} s")
        if actor.handling is not None:
            parts.append(f"handling {printable(actor.handling)}")
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
    tree.add_argument("--timeout", type=_seconds, default=10.0, help="seconds (default 10)")
    tree.set_defaults(handler=_tree)


def _tree(args: argparse.Namespace, out: TextIO) -> int:
    try:
        check_url(args.url)
    except ValueError as exc:
        print(f"understudy tree: {exc}", file=sys.stderr)
        return 2
    try:
        actors = fetch_tree(args.url, args.timeout)
    except (OSError, urllib.error.URLError, ValueError) as exc:
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
    parser.add_argument(
        "--conversation",
        metavar="NAME",
        help="print this agent conversation turn by turn, with its token usage",
    )
    parser.add_argument(
        "--log", metavar="NAME", help="print the entries of this actor's Log fields instead"
    )
    parser.add_argument(
        "--budgets", action="store_true", help="print the persistent budgets instead"
    )
    # entities (pools engineer): persisted under "<type>/<key>"
    parser.add_argument(
        "--entities", action="store_true", help="list entity types and their persisted keys"
    )
    parser.add_argument(
        "--entity", metavar="TYPE/KEY", help="show one entity's state and its Log entries"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.set_defaults(handler=_inspect)


def _inspect(args: argparse.Namespace, out: TextIO) -> int:
    from understudy.persistence._inspect import (
        budget_records,
        journal_only,
        journal_records,
        log_records,
        schema_version,
        snapshot_records,
    )

    try:
        if args.conversation is not None:  # agents (wave 2)
            from understudy.agents._inspect import conversation_json, conversation_text

            if args.json:
                _write_json(out, conversation_json(args.store, args.conversation))
            else:
                out.write(conversation_text(args.store, args.conversation))
            return 0
        if args.entities or args.entity is not None:
            return _inspect_entities(args, out)
        if args.journal is not None:
            _print_journal(args, out, journal_records(args.store, args.journal))
            return 0
        if args.log is not None:
            _print_log(args, out, log_records(args.store, args.log))
            return 0
        if args.budgets:
            _print_budgets(args, out, budget_records(args.store))
            return 0
        records = snapshot_records(args.store, args.actor)
        wanted = set(args.actor) if args.actor else None
        journaled = [r for r in journal_only(args.store) if wanted is None or r["actor"] in wanted]
        if args.json:
            schema = schema_version(args.store)
            document = {"store": args.store, "schema": schema, "actors": records}
            _write_json(out, {**document, "journaled": journaled})
            return 0
    except (OSError, sqlite3.Error, ValueError) as exc:
        print(f"understudy inspect: {exc}", file=sys.stderr)
        return 1
    if journaled:
        _print_journaled(out, journaled)
    if not records:
        if not journaled:
            out.write("no persisted actors\n")
        return 0
    names = [printable(str(r["actor"])) for r in records]
    width = max(len("ACTOR"), *(len(name) for name in names))
    out.write(f"{'ACTOR':<{width}}  {'VERSION':>8}  {'UPDATED (UTC)':<32}  STATE\n")
    for name, record in zip(names, records, strict=True):
        state = _json_text(record["state"])
        out.write(
            f"{name:<{width}}  {record['version']:>8}  "
            f"{printable(str(record['updated'])):<32}  {state}\n"
        )
    return 0


def _print_journaled(out: TextIO, journaled: list[dict[str, Any]]) -> None:
    """The actors whose state is their journal (agent conversations), before the snapshots."""
    names = [printable(str(r["actor"])) for r in journaled]
    width = max(len("JOURNALED"), *(len(name) for name in names))
    out.write(f"{'JOURNALED':<{width}}  {'ENTRIES':>8}  UPDATED (UTC)\n")
    for name, record in zip(names, journaled, strict=True):
        out.write(f"{name:<{width}}  {record['entries']:>8}  {printable(str(record['updated']))}\n")
    out.write(
        "(state kept as a journal only: --conversation NAME shows an agent conversation turn "
        "by turn, --journal NAME any journal)\n\n"
    )


def _inspect_entities(args: argparse.Namespace, out: TextIO) -> int:
    from understudy.persistence._inspect import (
        journal_only,
        journal_records,
        log_records,
        snapshot_records,
    )

    if args.entity is not None:
        if "/" not in args.entity:
            print("understudy inspect: --entity takes TYPE/KEY", file=sys.stderr)
            return 2
        records = snapshot_records(args.store, [args.entity])
        if not records and any(r["actor"] == args.entity for r in journal_only(args.store)):
            # an agent conversation (an entity whose state is its journal): its entries
            kind, key = args.entity.split("/", 1)
            journal = journal_records(args.store, args.entity)
            hint = f"understudy inspect {args.store} --conversation {args.entity}"
            _write_json(out, {"type": kind, "key": key, "journal": journal, "turn_by_turn": hint})
            return 0
        if not records:
            print(
                f"understudy inspect: no persisted entity {printable(repr(args.entity))}",
                file=sys.stderr,
            )
            return 1
        record = records[0]
        kind, key = args.entity.split("/", 1)
        # an entity's history is usually a Log field (its snapshot holds only the length):
        # its entries are shown too, as ``--log`` shows them
        log = log_records(args.store, args.entity)
        _write_json(out, {"type": kind, "key": key, **record, "log": log})
        return 0
    types: dict[str, list[str]] = {}
    for record in [*snapshot_records(args.store), *journal_only(args.store)]:
        kind, sep, key = record["actor"].partition("/")
        if sep:
            types.setdefault(kind, []).append(key)
    if args.json:
        _write_json(out, {"store": args.store, "entities": types})
    elif not types:
        out.write("no persisted entities\n")
    else:
        for kind, keys in sorted(types.items()):
            out.write(f"{printable(kind)}  ({len(keys)} keys)\n")
            for key in sorted(keys):
                out.write(f"  {printable(key)}\n")
    return 0


def _print_journal(args: argparse.Namespace, out: TextIO, entries: list[dict[str, Any]]) -> None:
    if args.json:
        _write_json(out, {"store": args.store, "actor": args.journal, "journal": entries})
    elif not entries:
        out.write(f"no journal entries for {printable(repr(args.journal))}\n")
    else:
        out.write(f"{'SEQ':>8}  {'RECORDED (UTC)':<32}  {'KIND':<20}  EVENT\n")
        for entry in entries:
            event = _json_text(entry["event"])
            recorded, kind = printable(str(entry["recorded"])), printable(str(entry["kind"]))
            out.write(f"{entry['seq']:>8}  {recorded:<32}  {kind:<20}  {event}\n")


def _json_text(value: object) -> str:
    """``value`` as one line of JSON that is safe in a terminal (JSON escapes control
    characters; a lone surrogate in a string is spelled out first)."""
    try:
        text = msgspec.json.encode(value).decode()
    except (UnicodeEncodeError, msgspec.EncodeError):
        text = repr(value)
    return printable(text)


def _print_log(args: argparse.Namespace, out: TextIO, entries: list[dict[str, Any]]) -> None:
    if args.json:
        _write_json(out, {"store": args.store, "actor": args.log, "log": entries})
    elif not entries:
        out.write(f"no log entries for {printable(repr(args.log))}\n")
    else:
        out.write(f"{'FIELD':<16}  {'SEQ':>8}  {'RECORDED (UTC)':<32}  ENTRY\n")
        for entry in entries:
            value = _json_text(entry["entry"])
            field = printable(str(entry["field"]))
            out.write(f"{field:<16}  {entry['seq']:>8}  {entry['recorded']:<32}  {value}\n")


def _print_budgets(args: argparse.Namespace, out: TextIO, budgets: list[dict[str, Any]]) -> None:
    if args.json:
        _write_json(out, {"store": args.store, "budgets": budgets})
        return
    if not budgets:
        out.write("no persistent budgets\n")
        return
    names = [printable(str(b["name"])) for b in budgets]
    width = max(len("BUDGET"), *(len(name) for name in names))
    out.write(
        f"{'BUDGET':<{width}}  {'USD SPENT/RESERVED/LIMIT':<28}  TOKENS SPENT/RESERVED/LIMIT\n"
    )
    for b, name in zip(budgets, names, strict=True):
        spent, held = b["spent"], b["reserved"]
        usd = (
            f"{spent['usd']:g}/{held['usd']:g}/{'-' if b['usd'] is None else format(b['usd'], 'g')}"
        )
        limit = "-" if b["tokens"] is None else b["tokens"]
        out.write(f"{name:<{width}}  {usd:<28}  {spent['tokens']}/{held['tokens']}/{limit}\n")


def _write_json(out: TextIO, document: object) -> None:
    try:
        text = msgspec.json.encode(document).decode()
    except (UnicodeEncodeError, msgspec.EncodeError):  # a lone surrogate: JSON's own escape
        import json

        text = json.dumps(document, default=str)
    out.write(msgspec.json.format(text, indent=2) + "\n")


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
    parser = _Parser(prog="understudy", description="understudy runtime tools")
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
