"""A stock relying party (Authlib) signs a user in against the real server, on SQLite and PostgreSQL:
discovery → authorize with PKCE → sign-in form → code → tokens → userinfo → refresh → logout.
Tokens are checked with a second, independent JOSE library (joserfc) against /oauth/jwks."""

import secrets
import warnings

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session, OAuthError
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.jwk import KeySet

from agora import Browser, query_of

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from authlib.jose import jwt as authlib_jwt

REDIRECT = "http://127.0.0.1:9999/cb"
AFTER_LOGOUT = "http://127.0.0.1:9999/bye"


def verify_access_token(agora, token: str, client_id: str) -> dict:
    """What a Civic-compatible resource server checks: signature via JWKS, exact iss, aud has civic, client_id."""
    keys = KeySet.import_key_set(requests.get(agora.url("/oauth/jwks"), timeout=10).json())
    decoded = jwt.decode(token, keys, algorithms=["RS256", "ES256", "EdDSA"])
    registry = jwt.JWTClaimsRegistry(iss={"essential": True, "value": agora.issuer}, exp={"essential": True})
    registry.validate(decoded.claims)
    assert "civic" in decoded.claims["aud"]
    assert decoded.claims["client_id"] == client_id
    assert decoded.header["typ"] == "at+jwt" and decoded.header["kid"]
    return decoded.claims


def test_stock_relying_party_completes_the_flow(agora):
    creds = agora.create_client("--post-logout-redirect-uri", AFTER_LOGOUT, redirect=REDIRECT)
    client_id, client_secret = creds["CIVIC_CLIENT_ID"], creds["CIVIC_CLIENT_SECRET"]
    email, password = f"ada.{secrets.token_hex(4)}@example.com", secrets.token_urlsafe(12)
    agora.create_user(email, password, name="Ada Lovelace")

    metadata = agora.metadata()
    assert metadata["issuer"] == agora.issuer and agora.issuer.endswith("/oauth/")
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    for alias in ("/.well-known/oauth-authorization-server/oauth", "/.well-known/openid-configuration/oauth"):
        assert requests.get(agora.url(alias), timeout=10).json() == metadata

    rp = OAuth2Session(client_id, client_secret, scope="openid email profile offline_access",
                       redirect_uri=REDIRECT, code_challenge_method="S256")
    verifier, nonce = secrets.token_urlsafe(48), secrets.token_urlsafe(16)
    authorize_url, state = rp.create_authorization_url(metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce)

    browser = Browser(agora)
    signed_in = browser.password_sign_in(authorize_url, email, password)
    assert signed_in.status_code == 302, signed_in.text
    location = signed_in.headers["Location"]
    assert location.startswith(REDIRECT)
    params = query_of(location)
    assert params["state"] == state and params["iss"] == agora.issuer  # RFC 9207
    cookie = signed_in.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie

    token = rp.fetch_token(metadata["token_endpoint"], authorization_response=location, code_verifier=verifier)
    assert token["token_type"] == "Bearer" and token["expires_in"] == 3600
    assert set(token["scope"].split()) == {"openid", "email", "profile", "offline_access"}

    jwks = requests.get(metadata["jwks_uri"], timeout=10).json()
    id_claims = authlib_jwt.decode(
        token["id_token"], jwks, claims_cls=CodeIDToken,
        claims_options={"iss": {"essential": True, "value": agora.issuer}},
        claims_params={"nonce": nonce, "client_id": client_id, "access_token": token["access_token"]},
    )
    id_claims.validate()  # signature, iss, aud, exp, iat, nonce, at_hash
    assert id_claims["email"] == email and id_claims["email_verified"] is True
    assert id_claims["name"] == "Ada Lovelace"

    access = verify_access_token(agora, token["access_token"], client_id)
    assert access["sub"] == id_claims["sub"]
    assert set(access["scope"].split()) == {"openid", "email", "profile", "offline_access"}

    userinfo = rp.get(metadata["userinfo_endpoint"]).json()
    assert userinfo == {**userinfo, "sub": id_claims["sub"], "email": email, "name": "Ada Lovelace"}

    old_refresh = token["refresh_token"]
    refreshed = rp.refresh_token(metadata["token_endpoint"], refresh_token=old_refresh)
    assert refreshed["refresh_token"] != old_refresh
    assert verify_access_token(agora, refreshed["access_token"], client_id)["sub"] == id_claims["sub"]

    # Reusing the rotated refresh token is theft: the whole family dies, including the new one.
    with pytest.raises(OAuthError) as reuse:
        rp.refresh_token(metadata["token_endpoint"], refresh_token=old_refresh)
    assert reuse.value.error == "invalid_grant"
    with pytest.raises(OAuthError):
        rp.refresh_token(metadata["token_endpoint"], refresh_token=refreshed["refresh_token"])
    assert requests.get(metadata["userinfo_endpoint"], headers={"Authorization": f"Bearer {refreshed['access_token']}"}, timeout=10).status_code == 401

    # RP-initiated logout with id_token_hint goes straight back to the registered URI, with state.
    logout = browser.get(metadata["end_session_endpoint"], params={
        "id_token_hint": token["id_token"], "post_logout_redirect_uri": AFTER_LOGOUT, "state": "bye-state"})
    assert logout.status_code == 302 and logout.headers["Location"] == f"{AFTER_LOGOUT}?state=bye-state"
    again = browser.get(rp.create_authorization_url(metadata["authorization_endpoint"], code_verifier=verifier)[0])
    assert again.status_code == 200 and 'action="/oauth/login"' in again.text, "the session must be gone"

    # No secret this flow handled is stored in plain text.
    stored = agora.stored_bytes()
    for secret in (client_secret, password, old_refresh, refreshed["refresh_token"], params["code"],
                   agora.admin_password, browser.session.cookies.get("agora_csrf")):
        assert secret and secret.encode() not in stored, "a secret is stored in plain text"
    assert b"PRIVATE KEY" not in stored and b"BEGIN" not in stored


def test_a_second_sign_in_reuses_the_session(agora):
    creds = agora.create_client("--public", redirect=REDIRECT)
    email, password = f"s.{secrets.token_hex(4)}@example.com", secrets.token_urlsafe(12)
    agora.create_user(email, password)
    rp = OAuth2Session(creds["CIVIC_CLIENT_ID"], scope="openid", redirect_uri=REDIRECT, code_challenge_method="S256",
                       token_endpoint_auth_method="none")
    browser = Browser(agora)
    first = browser.password_sign_in(rp.create_authorization_url(agora.metadata()["authorization_endpoint"], code_verifier=secrets.token_urlsafe(48))[0], email, password)
    assert first.status_code == 302
    verifier = secrets.token_urlsafe(48)
    url, _ = rp.create_authorization_url(agora.metadata()["authorization_endpoint"], code_verifier=verifier)
    second = browser.get(url)
    assert second.status_code == 302, "a signed-in browser is not asked again"
    token = rp.fetch_token(agora.metadata()["token_endpoint"], authorization_response=second.headers["Location"], code_verifier=verifier)
    assert "refresh_token" not in token, "no offline_access, no refresh token"
    none = browser.get(url + "&prompt=login")
    assert none.status_code == 200 and 'action="/oauth/login"' in none.text
