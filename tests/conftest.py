"""Every ``@pytest.mark.anyio`` test runs once on asyncio and once on trio."""

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param
