"""Static typing promises: a type checker infers an ask's reply type from the request."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("mypy", reason="mypy is not installed (the dev extra: pip install -e '.[dev]')")

ROOT = Path(__file__).resolve().parent.parent

SNIPPET = textwrap.dedent(
    """
    import understudy as us


    class GetBalance(us.Request[int], frozen=True):
        pass


    class GetHistory(us.Request[list[str]], frozen=True):
        pass


    class Deposit(us.Message, frozen=True):
        amount: int


    async def check(ref: us.Ref) -> None:
        reveal_type(await ref.ask(GetBalance(), timeout=1.0))
        reveal_type(await ref.ask(GetHistory()))
        await ref.ask(Deposit(1))  # a one-way message is not a request
        wrong: str = await ref.ask(GetBalance())
    """
)


def test_ask_is_typed_by_the_request(tmp_path: Path) -> None:
    (tmp_path / "snippet.py").write_text(SNIPPET)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "snippet.py"],
        cwd=tmp_path,
        env={**os.environ, "MYPYPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = [line.split(": ", 1)[1] for line in result.stdout.splitlines() if ": " in line]
    revealed = [line for line in lines if line.startswith("note: Revealed type")]
    # mypy spells builtins with or without their module, depending on its version.
    assert [line.replace("builtins.", "") for line in revealed] == [
        'note: Revealed type is "int"',
        'note: Revealed type is "list[str]"',
    ], result.stdout
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 2, result.stdout
    assert '"Deposit"' in errors[0]
    assert '"GetBalance"' in errors[1]
    assert '"Request[str]"' in errors[1]
