"""Per-user third-party credentials. A second `agora serve` plays the OAuth provider; an upstream MCP
server echoes the Authorization header it receives. Users connect through the hub's connect link,
each call carries the caller's own provider token (never another user's, never an agora token),
locked profiles resolve only credentials assigned to them, expiring tokens are refreshed, and the
hub's database holds no credential in plain text. On SQLite and PostgreSQL."""

import asyncio
import base64
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.parse

import httpx2
import pytest
import requests
from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client

from agora import Agora, Browser
from test_accounts import Tenant, call, eventually, initialize, tools_of, value_of
from test_exchange import exchange
from test_hub import RawSession, free_port, wait_for_port

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


@pytest.fixture(scope="module")
def provider():
    server = Agora("sqlite", env={"AGORA_LOG": "warn"})
    yield server
    server.close()


@pytest.fixture(scope="module")
def echo():
    port = free_port()
    process = subprocess.Popen([sys.executable, os.path.join(FIXTURES, "echo_auth_server.py"), str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port)
    yield f"http://127.0.0.1:{port}/mcp"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def setup(request, provider, echo, idp):
    # Statements are logged (their text, never bound values) for the query count below.
    hub = Agora(request.param, env={"AGORA_ALLOW_LOOPBACK_FETCH": "true", "AGORA_LOG": "info,rmcp=warn,sqlx::query=debug"})
    tenant = Tenant(hub, idp, [("--server", "echo", "--tool", "*")])
    app = provider.create_client(name="hub-connect", redirect=hub.url("/connect/callback"))
    hub.cli("admin", "service", "add", "--account", tenant.id, "--name", "prov",
            "--authorize-url", provider.url("/oauth/auth"), "--token-url", provider.url("/oauth/token"),
            "--client-id", app["CIVIC_CLIENT_ID"], "--client-secret-stdin", "--scopes", "openid email offline_access",
            "--revocation-url", provider.url("/oauth/token/revocation"),
            stdin=app["CIVIC_CLIENT_SECRET"] + "\n")
    hub.cli("admin", "server", "add", "--name", "echo", "--url", echo, "--service", "prov")
    yield hub, tenant
    hub.close()


class Member:
    """A hub user (signed in through the test IdP, a member of the tenant) with an account at the provider."""

    def __init__(self, hub, tenant, idp, provider, name, role="MEMBER"):
        self.email = f"{name}-{secrets.token_hex(3)}@example.com"
        self.password = secrets.token_urlsafe(12)
        provider.cli("admin", "user", "create", "--email", self.email, "--password-stdin", stdin=self.password + "\n")
        self.hub, self.tenant, self.idp, self.provider = hub, tenant, idp, provider
        self.token = tenant.token_for(idp, self.email)
        hub.cli("admin", "account", "member", "--account", tenant.id, "--email", self.email, "--role", role)

    def locked_token(self):
        response = exchange(self.hub, self.tenant.client, self.idp.token(sub=self.email, email=self.email, email_verified=True),
                            civic_profile=self.tenant.profile)
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    def whoami(self, token=None, tool="echo_whoami"):
        return call(RawSession(self.hub, token or self.token), tool, {})["result"]

    def user_id(self):
        return requests.get(self.hub.url("/oauth/userinfo"), headers={"Authorization": f"Bearer {self.token}"},
                            timeout=10).json()["sub"]

    def api(self, method, path, body=None):
        return requests.request(method, self.hub.url(f"/api/v1/accounts/{self.tenant.id}{path}"), json=body, timeout=10,
                                headers={"Authorization": f"Bearer {self.token}"})

    def join_and_connect(self):
        """Waits until the hub admits this member, then connects their provider account through the link it gives."""
        eventually(lambda: initialize(self.hub, self.token).status_code == 200, "admitted")
        browser, callback = self.connect(link_in(self.whoami()))
        assert browser.get(callback).status_code == 200

    def connect(self, link, browser=None):
        """Follows a connect link in a browser through the provider's sign-in, back to the hub."""
        browser = browser or Browser(self.provider)
        start = browser.get(link)
        assert start.status_code in (302, 303), start.text
        signed_in = browser.password_sign_in(start.headers["Location"], self.email, self.password)
        assert signed_in.status_code in (302, 303), signed_in.text
        callback = signed_in.headers["Location"]
        assert callback.startswith(self.hub.url("/connect/callback"))
        return browser, callback

    def provider_email(self, header):
        """Whose provider token an Authorization header carries."""
        token = header.removeprefix("Bearer ")
        info = requests.get(self.provider.url("/oauth/userinfo"), headers={"Authorization": f"Bearer {token}"}, timeout=10)
        return info.json().get("email") if info.status_code == 200 else None


def link_in(result, service="prov"):
    assert result["isError"], result
    text = result["content"][0]["text"]
    assert f"connect your {service} account" in text, text
    return text.split("open ", 1)[1].split(" ", 1)[0]


def test_each_user_calls_with_their_own_credential(setup, idp, provider, echo):
    hub, tenant = setup
    ann, ben = (Member(hub, tenant, idp, provider, n) for n in ("ann", "ben"))
    eventually(lambda: initialize(hub, ann.token).status_code == 200, "members are admitted")

    link = link_in(ann.whoami())
    assert link.startswith(hub.url("/connect/"))
    browser, callback = ann.connect(link)
    assert Browser(provider).get(callback).status_code == 400, "the callback only completes in the browser that started"
    # That attempt is spent now; a fresh link, followed through properly, connects.
    link = link_in(ann.whoami())
    browser, callback = ann.connect(link)
    done = browser.get(callback)
    assert done.status_code == 200 and "connected" in done.text
    assert browser.get(callback).status_code == 400, "a replayed callback finds nothing"
    assert Browser(provider).get(link).status_code == 404, "a used link is spent"

    header = ann.whoami()["content"][0]["text"]
    assert ann.provider_email(header) == ann.email, "the upstream sees ann's provider token"
    assert link_in(ben.whoami()), "ben has not connected: ann's credential is not his"
    browser, callback = ben.connect(link_in(ben.whoami()))
    assert browser.get(callback).status_code == 200
    assert ben.provider_email(ben.whoami()["content"][0]["text"]) == ben.email
    assert ann.provider_email(ann.whoami()["content"][0]["text"]) == ann.email

    seen = call(RawSession(hub, ann.token), "echo_seen", {})["result"]["content"][0]["text"].splitlines()
    for agora_token in (ann.token, ben.token):
        assert not any(agora_token in line for line in seen), "no agora token ever reaches the upstream"

    # Nothing in the hub's database holds a provider token (or the service's client secret) in plain text.
    stored = hub.stored_bytes()
    for line in seen:
        if line:
            assert line.removeprefix("Bearer ").encode() not in stored


def test_locked_profiles_use_only_assigned_credentials(setup, idp, provider):
    hub, tenant = setup
    cy = Member(hub, tenant, idp, provider, "cy")
    cy.join_and_connect()
    unlocked_header = cy.whoami()["content"][0]["text"]
    assert cy.provider_email(unlocked_header) == cy.email

    locked = cy.locked_token()
    link = link_in(cy.whoami(locked))  # the unassigned credential is not used through the locked profile
    browser, callback = cy.connect(link)
    assert browser.get(callback).status_code == 200
    locked_header = cy.whoami(locked)["content"][0]["text"]
    assert cy.provider_email(locked_header) == cy.email and locked_header != unlocked_header, \
        "connecting through the locked profile assigned the new credential to it"
    assert not cy.whoami()["isError"], "the unlocked profile still resolves the user's credentials"


def test_expiring_tokens_are_refreshed_and_failed_refresh_asks_to_reconnect(setup, idp, provider):
    hub, tenant = setup
    dee = Member(hub, tenant, idp, provider, "dee")
    dee.join_and_connect()
    first = dee.whoami()["content"][0]["text"]

    # The access token is about to expire: the next call refreshes it first, unnoticed.
    expire_credentials(hub)
    refreshed = dee.whoami()
    assert not refreshed["isError"] and refreshed["content"][0]["text"] != first
    assert dee.provider_email(refreshed["content"][0]["text"]) == dee.email

    # The provider no longer honours the refresh token (the user is gone there): connect again.
    provider.cli("admin", "user", "disable", "--email", dee.email)
    expire_credentials(hub)
    assert link_in(dee.whoami()).startswith(hub.url("/connect/"))


def expire_credentials(hub):
    """Time passes: every stored token is due for a refresh. Hubs cache resolutions until the token's refresh
    time or the next policy epoch; the epoch is bumped as a replica's change would, and the hub polls it each second."""
    hub.sql("UPDATE credentials SET expires_at = 1")
    hub.sql("UPDATE policy_epoch SET epoch = epoch + 1 WHERE id = 1")
    time.sleep(1.5)


def statements(hub):
    """The SQL statements the hub has run so far, in order (sqlx's debug log)."""
    return re.findall(r'sqlx::query: summary="([^"]*)"', hub.server_log())


def test_steady_state_hub_calls_query_nothing(setup, idp, provider):
    """After warm-up, 1,000 calls through the hub (token, admission, profile, toolkit, the caller's stored
    credential, the upstream connection) run no statement of their own: all that runs meanwhile is background
    work (epoch polls, the upstream-set refresh, audit entries written in groups)."""
    hub, tenant = setup
    hal = Member(hub, tenant, idp, provider, "hal")
    hal.join_and_connect()
    session = RawSession(hub, hal.token)
    for _ in range(20):
        assert call(session, "echo_whoami", {})["result"]["isError"] is False
    time.sleep(1.5)  # past the epoch poll that follows the connect's policy change

    before = len(statements(hub))
    started = time.time()
    for _ in range(1000):
        assert call(session, "echo_whoami", {})["result"]["isError"] is False
    elapsed = time.time() - started
    time.sleep(0.3)  # the last audit group commits
    ran = statements(hub)[before:]

    background = {
        "SELECT epoch FROM policy_epoch": 2 * (elapsed + 1),
        "SELECT epoch FROM revocation_epoch": 2 * (elapsed + 1),
        "SELECT id, name, transport": elapsed / 5 + 2,  # the upstream set, re-read every 5 s
        # Audit entries, one statement per group of up to 50 ms, each its own transaction.
        "INSERT INTO audit_log": elapsed / 0.05 + 2,
        "BEGIN": elapsed / 0.05 + 2,
        "COMMIT": elapsed / 0.05 + 2,
    }
    counts = {prefix: sum(1 for s in ran if s.startswith(prefix)) for prefix in background}
    others = [s for s in ran if not any(s.startswith(prefix) for prefix in background)]
    assert others == [], f"statements on the request path: {sorted(set(others))}"
    for prefix, bound in background.items():
        assert counts[prefix] <= bound, (prefix, counts[prefix], elapsed)
    assert len(tenant.audit()) >= 1000


def test_shared_keys_assignments_disconnect_and_bad_input(setup, idp, provider, echo):
    hub, tenant = setup
    hub.cli("admin", "service", "add", "--account", tenant.id, "--name", "keys", "--api-key",
            "--header-template", "Key {token}")
    hub.cli("admin", "server", "add", "--name", "keyed", "--url", echo, "--service", "keys")
    hub.cli("admin", "toolkit", "tool", "--account", tenant.id, "--toolkit", "kit", "--server", "keyed", "--tool", "*")
    hub.cli("admin", "service", "add", "--account", tenant.id, "--name", "vault", "--basic", "--header-template", "Basic {token}")
    hub.cli("admin", "server", "add", "--name", "vaulted", "--url", echo, "--service", "vault")
    hub.cli("admin", "toolkit", "tool", "--account", tenant.id, "--toolkit", "kit", "--server", "vaulted", "--tool", "*")
    boss = Member(hub, tenant, idp, provider, "boss", role="ADMIN")
    eli = Member(hub, tenant, idp, provider, "eli")
    eventually(lambda: initialize(hub, eli.token).status_code == 200 and initialize(hub, boss.token).status_code == 200,
               "admitted")
    # The hub re-reads its upstream servers every few seconds.
    eventually(lambda: {"keyed_whoami", "vaulted_whoami"} <= set(tools_of(RawSession(hub, eli.token))),
               "the new upstreams are served", timeout=10)

    # Basic authentication: a user name and password, typed once, sent as the header.
    link = link_in(eli.whoami(tool="vaulted_whoami"), "vault")
    page = requests.get(link, timeout=10)
    assert page.status_code == 200 and 'name="username"' in page.text and 'name="password"' in page.text
    assert requests.post(link, data={"api_key": "wrong form"}, timeout=10).status_code == 400
    assert requests.post(link, data={"username": "eli", "password": "s3cret:pw"}, timeout=10).status_code == 200, \
        "a mistyped form does not spend the link"
    assert eli.whoami(tool="vaulted_whoami")["content"][0]["text"] == "Basic " + base64.b64encode(b"eli:s3cret:pw").decode()

    # A member pastes their own key on the connect page (the link works once).
    link = link_in(eli.whoami(tool="keyed_whoami"), "keys")
    page = requests.get(link, timeout=10)
    assert page.status_code == 200 and 'name="api_key"' in page.text
    assert requests.post(link, data={"api_key": "eli-own-key"}, timeout=10).status_code == 200
    assert requests.post(link, data={"api_key": "again"}, timeout=10).status_code == 404, "a link is spent once"
    # The organization's key, set by an ADMIN, serves members without their own; one's own wins.
    assert eli.api("POST", "/credentials", {"service": "keys", "api_key": "org-key-1"}).status_code == 403
    assert boss.api("POST", "/credentials", {"service": "keys", "api_key": "org-key-1"}).status_code == 201
    assert boss.whoami(tool="keyed_whoami")["content"][0]["text"] == "Key org-key-1"
    assert eli.whoami(tool="keyed_whoami")["content"][0]["text"] == "Key eli-own-key"

    # Metadata only: no secret is ever returned; a member sees their own and the organization's.
    listed = eli.api("GET", "/credentials").json()["credentials"]
    assert {c["owner"] for c in listed} == {None, eli.user_id()}
    assert "org-key-1" not in str(listed) and "eli-own-key" not in str(listed)
    assert all(set(c) == {"id", "service", "owner", "profiles", "expires_at", "updated_at"} for c in listed)
    own = next(c for c in listed if c["owner"] is not None)

    # Assignments name only the actor's credentials and the account's profiles.
    other_profile = value_of(hub.cli("admin", "profile", "create", "--account", tenant.id, "--name", f"p-{secrets.token_hex(2)}"),
                             "CIVIC_PROFILE_ID")
    assert boss.api("PUT", f"/credentials/{own['id']}/profiles/{other_profile}").status_code == 404, "another user's credential"
    foreign = Tenant(hub, idp, [])
    assert eli.api("PUT", f"/credentials/{own['id']}/profiles/{foreign.profile}").status_code == 404, "another account's profile"
    assert eli.api("PUT", f"/credentials/{own['id']}/profiles/{other_profile}").status_code == 204
    assigned = next(c for c in eli.api("GET", "/credentials").json()["credentials"] if c["id"] == own["id"])
    assert assigned["profiles"] == [other_profile]

    # Disconnecting an OAuth credential revokes it at the provider.
    fay = Member(hub, tenant, idp, provider, "fay")
    fay.join_and_connect()
    header = fay.whoami()["content"][0]["text"]
    assert fay.provider_email(header) == fay.email
    mine = [c for c in fay.api("GET", "/credentials").json()["credentials"] if c["service"] == "prov"]
    assert fay.api("DELETE", f"/credentials/{mine[0]['id']}").status_code == 204
    assert fay.provider_email(header) is None, "revoked at the provider"
    assert link_in(fay.whoami()), "and gone here: the next call asks to connect"

    # Forged, replayed or refused callbacks are clear errors and store nothing.
    forged = requests.get(hub.url("/connect/callback"), params={"state": "forged", "code": "x"}, timeout=10)
    assert forged.status_code == 400 and "unknown" in forged.text
    assert requests.get(hub.url("/connect/callback"), timeout=10).status_code == 400
    browser = Browser(provider)
    start = browser.get(link_in(fay.whoami()))
    state = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(start.headers["Location"]).query))["state"]
    refused = browser.get(hub.url("/connect/callback") + f"?state={state}&error=access_denied")
    assert refused.status_code == 400 and "access_denied" in refused.text

    # No token, key or client secret in the hub's logs or database.
    log = hub.server_log()
    stored = hub.stored_bytes()
    for secret in ("org-key-1", "eli-own-key", header.removeprefix("Bearer ")):
        assert secret not in log and secret.encode() not in stored, secret


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_clients_taking_url_elicitations_are_sent_to_connect(setup, idp, provider, mode):
    """A client that takes URL elicitations is sent to the connect page by the hub itself (over its session,
    or, at 2026-07-28, through an input_required answer it retries), and the call then goes through."""
    hub, tenant = setup
    gus = Member(hub, tenant, idp, provider, f"gus-{mode}")
    eventually(lambda: initialize(hub, gus.token).status_code == 200, "admitted")
    visited = []

    async def on_elicit(_context, params):
        assert params.mode == "url" and "prov" in params.message
        visited.append(params.url)
        browser, callback = gus.connect(params.url)
        assert browser.get(callback).status_code == 200
        return types.ElicitResult(action="accept")

    async def scenario():
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {gus.token}"}, timeout=30) as http:
            transport = streamable_http_client(hub.url("/hub/mcp"), http_client=http)
            async with Client(transport, mode=mode, elicitation_callback=on_elicit) as client:
                return await client.call_tool("echo_whoami", {})

    result = asyncio.run(scenario())
    assert len(visited) == 1 and visited[0].startswith(hub.url("/connect/")), result
    assert not result.is_error, result
    assert gus.provider_email(result.content[0].text) == gus.email
