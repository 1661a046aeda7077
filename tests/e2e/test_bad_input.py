"""Every endpoint answers malformed or hostile requests with an OAuth error body and the right status:
never a 500, never a redirect to a place the client did not register."""

import base64
import secrets
import time

import pytest
import requests

from agora import Agora, Browser, pkce_pair, query_of

REDIRECT = "http://127.0.0.1:9999/cb"


@pytest.fixture(scope="module")
def setup(agora):
    creds = agora.create_client("--post-logout-redirect-uri", "http://127.0.0.1:9999/bye", redirect=REDIRECT)
    email, password = f"bad.{secrets.token_hex(4)}@example.com", secrets.token_urlsafe(12)
    agora.create_user(email, password)
    return agora, creds["CIVIC_CLIENT_ID"], creds["CIVIC_CLIENT_SECRET"], email, password


def authorize_url(agora, client_id, challenge, **extra):
    params = {"client_id": client_id, "redirect_uri": REDIRECT, "response_type": "code", "scope": "openid offline_access",
              "state": "s1", "code_challenge": challenge, "code_challenge_method": "S256", **extra}
    return requests.Request("GET", agora.url("/oauth/auth"), params={k: v for k, v in params.items() if v is not None}).prepare().url


def get_code(setup, **extra):
    agora, client_id, _, email, password = setup
    verifier, challenge = pkce_pair()
    response = Browser(agora).password_sign_in(authorize_url(agora, client_id, challenge, **extra), email, password)
    assert response.status_code == 302, response.text
    return query_of(response.headers["Location"])["code"], verifier


def token(agora, data, auth=None, **kw):
    return requests.post(agora.url("/oauth/token"), data=data, auth=auth, timeout=10, **kw)


def assert_error(response, status, error):
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert body["error"] == error, body
    assert body["error_description"]
    return body


def code_grant(code, verifier, redirect=REDIRECT):
    return {"grant_type": "authorization_code", "code": code, "code_verifier": verifier, "redirect_uri": redirect}


def test_unknown_client_and_wrong_secret(setup):
    agora, client_id, secret, *_ = setup
    r = token(agora, {"grant_type": "client_credentials"}, auth=("no-such-client", "x"))
    assert_error(r, 401, "invalid_client")
    assert r.headers["WWW-Authenticate"].startswith("Basic")
    assert_error(token(agora, {"grant_type": "client_credentials"}, auth=(client_id, secret + "x")), 401, "invalid_client")
    assert_error(token(agora, {"grant_type": "client_credentials", "client_id": client_id, "client_secret": "nope"}), 401, "invalid_client")
    assert_error(token(agora, {"grant_type": "client_credentials", "client_id": client_id}), 401, "invalid_client")
    assert_error(token(agora, {"grant_type": "client_credentials"}), 401, "invalid_client")
    garbled = {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()}
    assert_error(token(agora, {"grant_type": "client_credentials"}, headers=garbled), 401, "invalid_client")
    both = token(agora, {"grant_type": "client_credentials", "client_secret": secret}, auth=(client_id, secret))
    assert_error(both, 400, "invalid_request")


def test_pkce_is_required_and_must_be_s256(setup):
    agora, client_id, *_ = setup
    browser = Browser(agora)
    _, challenge = pkce_pair()
    for extra, fragment in [({"code_challenge": None}, "PKCE"), ({"code_challenge_method": "plain"}, "S256"),
                            ({"code_challenge_method": None}, "S256"), ({"code_challenge": "short"}, "malformed")]:
        r = browser.get(authorize_url(agora, client_id, challenge, **extra))
        assert r.status_code == 302
        params = query_of(r.headers["Location"])
        assert params["error"] == "invalid_request" and fragment in params["error_description"]
        assert params["state"] == "s1" and params["iss"] == agora.issuer


def test_missing_and_mismatched_verifier(setup):
    agora, client_id, secret, *_ = setup
    code, verifier = get_code(setup)
    data = code_grant(code, verifier)
    del data["code_verifier"]
    assert_error(token(agora, data, auth=(client_id, secret)), 400, "invalid_request")
    assert_error(token(agora, {**data, "code_verifier": "x"}, auth=(client_id, secret)), 400, "invalid_request")
    code, verifier = get_code(setup)
    other, _ = pkce_pair()
    assert_error(token(agora, code_grant(code, other), auth=(client_id, secret)), 400, "invalid_grant")
    # A plain-method verifier (the challenge itself) does not pass either.
    code, verifier = get_code(setup)
    assert_error(token(agora, code_grant(code, pkce_pair()[1]), auth=(client_id, secret)), 400, "invalid_grant")


def test_replayed_code_revokes_what_it_issued(setup):
    agora, client_id, secret, *_ = setup
    code, verifier = get_code(setup)
    first = token(agora, code_grant(code, verifier), auth=(client_id, secret))
    assert first.status_code == 200, first.text
    issued = first.json()
    bearer = {"Authorization": f"Bearer {issued['access_token']}"}
    assert requests.get(agora.url("/oauth/userinfo"), headers=bearer, timeout=10).status_code == 200
    assert_error(token(agora, code_grant(code, verifier), auth=(client_id, secret)), 400, "invalid_grant")
    assert_error(requests.get(agora.url("/oauth/userinfo"), headers=bearer, timeout=10), 401, "invalid_token")
    refresh = {"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]}
    assert_error(token(agora, refresh, auth=(client_id, secret)), 400, "invalid_grant")
    intro = requests.post(agora.url("/oauth/token/introspection"), data={"token": issued["access_token"]}, auth=(client_id, secret), timeout=10)
    assert intro.json() == {"active": False}


def test_expired_code():
    server = Agora("sqlite", env={"AGORA_CODE_TTL": "1"})
    try:
        creds = server.create_client(redirect=REDIRECT)
        server.create_user("late@example.com", "late-password-1")
        code, verifier = get_code((server, creds["CIVIC_CLIENT_ID"], None, "late@example.com", "late-password-1"))
        time.sleep(2.2)
        r = token(server, code_grant(code, verifier), auth=(creds["CIVIC_CLIENT_ID"], creds["CIVIC_CLIENT_SECRET"]))
        assert "expired" in assert_error(r, 400, "invalid_grant")["error_description"]
    finally:
        server.close()


def test_redirect_uri_rules(setup):
    agora, client_id, secret, *_ = setup
    code, verifier = get_code(setup)
    r = token(agora, code_grant(code, verifier, redirect="http://127.0.0.1:9999/other"), auth=(client_id, secret))
    assert_error(r, 400, "invalid_grant")
    browser = Browser(agora)
    _, challenge = pkce_pair()
    # Open-redirect attempts: an unregistered URI, an unknown client, no client. A page, never a Location.
    for url in [authorize_url(agora, client_id, challenge, redirect_uri="https://evil.example/cb"),
                authorize_url(agora, client_id, challenge, redirect_uri="http://127.0.0.1:9999/cb/../evil"),
                authorize_url(agora, "unknown-client", challenge),
                authorize_url(agora, None, challenge)]:
        r = browser.get(url)
        assert r.status_code == 400 and "Location" not in r.headers, url
        assert "text/html" in r.headers["Content-Type"]
    # Loopback redirect URIs may change port (RFC 8252), nothing else.
    r = browser.get(authorize_url(agora, client_id, challenge, redirect_uri="http://127.0.0.1:41234/cb"))
    assert r.status_code == 200
    r = browser.get(authorize_url(agora, client_id, challenge, redirect_uri="http://localhost:9999/cb"))
    assert r.status_code == 400 and "Location" not in r.headers


def test_end_session_never_redirects_to_unregistered_uris(setup):
    agora, client_id, *_ = setup
    browser = Browser(agora)
    for params in [{"client_id": client_id, "post_logout_redirect_uri": "https://evil.example/"},
                   {"post_logout_redirect_uri": "http://127.0.0.1:9999/bye"},
                   {"client_id": "unknown", "post_logout_redirect_uri": "http://127.0.0.1:9999/bye"},
                   {"id_token_hint": "not.a.jwt", "post_logout_redirect_uri": "http://127.0.0.1:9999/bye"}]:
        r = browser.get(agora.url("/oauth/session/end"), params=params)
        assert r.status_code == 400 and "Location" not in r.headers, params
    # A registered URI, but no ID token to prove the request is the client's: a link, not a redirect.
    ok = browser.get(agora.url("/oauth/session/end"), params={"client_id": client_id, "post_logout_redirect_uri": "http://127.0.0.1:9999/bye"})
    assert ok.status_code == 200 and "Location" not in ok.headers
    assert 'href="http://127.0.0.1:9999/bye"' in ok.text


def test_logout_without_hint_asks_a_signed_in_user(setup):
    agora, client_id, *_ = setup
    code_browser = Browser(agora)
    _, challenge = pkce_pair()
    signed = code_browser.password_sign_in(authorize_url(agora, client_id, challenge), setup[3], setup[4])
    assert signed.status_code == 302
    page = code_browser.get(agora.url("/oauth/session/end"), params={"client_id": client_id, "post_logout_redirect_uri": "http://127.0.0.1:9999/bye", "state": "x"})
    assert page.status_code == 200 and "Sign out?" in page.text
    forged = requests.post(agora.url("/oauth/session/end/confirm"), data={"csrf": "forged"}, timeout=10)
    assert forged.status_code == 403
    done = code_browser.submit(page.text, "/oauth/session/end/confirm")
    assert done.status_code == 200 and "You are signed out" in done.text
    assert 'href="http://127.0.0.1:9999/bye?state=x"' in done.text
    assert code_browser.get(authorize_url(agora, client_id, challenge)).status_code == 200


def test_oversized_bodies_and_bad_content_types(setup):
    agora, client_id, secret, *_ = setup
    big = {"grant_type": "client_credentials", "pad": "x" * 100_000}
    assert_error(token(agora, big, auth=(client_id, secret)), 413, "invalid_request")
    r = requests.post(agora.url("/oauth/token"), json={"grant_type": "client_credentials"}, auth=(client_id, secret), timeout=10)
    assert_error(r, 415, "invalid_request")
    r = requests.post(agora.url("/oauth/token"), data=b"\xff\xfe=\x00", headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=10)
    assert r.status_code in (400, 401) and "error" in r.json()
    r = requests.post(agora.url("/oauth/token"), data="grant_type=a&grant_type=b", headers={"Content-Type": "application/x-www-form-urlencoded"}, auth=(client_id, secret), timeout=10)
    assert_error(r, 400, "invalid_request")
    r = requests.post(agora.url("/oauth/reg"), data="{not json", headers={"Content-Type": "application/json"}, timeout=10)
    assert_error(r, 400, "invalid_request")
    r = requests.post(agora.url("/oauth/reg"), data="redirect_uris=x", timeout=10)
    assert_error(r, 415, "invalid_request")
    r = requests.post(agora.url("/oauth/token/revocation"), data={"token": "x" * 70_000}, auth=(client_id, secret), timeout=10)
    assert_error(r, 413, "invalid_request")


def test_resource_indicators_name_only_served_resources(setup):
    agora, client_id, secret, *_ = setup
    cc = lambda resource: token(agora, {"grant_type": "client_credentials", "resource": resource}, auth=(client_id, secret))
    assert_error(cc("https://other-resource-server.example/api"), 400, "invalid_target")
    ok = cc(agora.url("/hub/mcp"))
    assert ok.status_code == 200, ok.text
    _, challenge = pkce_pair()
    r = Browser(agora).get(authorize_url(agora, client_id, challenge, resource="https://other.example/"))
    assert query_of(r.headers["Location"])["error"] == "invalid_target"


def test_a_code_is_not_burnt_by_requests_that_cannot_redeem_it(setup):
    agora, client_id, secret, *_ = setup
    code, verifier = get_code(setup)
    assert_error(token(agora, code_grant(code, pkce_pair()[0]), auth=(client_id, secret)), 400, "invalid_grant")
    other = agora.create_client(name="thief", redirect=REDIRECT)
    stolen = token(agora, code_grant(code, verifier), auth=(other["CIVIC_CLIENT_ID"], other["CIVIC_CLIENT_SECRET"]))
    assert_error(stolen, 400, "invalid_grant")
    assert token(agora, code_grant(code, verifier), auth=(client_id, secret)).status_code == 200, "still redeemable"


def test_grant_types_and_scopes(setup):
    agora, client_id, secret, *_ = setup
    assert_error(token(agora, {"grant_type": "password", "username": "a", "password": "b"}, auth=(client_id, secret)), 400, "unsupported_grant_type")
    assert_error(token(agora, {"grant_type": "implicit"}, auth=(client_id, secret)), 400, "unsupported_grant_type")
    assert_error(token(agora, {"scope": "openid"}, auth=(client_id, secret)), 400, "invalid_request")
    assert_error(token(agora, {"grant_type": "client_credentials", "scope": "admin"}, auth=(client_id, secret)), 400, "invalid_scope")
    assert_error(token(agora, {"grant_type": "client_credentials", "scope": "openid"}, auth=(client_id, secret)), 400, "invalid_scope")
    ok = token(agora, {"grant_type": "client_credentials", "scope": "mcp:tools"}, auth=(client_id, secret))
    assert ok.status_code == 200 and ok.json()["scope"] == "mcp:tools" and "refresh_token" not in ok.json()
    assert ok.headers["Cache-Control"] == "no-store"

    _, challenge = pkce_pair()
    r = Browser(agora).get(authorize_url(agora, client_id, challenge, scope="openid admin"))
    assert query_of(r.headers["Location"])["error"] == "invalid_scope"
    r = Browser(agora).get(authorize_url(agora, client_id, challenge, response_type="token"))
    assert query_of(r.headers["Location"])["error"] == "unsupported_response_type"

    code, verifier = get_code(setup)
    issued = token(agora, code_grant(code, verifier), auth=(client_id, secret)).json()
    wider = {"grant_type": "refresh_token", "refresh_token": issued["refresh_token"], "scope": "openid profile"}
    assert_error(token(agora, wider, auth=(client_id, secret)), 400, "invalid_scope")
    narrower = token(agora, {**wider, "scope": "openid"}, auth=(client_id, secret))
    assert narrower.status_code == 200 and narrower.json()["scope"] == "openid"
    assert_error(token(agora, {"grant_type": "refresh_token", "refresh_token": "agora_rt_nope"}, auth=(client_id, secret)), 400, "invalid_grant")


def test_bearer_failures(setup):
    agora, client_id, secret, *_ = setup
    r = requests.get(agora.url("/oauth/userinfo"), timeout=10)
    assert_error(r, 401, "invalid_token")
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    for bad in ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."]:
        r = requests.get(agora.url("/oauth/userinfo"), headers={"Authorization": f"Bearer {bad}"}, timeout=10)
        assert_error(r, 401, "invalid_token")
    # An ID token is not an access token.
    code, verifier = get_code(setup)
    issued = token(agora, code_grant(code, verifier), auth=(client_id, secret)).json()
    r = requests.get(agora.url("/oauth/userinfo"), headers={"Authorization": f"Bearer {issued['id_token']}"}, timeout=10)
    assert_error(r, 401, "invalid_token")
    # A client_credentials token has no user and no openid scope.
    cc = token(agora, {"grant_type": "client_credentials"}, auth=(client_id, secret)).json()
    r = requests.get(agora.url("/oauth/userinfo"), headers={"Authorization": f"Bearer {cc['access_token']}"}, timeout=10)
    assert_error(r, 403, "insufficient_scope")


def test_csrf_and_no_user_enumeration(setup):
    agora, client_id, _, email, password = setup
    _, challenge = pkce_pair()
    browser = Browser(agora)
    page = browser.get(authorize_url(agora, client_id, challenge)).text
    form = next(f for f in __import__("agora").forms(page) if f["action"] == "/oauth/login")
    stranger = requests.post(agora.url("/oauth/login"), data={**form["fields"], "email": email, "password": password}, allow_redirects=False, timeout=10)
    assert stranger.status_code == 403, "a form without this browser's CSRF cookie is refused"
    tampered = browser.submit(page, "/oauth/login", email=email, password=password, csrf="forged")
    assert tampered.status_code == 403

    wrong_password = browser.submit(page, "/oauth/login", email=email, password="wrong-password")
    no_user = browser.submit(page, "/oauth/login", email=f"nobody.{secrets.token_hex(3)}@example.com", password="wrong-password")
    assert wrong_password.status_code == no_user.status_code == 401
    strip = lambda text: __import__("re").sub(r'value="[^"]*"', "", text)
    assert strip(wrong_password.text) == strip(no_user.text), "the two failures must look the same"


def test_login_rate_limit_per_account():
    server = Agora("sqlite")
    try:
        creds = server.create_client(redirect=REDIRECT)
        server.create_user("target@example.com", "the-right-password")
        browser = Browser(server)
        _, challenge = pkce_pair()
        page = browser.get(authorize_url(server, creds["CIVIC_CLIENT_ID"], challenge)).text
        statuses = [browser.submit(page, "/oauth/login", email="target@example.com", password=f"guess-{i}").status_code for i in range(10)]
        assert statuses == [401] * 10
        locked = browser.submit(page, "/oauth/login", email="target@example.com", password="the-right-password")
        assert locked.status_code == 429, "the account is locked for the window, even with the right password"
        assert "Too many attempts" in locked.text
    finally:
        server.close()


def test_registration_errors(setup):
    agora, *_ = setup
    reg = lambda body: requests.post(agora.url("/oauth/reg"), json=body, timeout=10)
    assert_error(reg({"client_name": "x"}), 400, "invalid_redirect_uri")
    assert_error(reg({"redirect_uris": ["http://evil.example/cb"]}), 400, "invalid_redirect_uri")
    assert_error(reg({"redirect_uris": ["javascript:alert(1)"]}), 400, "invalid_redirect_uri")
    assert_error(reg({"redirect_uris": ["https://a.example/cb#frag"]}), 400, "invalid_redirect_uri")
    assert_error(reg({"redirect_uris": ["https://a.example/cb"], "grant_types": ["implicit"]}), 400, "invalid_client_metadata")
    assert_error(reg({"redirect_uris": ["https://a.example/cb"], "response_types": ["token"]}), 400, "invalid_client_metadata")
    assert_error(reg({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "private_key_jwt"}), 400, "invalid_client_metadata")
    assert_error(reg({"redirect_uris": "https://a.example/cb"}), 400, "invalid_client_metadata")
    assert_error(reg({"redirect_uris": ["https://a.example/cb"], "client_id": "mine"}), 400, "invalid_client_metadata")


def test_cors_for_api_endpoints_only(setup):
    agora, *_ = setup
    origin = {"Origin": "https://spa.example", "Access-Control-Request-Method": "POST",
              "Access-Control-Request-Headers": "content-type"}
    pre = requests.options(agora.url("/oauth/token"), headers=origin, timeout=10)
    assert pre.status_code == 200 and pre.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in pre.headers
    jwks = requests.get(agora.url("/oauth/jwks"), headers={"Origin": "https://spa.example"}, timeout=10)
    assert jwks.headers["Access-Control-Allow-Origin"] == "*"
    page = requests.get(agora.url("/oauth/auth"), headers={"Origin": "https://spa.example"}, timeout=10)
    assert "Access-Control-Allow-Origin" not in page.headers
