"""Clients that register themselves (RFC 7591, Client ID Metadata Documents), consent for third-party
clients, emailed sign-in codes, revocation and introspection, and operator revocation."""

import http.server
import json
import secrets
import threading

import requests

from agora import Browser, pkce_pair, query_of
from test_bad_input import assert_error

REDIRECT = "http://127.0.0.1:7777/callback"


def authorize(agora, client_id, challenge, scope="openid offline_access", redirect=REDIRECT):
    return requests.Request("GET", agora.url("/oauth/auth"), params={
        "client_id": client_id, "redirect_uri": redirect, "response_type": "code", "scope": scope,
        "state": "st", "code_challenge": challenge, "code_challenge_method": "S256"}).prepare().url


def redeem(agora, client_id, location, verifier, redirect=REDIRECT):
    return requests.post(agora.url("/oauth/token"), data={
        "grant_type": "authorization_code", "client_id": client_id, "code": query_of(location)["code"],
        "code_verifier": verifier, "redirect_uri": redirect}, timeout=10)


def new_user(agora):
    email, password = f"u.{secrets.token_hex(4)}@example.com", secrets.token_urlsafe(12)
    agora.create_user(email, password)
    return email, password


def test_dynamic_registration_and_consent(agora):
    r = requests.post(agora.url("/oauth/reg"), json={
        "client_name": "Some MCP client", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"]}, timeout=10)
    assert r.status_code == 201, r.text
    reg = r.json()
    assert reg["token_endpoint_auth_method"] == "none" and "client_secret" not in reg
    client_id = reg["client_id"]
    email, password = new_user(agora)

    browser = Browser(agora)
    verifier, challenge = pkce_pair()
    consent_page = browser.password_sign_in(authorize(agora, client_id, challenge), email, password)
    assert consent_page.status_code == 200 and "Allow access?" in consent_page.text, "third-party offline access needs consent"
    denied = browser.submit(consent_page.text, "/oauth/consent", decision="deny")
    assert query_of(denied.headers["Location"])["error"] == "access_denied"

    verifier, challenge = pkce_pair()
    consent_page = browser.get(authorize(agora, client_id, challenge))
    allowed = browser.submit(consent_page.text, "/oauth/consent", decision="allow")
    assert allowed.status_code == 302
    tokens = redeem(agora, client_id, allowed.headers["Location"], verifier)
    assert tokens.status_code == 200 and tokens.json()["refresh_token"]
    # Consent is remembered, so silent sign-in works from now on; before, it could not.
    verifier, challenge = pkce_pair()
    assert browser.get(authorize(agora, client_id, challenge)).status_code == 302
    fresh = requests.post(agora.url("/oauth/reg"), json={"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}, timeout=10).json()
    silent = browser.get(authorize(agora, fresh["client_id"], pkce_pair()[1], scope="openid") + "&prompt=none")
    assert query_of(silent.headers["Location"])["error"] == "consent_required", "no silent sign-in for an unknown third party"

    # A confidential registration gets a secret, shown once.
    r = requests.post(agora.url("/oauth/reg"), json={"redirect_uris": [REDIRECT], "client_name": "Server app"}, timeout=10)
    assert r.status_code == 201 and r.json()["client_secret"].startswith("agora_cs_")
    assert r.json()["token_endpoint_auth_method"] == "client_secret_basic"


class MetadataServer(http.server.BaseHTTPRequestHandler):
    documents: dict = {}

    def do_GET(self):
        body = self.documents.get(self.path)
        if body is None:
            self.send_response(404)
            self.end_headers()
            return
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def test_client_id_metadata_document(agora):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), MetadataServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        client_id = f"{base}/client-{secrets.token_hex(3)}.json"
        path = client_id.removeprefix(base)
        MetadataServer.documents[path] = {"client_id": client_id, "client_name": "CIMD app", "redirect_uris": [REDIRECT],
                                          "token_endpoint_auth_method": "none"}
        email, password = new_user(agora)
        verifier, challenge = pkce_pair()
        browser = Browser(agora)
        consent = browser.password_sign_in(authorize(agora, client_id, challenge, scope="openid email"), email, password)
        assert consent.status_code == 200 and "Allow access?" in consent.text, "a third-party client needs consent"
        assert "(127.0.0.1)" in consent.text, "the consent page shows where the user will be sent"
        signed = browser.submit(consent.text, "/oauth/consent", decision="allow")
        assert signed.status_code == 302, signed.text
        tokens = redeem(agora, client_id, signed.headers["Location"], verifier)
        assert tokens.status_code == 200, tokens.text

        liar = f"{base}/liar.json"
        MetadataServer.documents["/liar.json"] = {"client_id": "https://someone-else.example/c.json", "redirect_uris": [REDIRECT]}
        r = browser.get(authorize(agora, liar, challenge))
        assert r.status_code == 400 and "Location" not in r.headers
        MetadataServer.documents["/garbage.json"] = b"<html>not json"
        r = browser.get(authorize(agora, f"{base}/garbage.json", challenge))
        assert r.status_code == 400 and "Location" not in r.headers
        MetadataServer.documents["/huge.json"] = json.dumps({"client_id": f"{base}/huge.json", "redirect_uris": [REDIRECT], "pad": "x" * 100_000}).encode()
        r = browser.get(authorize(agora, f"{base}/huge.json", challenge))
        assert r.status_code == 400
        # Private addresses are never fetched.
        r = browser.get(authorize(agora, "https://10.0.0.1/client.json", challenge))
        assert r.status_code == 400
    finally:
        server.shutdown()


def test_emailed_code_sign_in(agora):
    creds = agora.create_client("--public", name="otp", redirect=REDIRECT)
    email, _ = new_user(agora)
    browser = Browser(agora)
    verifier, challenge = pkce_pair()
    login = browser.get(authorize(agora, creds["CIVIC_CLIENT_ID"], challenge, scope="openid email"))
    before = len(agora.mailbox())
    sent = browser.submit(login.text, "/oauth/login/code", email=email.upper())
    assert sent.status_code == 200 and "Check your email" in sent.text
    code = json.loads(agora.wait_for_mail(before + 1)[-1])
    assert code["to"] == email
    wrong = browser.submit(sent.text, "/oauth/login/code/verify", code="000000" if code["code"] != "000000" else "111111")
    assert wrong.status_code == 401
    ok = browser.submit(wrong.text, "/oauth/login/code/verify", code=code["code"])
    assert ok.status_code == 302, ok.text
    assert redeem(agora, creds["CIVIC_CLIENT_ID"], ok.headers["Location"], verifier).status_code == 200
    # An unknown address gets the same page and no mail.
    before = len(agora.mailbox())
    browser2 = Browser(agora)
    login = browser2.get(authorize(agora, creds["CIVIC_CLIENT_ID"], pkce_pair()[1]))
    unknown = browser2.submit(login.text, "/oauth/login/code", email="nobody@example.com")
    assert unknown.status_code == 200 and "Check your email" in unknown.text
    assert len(agora.wait_for_mail(before + 1, timeout=0.5)) == before


def test_revocation_introspection_and_operator_revocation(agora):
    creds = agora.create_client(name="rs", redirect=REDIRECT)
    client_id, secret = creds["CIVIC_CLIENT_ID"], creds["CIVIC_CLIENT_SECRET"]
    email, password = new_user(agora)
    verifier, challenge = pkce_pair()
    signed = Browser(agora).password_sign_in(authorize(agora, client_id, challenge), email, password)
    tokens = requests.post(agora.url("/oauth/token"), auth=(client_id, secret), data={
        "grant_type": "authorization_code", "code": query_of(signed.headers["Location"])["code"],
        "code_verifier": verifier, "redirect_uri": REDIRECT}, timeout=10).json()
    intro = lambda t: requests.post(agora.url("/oauth/token/introspection"), data={"token": t}, auth=(client_id, secret), timeout=10).json()
    assert intro(tokens["access_token"])["active"] and intro(tokens["refresh_token"])["active"]
    assert intro("nonsense") == {"active": False}

    other = agora.create_client(name="other", redirect=REDIRECT)
    registered = requests.post(agora.url("/oauth/reg"), json={"redirect_uris": [REDIRECT]}, timeout=10).json()
    peek = requests.post(agora.url("/oauth/token/introspection"), data={"token": tokens["access_token"]},
                         auth=(registered["client_id"], registered["client_secret"]), timeout=10).json()
    assert peek == {"active": False}, "a self-registered client cannot inspect other clients' tokens"
    revoke = lambda t, auth: requests.post(agora.url("/oauth/token/revocation"), data={"token": t}, auth=auth, timeout=10)
    assert revoke(tokens["access_token"], (other["CIVIC_CLIENT_ID"], other["CIVIC_CLIENT_SECRET"])).status_code == 200
    assert intro(tokens["access_token"])["active"], "another client cannot revoke this client's token"
    assert revoke(tokens["access_token"], (client_id, secret)).status_code == 200
    assert intro(tokens["access_token"]) == {"active": False}
    assert intro(tokens["refresh_token"])["active"], "revoking an access token leaves the refresh token"
    assert revoke(tokens["refresh_token"], (client_id, secret)).status_code == 200
    assert intro(tokens["refresh_token"]) == {"active": False}
    assert revoke("unknown-token", (client_id, secret)).status_code == 200
    assert_error(revoke("x", (client_id, "wrong")), 401, "invalid_client")
    assert_error(requests.post(agora.url("/oauth/token/revocation"), data={"token_type_hint": "access_token"}, auth=(client_id, secret), timeout=10), 400, "invalid_request")

    # Public clients cannot introspect.
    public = agora.create_client("--public", name="pub", redirect=REDIRECT)
    r = requests.post(agora.url("/oauth/token/introspection"), data={"token": "x", "client_id": public["CIVIC_CLIENT_ID"]}, timeout=10)
    assert_error(r, 401, "invalid_client")

    # Operator revocation: the client's tokens stop working at once.
    cc = requests.post(agora.url("/oauth/token"), data={"grant_type": "client_credentials"}, auth=(client_id, secret), timeout=10).json()
    agora.cli("admin", "client", "revoke", client_id)
    assert_error(requests.post(agora.url("/oauth/token"), data={"grant_type": "client_credentials"}, auth=(client_id, secret), timeout=10), 401, "invalid_client")
    other_intro = requests.post(agora.url("/oauth/token/introspection"), data={"token": cc["access_token"]},
                                auth=(other["CIVIC_CLIENT_ID"], other["CIVIC_CLIENT_SECRET"]), timeout=10).json()
    assert other_intro == {"active": False}
    assert client_id in agora.cli("admin", "client", "list") and "revoked" in agora.cli("admin", "client", "list")


def test_disabled_user_loses_access(agora):
    creds = agora.create_client(name="dis", redirect=REDIRECT)
    email, password = new_user(agora)
    verifier, challenge = pkce_pair()
    browser = Browser(agora)
    signed = browser.password_sign_in(authorize(agora, creds["CIVIC_CLIENT_ID"], challenge), email, password)
    tokens = requests.post(agora.url("/oauth/token"), auth=(creds["CIVIC_CLIENT_ID"], creds["CIVIC_CLIENT_SECRET"]), data={
        "grant_type": "authorization_code", "code": query_of(signed.headers["Location"])["code"],
        "code_verifier": verifier, "redirect_uri": REDIRECT}, timeout=10).json()
    agora.cli("admin", "user", "disable", "--email", email)
    r = requests.get(agora.url("/oauth/userinfo"), headers={"Authorization": f"Bearer {tokens['access_token']}"}, timeout=10)
    assert_error(r, 401, "invalid_token")
    assert browser.get(authorize(agora, creds["CIVIC_CLIENT_ID"], challenge)).status_code == 200, "session ended"
    again = Browser(agora).password_sign_in(authorize(agora, creds["CIVIC_CLIENT_ID"], challenge), email, password)
    assert again.status_code == 401
