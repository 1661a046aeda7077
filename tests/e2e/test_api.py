"""The management API (/api/v1) with users' agora tokens: role checks, no leak across accounts, clear 4xx
errors for bad input, personal tokens and the audit log; the OpenAPI document matches the routes."""

import secrets
import time

import pytest
import requests

from test_accounts import eventually, initialize
from test_exchange import app, exchange


@pytest.fixture(scope="module")
def client(agora, idp):
    return app(agora, idp)


class Person:
    """A user signed in through the test IdP: their email and an agora token."""

    def __init__(self, agora, idp, client, name):
        self.agora = agora
        self.email = f"{name}-{secrets.token_hex(3)}@example.com"
        response = exchange(agora, client, idp.token(sub=self.email, email=self.email, email_verified=True))
        assert response.status_code == 200, response.text
        self.token = response.json()["access_token"]

    def call(self, method, path, body=None, **params):
        return requests.request(method, self.agora.url("/api/v1" + path), json=body, params=params, timeout=10,
                                headers={"Authorization": f"Bearer {self.token}"})

    @property
    def user_id(self):
        return requests.get(self.agora.url("/oauth/userinfo"), headers={"Authorization": f"Bearer {self.token}"},
                            timeout=10).json()["sub"]


def error(response, status):
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error", "message"}, body
    return body["message"]


def test_roles_isolation_and_bad_input(agora, idp, client):
    alice, bob, carol, eve = (Person(agora, idp, client, n) for n in ("alice", "bob", "carol", "eve"))
    name = f"Acme {secrets.token_hex(3)}"
    created = alice.call("POST", "/accounts", {"name": name})
    assert created.status_code == 201 and created.json()["role"] == "OWNER"
    acme = created.json()["id"]
    assert "conflict" == alice.call("POST", "/accounts", {"name": name}).json()["error"], "duplicate names"
    error(alice.call("POST", "/accounts", {"nom": "x"}), 400)
    error(alice.call("POST", "/accounts", "not an object"), 400)
    error(requests.get(agora.url("/api/v1/accounts"), timeout=10), 401)
    error(requests.get(agora.url("/api/v1/accounts"), headers={"Authorization": "Bearer nope"}, timeout=10), 401)
    robot = requests.post(agora.url("/oauth/token"), data={"grant_type": "client_credentials"}, auth=client, timeout=10)
    error(requests.get(agora.url("/api/v1/accounts"), headers={"Authorization": f"Bearer {robot.json()['access_token']}"},
                      timeout=10), 401)

    # Members and roles.
    assert alice.call("POST", f"/accounts/{acme}/members", {"email": bob.email, "role": "ADMIN"}).status_code == 201
    assert alice.call("POST", f"/accounts/{acme}/members", {"email": carol.email, "role": "END_USER"}).status_code == 201
    error(alice.call("POST", f"/accounts/{acme}/members", {"email": "not an email", "role": "MEMBER"}), 400)
    error(alice.call("POST", f"/accounts/{acme}/members", {"email": "nobody@example.com", "role": "MEMBER"}), 404)
    error(alice.call("POST", f"/accounts/{acme}/members", {"email": bob.email, "role": "KING"}), 400)
    assert alice.call("POST", f"/accounts/{acme}/members", {"email": bob.email, "role": "ADMIN"}).status_code == 409
    error(bob.call("PATCH", f"/accounts/{acme}/members/{bob.user_id}", {"role": "OWNER"}), 403)
    error(bob.call("POST", f"/accounts/{acme}/members", {"email": eve.email, "role": "OWNER"}), 403)
    error(bob.call("DELETE", f"/accounts/{acme}/members/{alice.user_id}"), 403)
    assert "at least one OWNER" in error(alice.call("DELETE", f"/accounts/{acme}/members/{alice.user_id}"), 400)
    assert "at least one OWNER" in error(alice.call("PATCH", f"/accounts/{acme}/members/{alice.user_id}", {"role": "ADMIN"}), 400)

    # Nothing of another account is visible: unknown and foreign ids answer alike.
    eves = eve.call("POST", "/accounts", {"name": f"Eve {secrets.token_hex(3)}"}).json()["id"]
    for who, account in ((eve, acme), (alice, eves), (carol, acme), (alice, "no-such-account")):
        for path in ("", "/members", "/profiles", "/toolkits", "/audit", "/invitations"):
            assert error(who.call("GET", f"/accounts/{account}{path}"), 404) == "account not found", (path, account)
    assert [a["id"] for a in eve.call("GET", "/accounts").json()["accounts"]] == [eves]
    error(eve.call("POST", f"/accounts/{acme}/profiles", {"name": "Sneaky"}), 404)

    # Profiles, toolkits, the Integration settings.
    profile = bob.call("POST", f"/accounts/{acme}/profiles", {"name": "Main", "alias": "main", "default": True})
    assert profile.status_code == 201
    profile = profile.json()["id"]
    error(bob.call("POST", f"/accounts/{acme}/profiles", {"name": "Main"}), 409)
    error(bob.call("POST", f"/accounts/{acme}/profiles", {"name": "Bad", "alias": "no spaces"}), 400)
    assert bob.call("POST", f"/accounts/{acme}/toolkits", {"name": "kit"}).status_code == 201
    tool = {"server": "demo", "tool": "echo", "alias": "say", "fixed_arguments": {"text": "fixed"}}
    assert bob.call("PUT", f"/accounts/{acme}/toolkits/kit/tools", tool).status_code == 204
    assert bob.call("POST", f"/accounts/{acme}/profiles/{profile}/toolkits", {"toolkit": "kit"}).status_code == 204
    error(bob.call("PUT", f"/accounts/{acme}/toolkits/missing/tools", tool), 404)
    # Linking an existing client takes its secret: nobody links (and so takes over) another's app.
    for proof in ({}, {"client_secret": "wrong"}):
        error(bob.call("POST", f"/accounts/{acme}/clients", {"client_id": client[0], **proof}), 404)
    assert bob.call("POST", f"/accounts/{acme}/clients", {"client_id": client[0], "client_secret": client[1]}).status_code == 204
    error(eve.call("POST", f"/accounts/{eves}/clients", {"client_id": client[0], "client_secret": client[1]}), 409)
    assert alice.call("GET", f"/accounts/{acme}").json()["clients"] == [client[0]]
    # A new auth connection: a client made, linked and opened to the public, its secret shown once.
    connection = bob.call("POST", f"/accounts/{eves}/connections", {"name": "x"})
    error(connection, 404)
    connection = eve.call("POST", f"/accounts/{eves}/connections", {"name": "Eve's app", "redirect_uris": ["http://127.0.0.1:7777/cb"]})
    assert connection.status_code == 201, connection.text
    creds = connection.json()
    assert eve.call("GET", f"/accounts/{eves}").json()["clients"] == [creds["CIVIC_CLIENT_ID"]]
    assert eve.call("GET", f"/accounts/{eves}").json()["public_access"] is True
    own = requests.post(agora.url("/oauth/token"), data={"grant_type": "client_credentials"},
                        auth=(creds["CIVIC_CLIENT_ID"], creds["CIVIC_CLIENT_SECRET"]), timeout=10)
    assert own.status_code == 200
    error(eve.call("POST", f"/accounts/{eves}/connections", {"name": "bad", "redirect_uris": ["javascript:alert(1)"]}), 400)

    # Invitations: valid email, one of the account's clients; revoked and expired ones admit nobody.
    frank = f"frank-{secrets.token_hex(3)}@example.com"
    error(bob.call("POST", f"/accounts/{acme}/invitations", {"email": frank, "role": "MEMBER", "client_id": "other"}), 404)
    error(bob.call("POST", f"/accounts/{acme}/invitations", {"email": "frank", "role": "MEMBER", "client_id": client[0]}), 400)
    invited = bob.call("POST", f"/accounts/{acme}/invitations", {"email": frank, "role": "MEMBER", "client_id": client[0]})
    assert invited.status_code == 201
    assert [i["email"] for i in bob.call("GET", f"/accounts/{acme}/invitations").json()["invitations"]] == [frank]
    agora.sql(f"UPDATE invitations SET expires_at = 1 WHERE id = '{invited.json()['id']}'")
    agora.sql("UPDATE policy_epoch SET epoch = epoch + 1 WHERE id = 1")
    time.sleep(1.5)
    frank_token = exchange(agora, client, idp.token(sub=frank, email=frank, email_verified=True)).json()["access_token"]
    assert initialize(agora, frank_token).status_code == 403, "an expired invitation admits nobody"
    assert bob.call("GET", f"/accounts/{acme}/invitations").json()["invitations"] == []

    # Public access: a non-member comes in as END_USER, locked to the default profile; never the API.
    assert alice.call("PATCH", f"/accounts/{acme}", {"public_access": True}).status_code == 204
    eventually(lambda: initialize(agora, frank_token).status_code == 200, "public access admits non-members")
    error(Person(agora, idp, client, "walk-in").call("GET", f"/accounts/{acme}"), 404)

    # Audit: OWNER and ADMIN read it; it holds the changes above and who made them.
    entries = bob.call("GET", f"/accounts/{acme}/audit").json()["entries"]
    actions = {e["action"] for e in entries}
    assert {"account.create", "member.add", "profile.create", "toolkit.tool.put", "client.link",
            "invitation.create", "account.public_access"} <= actions
    assert {e["actor"] for e in entries} == {alice.user_id, bob.user_id}
    error(bob.call("GET", f"/accounts/{acme}/audit", since="x", until="later"), 400)
    gina = Person(agora, idp, client, "gina")
    assert alice.call("POST", f"/accounts/{acme}/members", {"email": gina.email, "role": "MEMBER"}).status_code == 201
    assert "OWNER or ADMIN" in error(gina.call("GET", f"/accounts/{acme}/audit"), 403)
    assert [p["name"] for p in gina.call("GET", f"/accounts/{acme}/profiles").json()["profiles"]] == ["Main"]


def test_personal_tokens_through_the_api(agora, idp, client):
    owner = Person(agora, idp, client, "owner")
    account = owner.call("POST", "/accounts", {"name": f"Tok {secrets.token_hex(3)}"}).json()["id"]
    profile = owner.call("POST", f"/accounts/{account}/profiles", {"name": "Main", "default": True}).json()["id"]
    error(owner.call("POST", "/personal-tokens", {"profile_id": profile, "name": "agent", "days": 31}), 400)
    error(owner.call("POST", "/personal-tokens", {"profile_id": "nope", "name": "agent"}), 404)
    made = owner.call("POST", "/personal-tokens", {"profile_id": profile, "name": "agent", "days": 7})
    assert made.status_code == 201 and made.json()["token"].startswith("agora_pat_")
    listed = owner.call("GET", "/personal-tokens").json()["tokens"]
    assert [t["id"] for t in listed] == [made.json()["id"]] and "token" not in listed[0], "shown once"
    stranger = Person(agora, idp, client, "stranger")
    error(stranger.call("DELETE", f"/personal-tokens/{made.json()['id']}"), 404)
    assert initialize(agora, made.json()["token"]).status_code == 200
    assert owner.call("DELETE", f"/personal-tokens/{made.json()['id']}").status_code == 204
    eventually(lambda: initialize(agora, made.json()["token"]).status_code == 401, "revoked at once")


def test_openapi_describes_every_route(agora):
    document = requests.get(agora.url("/api/v1/openapi.json"), timeout=10).json()
    assert document["openapi"].startswith("3.") and document["servers"][0]["url"] == agora.url("/api/v1")
    operations = [(method, path) for path, item in document["paths"].items() for method in item]
    assert len(operations) >= 20
    for method, path in operations:
        concrete = path.replace("{", "x").replace("}", "")
        response = requests.request(method.upper(), agora.url("/api/v1" + concrete), json={}, timeout=10)
        assert response.status_code == 401, (method, path, response.status_code)
    assert requests.get(agora.url("/api/v1/nothing-here"), timeout=10).status_code == 404
