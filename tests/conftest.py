"""Shared test settings: backend-neutral tests run on asyncio and on trio."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """``@pytest.mark.anyio`` tests run once per backend."""
    return str(request.param)
