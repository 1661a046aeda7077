import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")  # agora listens on plain http://127.0.0.1 in tests

from agora import Agora  # noqa: E402


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def agora(request):
    server = Agora(request.param, env={"AGORA_ALLOW_LOOPBACK_FETCH": "true"})
    yield server
    server.close()


@pytest.fixture(scope="module")
def idp():
    """A test OpenID provider on loopback, for token exchange (tests needing a fresh one per test define their own)."""
    from idp import IdentityProvider

    provider = IdentityProvider()
    yield provider
    provider.close()
