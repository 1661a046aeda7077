"""RFC 8693 token exchange against the real server: a test identity provider's ID and access tokens
become agora access tokens; every bad input is refused with its error code."""

import base64
import hashlib
import hmac
import json
import os
import secrets
import tempfile
import threading
import time
import uuid

import pytest
import requests

from agora import Agora
from idp import IdentityProvider, new_key
from test_oidc_flow import verify_access_token

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def agora(request):
    server = Agora(request.param, env={"AGORA_ALLOW_LOOPBACK_FETCH": "true", "AGORA_JWKS_REFETCH_INTERVAL": "2"})
    yield server
    server.close()


@pytest.fixture
def idp():
    provider = IdentityProvider()
    yield provider
    provider.close()


def app(agora, idp=None, *provider_args, alg=("RS256",)):
    creds = agora.create_client(name=f"app-{secrets.token_hex(3)}")
    if idp is not None:
        algs = [a for x in alg for a in ("--alg", x)]
        agora.cli("admin", "provider", "add", "--client", creds["CIVIC_CLIENT_ID"], "--issuer", idp.issuer,
                  *(provider_args or ("--jwks-uri", idp.jwks_uri)), "--audience", "my-app", *algs)
    return creds["CIVIC_CLIENT_ID"], creds["CIVIC_CLIENT_SECRET"]


def exchange(agora, client, subject_token, token_type=ID_TOKEN, **extra):
    data = {"grant_type": EXCHANGE, "subject_token": subject_token, "subject_token_type": token_type, **extra}
    return requests.post(agora.url("/oauth/token"), data={k: v for k, v in data.items() if v is not None}, auth=client, timeout=30)


def error_of(response, status=400):
    assert response.status_code == status, (response.status_code, response.text)
    return response.json()["error"]


def account_of(agora, client_id, profiles=1):
    """A new account linked to the client, with `profiles` profiles: (account id, [profile ids])."""
    name = f"acct-{secrets.token_hex(4)}"
    created = agora.cli("admin", "account", "create", "--name", name)
    account = created.strip().rsplit("(", 1)[1].rstrip(")")
    agora.cli("admin", "account", "link", "--account", account, "--client", client_id)
    ids = [agora.cli("admin", "profile", "create", "--account", account, "--name", f"p{i}").strip().split("=", 1)[1]
           for i in range(profiles)]
    return account, ids


def test_id_and_access_tokens_exchange_into_agora_tokens(agora, idp):
    client = app(agora, idp)
    account, (profile,) = account_of(agora, client[0])
    _, (foreign,) = account_of(agora, app(agora, idp)[0])
    sub = f"google-{secrets.token_hex(4)}"
    email = f"Fed.{secrets.token_hex(3)}@Example.com"
    id_token = idp.token(sub=sub, email=email, email_verified=True, name="Fed User", picture="https://p.example/a.png")
    for stranger in (str(uuid.uuid4()), foreign):
        refused = exchange(agora, client, id_token, civic_profile=stranger)
        assert error_of(refused) == "invalid_request" and "not a profile of this client's account" in refused.json()["error_description"]
    assert error_of(exchange(agora, client, id_token, civic_account="acct_123")) == "invalid_request"
    first = exchange(agora, client, id_token, civic_profile=profile, civic_account=account)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["issued_token_type"] == ACCESS_TOKEN and body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600 and "refresh_token" not in body and "id_token" not in body
    claims = verify_access_token(agora, body["access_token"], client[0])
    assert claims["civic_profile"] == profile and claims["civic_account"] == account
    assert claims["aud"] == ["civic"] and set(claims["scope"].split()) == {"openid", "email", "profile"}

    userinfo = requests.get(agora.url("/oauth/userinfo"), headers={"Authorization": f"Bearer {body['access_token']}"}, timeout=10).json()
    assert userinfo["sub"] == claims["sub"] and userinfo["email"] == email.lower() and userinfo["name"] == "Fed User"
    assert userinfo["email_verified"] is True and userinfo["picture"] == "https://p.example/a.png"

    access_token = idp.token(sub=sub, name="Renamed User")
    second = exchange(agora, client, access_token, token_type=ACCESS_TOKEN, scope="openid profile", expires_in="120")
    assert second.status_code == 200, second.text
    again = verify_access_token(agora, second.json()["access_token"], client[0])
    assert again["sub"] == claims["sub"], "the same external identity maps to the same agora user"
    assert second.json()["expires_in"] == 120 and again["exp"] - again["iat"] == 120
    assert "civic_profile" not in again
    userinfo = requests.get(agora.url("/oauth/userinfo"), headers={"Authorization": f"Bearer {second.json()['access_token']}"}, timeout=10).json()
    assert userinfo["name"] == "Renamed User", "profile claims are kept fresh"

    other = exchange(agora, client, idp.token(sub=sub + "-other"))
    assert verify_access_token(agora, other.json()["access_token"], client[0])["sub"] != claims["sub"]


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_static_pem_keys(agora, idp, alg):
    idp.keys[alg] = new_key(alg)
    with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as f:
        f.write(idp.keys[alg].as_pem(private=False).decode())
    try:
        client = app(agora, idp, "--public-key-file", f.name, alg=(alg,))
    finally:
        os.unlink(f.name)
    r = exchange(agora, client, idp.token(alg=alg, sub=f"pem-{alg}"))
    assert r.status_code == 200, r.text
    verify_access_token(agora, r.json()["access_token"], client[0])
    assert idp.fetches == 0, "a static key needs no JWKS"
    # The same token signed by another key of the algorithm fails.
    assert error_of(exchange(agora, client, idp.token(alg=alg, key=new_key(alg, kid=idp.keys[alg].kid)))) == "invalid_grant"


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_jwks_with_other_algorithms(agora, idp, alg):
    idp.keys[alg] = new_key(alg)
    client = app(agora, idp, alg=(alg,))
    r = exchange(agora, client, idp.token(alg=alg, sub=f"jwks-{alg}"))
    assert r.status_code == 200, r.text


def hs256_with_public_key(idp):
    """The classic confusion attack: HMAC 'keyed' with the provider's public key."""
    key = idp.keys["RS256"]
    header = {"alg": "HS256", "kid": key.kid, "typ": "JWT"}
    now = int(time.time())
    claims = {"iss": idp.issuer, "sub": "attacker", "aud": "my-app", "iat": now, "exp": now + 300}
    b64 = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=")
    signing_input = b64(header) + b"." + b64(claims)
    mac = hmac.new(key.as_pem(private=False), signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + base64.urlsafe_b64encode(mac).rstrip(b"=")).decode()


def test_bad_subject_tokens(agora, idp):
    client = app(agora, idp)
    now = int(time.time())
    stranger = IdentityProvider()
    try:
        cases = {
            "unknown issuer": (stranger.token(), "invalid_grant"),
            "bad signature": (idp.token(key=new_key("RS256", kid=idp.keys["RS256"].kid)), "invalid_grant"),
            "wrong algorithm (HS256 keyed with the public key)": (hs256_with_public_key(idp), "invalid_grant"),
            "algorithm not accepted (RS384)": (idp.token(alg="RS384", key=idp.keys["RS256"]), "invalid_grant"),
            "expired": (idp.token(exp=now - 120, iat=now - 600), "invalid_grant"),
            "not yet valid": (idp.token(nbf=now + 600), "invalid_grant"),
            "issued in the future": (idp.token(iat=now + 600, exp=now + 900), "invalid_grant"),
            "too old": (idp.token(iat=now - 3 * 86400), "invalid_grant"),
            "wrong audience": (idp.token(aud="someone-else"), "invalid_grant"),
            "missing sub": (idp.token(sub=None), "invalid_grant"),
            "missing exp": (idp.token(exp=None), "invalid_grant"),
            "not a JWT": ("garbage", "invalid_request"),
            "alg none": ("eyJhbGciOiJub25lIn0." + base64.urlsafe_b64encode(json.dumps({"iss": idp.issuer, "sub": "x"}).encode()).rstrip(b"=").decode() + ".", "invalid_request"),
        }
        for name, (token, expected) in cases.items():
            r = exchange(agora, client, token)
            assert error_of(r) == expected, f"{name}: {r.text}"
            assert r.json()["error_description"], name
        replayed = idp.token(sub="replay")
        assert exchange(agora, client, replayed).status_code == 200
        assert error_of(exchange(agora, client, replayed)) == "invalid_grant", "a jti is exchanged once"
    finally:
        stranger.close()


def test_bad_requests(agora, idp):
    client = app(agora, idp)
    token = idp.token
    assert error_of(exchange(agora, client, token(), token_type="urn:ietf:params:oauth:token-type:saml2")) == "invalid_request"
    assert error_of(exchange(agora, client, token(), token_type=None)) == "invalid_request"
    assert error_of(exchange(agora, client, None)) == "invalid_request"
    assert error_of(exchange(agora, client, token(), civic_profile="not-a-uuid")) == "invalid_request"
    assert error_of(exchange(agora, client, token(), expires_in="7200")) == "invalid_request", "over the provider's cap"
    assert error_of(exchange(agora, client, token(), expires_in="-5")) == "invalid_request"
    assert error_of(exchange(agora, client, token(), scope="openid admin")) == "invalid_scope"
    assert error_of(exchange(agora, client, token(), scope="offline_access")) == "invalid_scope"
    assert error_of(exchange(agora, client, token(), audience="elsewhere")) == "invalid_target"
    assert error_of(exchange(agora, client, token(), requested_token_type=ID_TOKEN)) == "invalid_request"
    assert error_of(exchange(agora, (client[0], "wrong-secret"), token()), 401) == "invalid_client"
    not_enabled = agora.create_client(name="no-exchange")
    r = exchange(agora, (not_enabled["CIVIC_CLIENT_ID"], not_enabled["CIVIC_CLIENT_SECRET"]), token())
    assert error_of(r) == "unauthorized_client"
    # A provider configured for one client does not serve another.
    other = app(agora, None)
    agora.cli("admin", "provider", "add", "--client", other[0], "--issuer", "https://unrelated.example", "--jwks-uri", "https://unrelated.example/jwks")
    assert error_of(exchange(agora, other, token())) == "invalid_grant"


def test_provider_key_rotation_and_refetch_limit(agora, idp):
    client = app(agora, idp)
    assert exchange(agora, client, idp.token(sub="rot")).status_code == 200
    assert idp.fetches == 1
    # Unknown kids, many times in a row: at most one fetch per interval.
    for _ in range(6):
        assert error_of(exchange(agora, client, idp.token(key=new_key("RS256")))) == "invalid_grant"
    assert idp.fetches <= 2, idp.fetches
    time.sleep(2.2)
    idp.keys["RS256"] = new_key("RS256")  # the provider rotates
    r = exchange(agora, client, idp.token(sub="rot"))
    assert r.status_code == 200, r.text
    assert idp.fetches <= 3


def test_broken_jwks_endpoints_do_not_stall_others(agora, idp):
    healthy_idp = IdentityProvider()
    try:
        healthy = app(agora, healthy_idp)
        for mode in ("garbage", "huge"):
            idp.mode = mode
            client = app(agora, idp)
            r = exchange(agora, client, idp.token())
            assert error_of(r) == "invalid_grant" and "keys" in r.json()["error_description"], r.text
        idp.mode = "hang"
        client = app(agora, idp)
        result = {}
        slow = threading.Thread(target=lambda: result.update(r=exchange(agora, client, idp.token())))
        started = time.time()
        slow.start()
        time.sleep(0.3)
        fast = exchange(agora, healthy, healthy_idp.token())
        assert fast.status_code == 200 and time.time() - started < 3, "another provider's exchange is not held up"
        cc = requests.post(agora.url("/oauth/token"), data={"grant_type": "client_credentials"}, auth=healthy, timeout=10)
        assert cc.status_code == 200
        slow.join(timeout=30)
        assert error_of(result["r"]) == "invalid_grant"
        assert time.time() - started < 15, "a hanging JWKS endpoint is cut off"
    finally:
        healthy_idp.close()


def test_agora_tokens_down_scope(agora, idp):
    client = app(agora, idp)
    first = exchange(agora, client, idp.token(sub="down"), scope="openid email profile", expires_in="600").json()
    narrower = exchange(agora, client, first["access_token"], token_type=ACCESS_TOKEN, scope="openid", expires_in="3000")
    assert narrower.status_code == 200, narrower.text
    claims = verify_access_token(agora, narrower.json()["access_token"], client[0])
    original = verify_access_token(agora, first["access_token"], client[0])
    assert claims["scope"] == "openid" and claims["sub"] == original["sub"]
    assert claims["exp"] <= original["exp"], "never a longer life than the input"
    wider = exchange(agora, client, first["access_token"], token_type=ACCESS_TOKEN, scope="openid mcp:tools")
    assert error_of(wider) == "invalid_scope"
    _, (one, another) = account_of(agora, client[0], profiles=2)
    locked = exchange(agora, client, idp.token(sub="down"), civic_profile=one).json()
    relock = exchange(agora, client, locked["access_token"], token_type=ACCESS_TOKEN, civic_profile=another)
    assert error_of(relock) == "invalid_request", "a locked token stays locked to its profile"
    kept = exchange(agora, client, locked["access_token"], token_type=ACCESS_TOKEN)
    assert verify_access_token(agora, kept.json()["access_token"], client[0])["civic_profile"] == \
        verify_access_token(agora, locked["access_token"], client[0])["civic_profile"]


def test_agora_tokens_of_other_clients_are_not_exchanged(agora, idp):
    first, second = app(agora, idp), app(agora, idp)
    token = exchange(agora, first, idp.token(sub="cross")).json()["access_token"]
    assert error_of(exchange(agora, second, token, token_type=ACCESS_TOKEN)) == "invalid_grant"
    account, _ = account_of(agora, first[0], profiles=0)
    other_account, _ = account_of(agora, second[0], profiles=0)
    bound = exchange(agora, first, idp.token(sub="cross"), civic_account=account).json()["access_token"]
    assert error_of(exchange(agora, first, bound, token_type=ACCESS_TOKEN, civic_account=other_account)) == "invalid_request"


def test_presets_need_an_audience(agora):
    creds = agora.create_client(name="preset")
    out = agora.cli("admin", "provider", "add", "--client", creds["CIVIC_CLIENT_ID"], "--preset", "google", check=False)
    assert out == "", "a Google provider without an audience would accept tokens issued to any app"
    agora.cli("admin", "provider", "add", "--client", creds["CIVIC_CLIENT_ID"], "--preset", "google", "--audience", "123.apps")


def test_unverified_emails_are_never_claimed(agora, idp):
    email = f"victim.{secrets.token_hex(3)}@example.com"
    client = app(agora, idp, "--jwks-uri", idp.jwks_uri, "--link-by-email")
    # An attacker's provider account claims the victim's address without verifying it.
    attacker = exchange(agora, client, idp.token(sub=f"attacker-{secrets.token_hex(2)}", email=email, email_verified=False))
    info = requests.get(agora.url("/oauth/userinfo"), headers={"Authorization": f"Bearer {attacker.json()['access_token']}"}, timeout=10).json()
    assert "email" not in info, "an unverified address is not stored"
    assert email not in agora.cli("admin", "user", "list")
    # The victim's own verified identity gets the address, and a separate user.
    victim = exchange(agora, client, idp.token(sub=f"victim-{secrets.token_hex(2)}", email=email, email_verified=True))
    victim_info = requests.get(agora.url("/oauth/userinfo"), headers={"Authorization": f"Bearer {victim.json()['access_token']}"}, timeout=10).json()
    assert victim_info["email"] == email and victim_info["sub"] != info["sub"]


def test_link_by_verified_email(agora, idp):
    email = f"linked.{secrets.token_hex(3)}@example.com"
    agora.create_user(email, "linked-password-1")
    linking = app(agora, idp, "--jwks-uri", idp.jwks_uri, "--link-by-email")
    plain = app(agora, IdentityProvider())
    # Unverified email never links.
    r = exchange(agora, linking, idp.token(sub="l-unverified", email=email, email_verified=False))
    unlinked = verify_access_token(agora, r.json()["access_token"], linking[0])["sub"]
    r = exchange(agora, linking, idp.token(sub="l-verified", email=email, email_verified=True))
    linked = verify_access_token(agora, r.json()["access_token"], linking[0])["sub"]
    assert linked != unlinked
    users = agora.cli("admin", "user", "list")
    assert f"{linked}\t{email}" in users, "the verified identity joined the existing user"


def test_disabled_users_lose_exchanged_tokens(agora, idp):
    client = app(agora, idp)
    email = f"gone.{secrets.token_hex(3)}@example.com"
    sub = f"gone-{secrets.token_hex(3)}"
    token = exchange(agora, client, idp.token(sub=sub, email=email, email_verified=True)).json()["access_token"]
    userinfo = lambda: requests.get(agora.url("/oauth/userinfo"), headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert userinfo().status_code == 200
    agora.cli("admin", "user", "disable", "--email", email)
    assert userinfo().status_code == 401, "a disabled user's exchanged token stops working at once"
    assert error_of(exchange(agora, client, idp.token(sub=sub))) == "invalid_grant"
