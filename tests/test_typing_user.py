"""Types that check (issue 11 §5): the README's tour and a user's program pass
``mypy --strict`` against the *installed* package (no MYPYPATH: an editable install must be
visible to mypy), and an ask's reply type is covariant."""

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
    from typing import assert_type

    import msgspec

    import understudy as us


    class GetBalance(us.Request[int], frozen=True):
        pass


    class Account(us.Actor):
        class State(msgspec.Struct):
            balance: int = 0

        state: State

        async def balance(self, msg: GetBalance) -> int:
            assert_type(self.state.balance, int)
            return self.state.balance


    async def check(ref: us.Ref) -> None:
        assert_type(await ref.ask(GetBalance()), int)
        print(await ref.ask(GetBalance()))          # Request[int] is a Request[object]
        float(await ref.ask(GetBalance(), timeout=1.0))
        wide: us.Request[float] = GetBalance()      # covariant
        assert_type(await ref.ask(wide), float)
        ref.bound_to
    """
)


def mypy(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "MYPYPATH"}
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_the_readme_tour_and_a_user_program_pass_mypy_strict_against_the_install(
    tmp_path: Path,
) -> None:
    (tmp_path / "user.py").write_text(SNIPPET)
    (tmp_path / "tour.py").write_text((ROOT / "examples" / "tour.py").read_text())
    readme = (ROOT / "README.md").read_text()
    tour = readme.split("## A short tour", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "readme_tour.py").write_text(tour)
    result = mypy("user.py", "tour.py", "readme_tour.py", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found in 3 source files" in result.stdout
