"""Accounts at the hub: two accounts, each with its own client, users, profiles and toolkits. Admission
(member, invitation, refused), profile selection and its refusals, toolkit overrides (alias, description,
fixed arguments, hidden), personal access tokens, and the audit log, on SQLite and PostgreSQL."""

import os
import secrets
import sys
import time

import pytest
import requests

from test_exchange import app, exchange
from test_hub import RawSession, message_of


INIT = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}


def initialize(agora, token, query="", **headers):
    """A bare initialize: where admission and profile selection answer first."""
    return requests.post(agora.url("/hub/mcp") + query, json=INIT, timeout=10, headers={
        "Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream", **headers})


def eventually(check, what, timeout=5.0):
    """Policy changes reach every replica's cache within the epoch poll (1 s)."""
    deadline = time.time() + timeout
    while not check():
        assert time.time() < deadline, what
        time.sleep(0.2)


def created_id(out):
    return out.strip().rsplit("(", 1)[1].rstrip(")")


def value_of(out, name):
    return dict(line.split("=", 1) for line in out.strip().splitlines() if "=" in line)[name]


class Tenant:
    """An account with its own client (which exchanges the test IdP's tokens), a default profile and toolkit."""

    def __init__(self, agora, idp, toolkit_tools):
        self.agora = agora
        self.client = app(agora, idp)
        self.name = f"acct-{secrets.token_hex(3)}"
        self.id = created_id(agora.cli("admin", "account", "create", "--name", self.name))
        agora.cli("admin", "account", "link", "--account", self.id, "--client", self.client[0])
        self.profile = value_of(agora.cli("admin", "profile", "create", "--account", self.id, "--name", "Main",
                                          "--alias", "main", "--default"), "CIVIC_PROFILE_ID")
        agora.cli("admin", "toolkit", "create", "--account", self.id, "--name", "kit")
        for tool in toolkit_tools:
            agora.cli("admin", "toolkit", "tool", "--account", self.id, "--toolkit", "kit", *tool)
        agora.cli("admin", "toolkit", "attach", "--account", self.id, "--toolkit", "kit", "--profile", self.profile)

    def token_for(self, idp, email, **extra):
        """An agora token for the IdP user with this (verified) email, through this account's client."""
        response = exchange(self.agora, self.client, idp.token(sub=email, email=email, email_verified=True), **extra)
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    def audit(self):
        out = self.agora.cli("admin", "account", "audit", "--account", self.id)
        return [line.split("\t") for line in out.strip().splitlines()]


def tools_of(session):
    listed = message_of(session.post({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))["result"]["tools"]
    return {t["name"]: t for t in listed}


def call(session, name, arguments):
    return message_of(session.post({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                                    "params": {"name": name, "arguments": arguments}}))


NOTES = os.path.join(os.path.dirname(__file__), "fixtures", "notes_server.py")


def test_two_accounts_stay_apart(agora, idp):
    agora.cli("admin", "server", "add", "--name", "notes", "--command", sys.executable, "--arg", NOTES)
    a = Tenant(agora, idp, [
        ("--server", "notes", "--tool", "add_note"),
        ("--server", "demo", "--tool", "*"),
        ("--server", "demo", "--tool", "echo", "--alias", "shout", "--description", "Says a fixed thing",
         "--fixed", 'text="fixed by the admin"'),
        ("--server", "demo", "--tool", "calculate", "--hidden"),
    ])
    b = Tenant(agora, idp, [("--server", "demo", "--tool", "current_time")])
    alice, bob, carol = (f"{n}-{secrets.token_hex(3)}@example.com" for n in ("alice", "bob", "carol"))

    # Not a member, no public access, no invitation: refused, with a reason.
    alice_token = a.token_for(idp, alice)
    refused = initialize(agora, alice_token)
    assert refused.status_code == 403 and "not a member" in refused.json()["error"]["message"]
    agora.cli("admin", "account", "member", "--account", a.id, "--email", alice, "--role", "MEMBER")
    bob_token = b.token_for(idp, bob)
    agora.cli("admin", "account", "member", "--account", b.id, "--email", bob, "--role", "MEMBER")
    eventually(lambda: initialize(agora, alice_token).status_code == 200, "a new member is admitted")

    # Toolkit overrides: alias, description, fixed argument (hidden from the schema, not overridable), hidden tool.
    alice_session = RawSession(agora, alice_token)
    tools = tools_of(alice_session)
    assert set(tools) == {"shout", "demo_current_time", "notes_add_note"}, "the alias replaces the name, the hidden tool is gone"
    assert tools["shout"]["description"] == "Says a fixed thing"
    assert "text" not in tools["shout"]["inputSchema"].get("properties", {})
    assert "text" not in tools["shout"]["inputSchema"].get("required", [])
    shouted = call(alice_session, "shout", {"text": "the client's words"})
    assert shouted["result"]["content"][0]["text"] == "fixed by the admin"
    for gone in ("demo_calculate", "demo_echo", "demo_nonexistent"):
        answer = call(alice_session, gone, {"a": 1, "b": 2, "operation": "add", "text": "x"})
        assert answer["error"]["code"] == -32602 and answer["error"]["message"] == f"Unknown tool: {gone}", \
            "a hidden, renamed or unlisted tool answers exactly like one that does not exist"

    # Prompts and resources come with the upstreams a profile selects tools of.
    prompts = lambda session: [p["name"] for p in message_of(session.post(
        {"jsonrpc": "2.0", "id": 3, "method": "prompts/list"}))["result"]["prompts"]]
    read_notes = lambda session: message_of(session.post(
        {"jsonrpc": "2.0", "id": 4, "method": "resources/read", "params": {"uri": "notes://all"}}))
    assert prompts(alice_session) == ["notes_summarize"] and "result" in read_notes(alice_session)

    # The other account sees only its own toolkit, and cannot reach into the first one.
    bob_session = RawSession(agora, bob_token)
    assert set(tools_of(bob_session)) == {"demo_current_time"}
    assert prompts(bob_session) == [] and read_notes(bob_session)["error"]["message"] == "Unknown resource: notes://all"
    assert call(bob_session, "shout", {})["error"]["code"] == -32602
    for attempt in ({"x-civic-profile-id": a.profile}, {"x-civic-profile": a.profile}):
        denied = initialize(agora, bob_token, **attempt)
        assert denied.status_code == 403 and "no such profile" in denied.json()["error"]["message"]
    for query in (f"?profile={a.profile}", "?profile=main&accountId=" + a.id):
        assert initialize(agora, bob_token, query=query).status_code == 403
    assert initialize(agora, bob_token, query="?profile=main").status_code == 200, "an alias names the own account's profile"
    # A token locked to a profile (civic_profile) of the other account cannot even be issued.
    assert exchange(agora, b.client, idp.token(sub=bob, email=bob, email_verified=True),
                    civic_profile=a.profile).status_code == 400

    # An invitation admits the invited email through the named client only, and makes a member.
    agora.cli("admin", "account", "invite", "--account", a.id, "--email", carol, "--role", "MEMBER", "--client", a.client[0])
    eventually(lambda: initialize(agora, a.token_for(idp, carol)).status_code == 200, "the invited user is admitted")
    carol_via_b = initialize(agora, b.token_for(idp, carol))
    assert carol_via_b.status_code == 403, "the invitation was for the other account's client"
    assert call(RawSession(agora, a.token_for(idp, carol)), "shout", {})["result"]["content"][0]["text"] == "fixed by the admin"

    # Audit: each account reads its own calls and changes only. Call entries are committed in groups, within
    # moments of the call.
    calls_of = lambda log: [e for e in log if e[2] == "tools/call"]
    eventually(lambda: len(calls_of(a.audit())) >= 2, "both calls are in the audit log")
    a_log, b_log = a.audit(), b.audit()
    a_calls = calls_of(a_log)
    assert len(a_calls) >= 2 and all('"tool":"shout"' in e[3] or '"tool": "shout"' in e[3] for e in a_calls)
    assert {"account.create", "client.link", "profile.create", "toolkit.create", "toolkit.tool.put",
            "profile.toolkit.attach", "member.add", "invitation.create"} <= {e[2] for e in a_log}
    assert not any("current_time" in e[3] for e in a_calls)
    assert all(a.profile not in e[3] for e in b_log) and all(alice not in e[3] for e in b_log)
    assert not any(e[2] == "tools/call" for e in b_log), "bob listed tools but called none that exist"


def test_personal_tokens(agora, idp):
    tenant = Tenant(agora, idp, [("--server", "demo", "--tool", "echo")])
    other = value_of(agora.cli("admin", "profile", "create", "--account", tenant.id, "--name", "Other",
                               "--alias", "other"), "CIVIC_PROFILE_ID")
    dave = f"dave-{secrets.token_hex(3)}@example.com"
    tenant.token_for(idp, dave)  # the user exists once signed in
    agora.cli("admin", "account", "member", "--account", tenant.id, "--email", dave, "--role", "MEMBER")
    created = agora.cli("admin", "token", "create", "--email", dave, "--account", tenant.id, "--profile", "main",
                        "--name", "agent", "--days", "30")
    token = value_of(created, "AGORA_PERSONAL_TOKEN")
    token_id = created.split("created personal token ", 1)[1].split()[0]
    assert token.startswith("agora_pat_"), "recognizable, so secret scanners can find leaked ones"
    assert token not in agora.stored_bytes().decode(errors="replace"), "stored only as a digest"

    eventually(lambda: initialize(agora, token).status_code == 200, "the personal token works at the hub")
    session = RawSession(agora, token)
    assert set(tools_of(session)) == {"demo_echo"}
    assert call(session, "demo_echo", {"text": "pat"})["result"]["content"][0]["text"] == "pat"
    wrong = initialize(agora, token, **{"x-civic-profile-id": other})
    assert wrong.status_code == 403 and "locked to another profile" in wrong.json()["error"]["message"]
    assert initialize(agora, token, query="?profile=other").status_code == 403
    assert initialize(agora, token + "x").status_code == 401
    with pytest.raises(RuntimeError):
        agora.cli("admin", "token", "create", "--email", dave, "--account", tenant.id, "--profile", "main",
                  "--name", "too-long", "--days", "31")

    agora.cli("admin", "token", "revoke", "--email", dave, "--id", token_id)
    eventually(lambda: initialize(agora, token).status_code == 401, "a revoked token is refused at once")

    expiring = value_of(agora.cli("admin", "token", "create", "--email", dave, "--account", tenant.id,
                                  "--profile", "main", "--name", "soon", "--days", "1"), "AGORA_PERSONAL_TOKEN")
    assert initialize(agora, expiring).status_code == 200
    # A day passes: the token's end moves into the past (and replicas are told to look again).
    agora.sql("UPDATE personal_tokens SET expires_at = 1 WHERE name = 'soon'")
    agora.sql("UPDATE policy_epoch SET epoch = epoch + 1 WHERE id = 1")
    eventually(lambda: initialize(agora, expiring).status_code == 401, "an expired token is refused")
    assert {"personal_token.create", "personal_token.revoke"} <= {e[2] for e in tenant.audit()}
