"""Signing keys: `agora keys rotate` (another process, same database) switches new tokens to the
published successor at once, while tokens signed before keep verifying."""

import secrets

import requests
from joserfc import jwt
from joserfc.jwk import KeySet

from test_oidc_flow import verify_access_token


def client_token(agora, creds):
    r = requests.post(agora.url("/oauth/token"), data={"grant_type": "client_credentials"},
                      auth=(creds["CIVIC_CLIENT_ID"], creds["CIVIC_CLIENT_SECRET"]), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def header(agora, token):
    return jwt.decode(token, KeySet.import_key_set(requests.get(agora.url("/oauth/jwks"), timeout=10).json()), algorithms=["RS256", "ES256", "EdDSA"]).header


def test_rotation_keeps_old_tokens_valid(agora):
    jwks_url = agora.url("/oauth/jwks")
    creds = agora.create_client(name=f"rot-{secrets.token_hex(3)}")
    before = client_token(agora, creds)
    jwks_before = {k["kid"] for k in requests.get(jwks_url, timeout=10).json()["keys"]}
    assert len(jwks_before) == 2, "the active key and its published successor"
    old_kid = header(agora, before)["kid"]

    out = agora.cli("keys", "rotate")
    successor = out.split()[3].rstrip(";")
    assert successor in jwks_before and successor != old_kid, "the new signing key was published before it signs"

    after = client_token(agora, creds)
    assert header(agora, after)["kid"] == successor
    assert verify_access_token(agora, before, creds["CIVIC_CLIENT_ID"])["jti"], "pre-rotation token still verifies"
    assert verify_access_token(agora, after, creds["CIVIC_CLIENT_ID"])
    intro = requests.post(agora.url("/oauth/token/introspection"), data={"token": before},
                          auth=(creds["CIVIC_CLIENT_ID"], creds["CIVIC_CLIENT_SECRET"]), timeout=10).json()
    assert intro["active"] is True
    published = {k["kid"] for k in requests.get(jwks_url, timeout=10).json()["keys"]}
    assert old_kid in published and successor in published and len(published) == 3


def test_algorithms_are_selectable(agora):
    creds = agora.create_client(name=f"alg-{secrets.token_hex(3)}")
    for alg in ("ES256", "EdDSA", "RS256"):
        agora.cli("keys", "rotate", "--alg", alg)  # publishes a successor of this algorithm
        agora.cli("keys", "rotate", "--alg", alg)  # ...which now signs
        token = client_token(agora, creds)
        assert header(agora, token)["alg"] == alg
        verify_access_token(agora, token, creds["CIVIC_CLIENT_ID"])
    bad = agora.cli("keys", "rotate", "--alg", "HS256", check=False)
    assert bad == ""
