"""Sign in to a local agora with a stock OpenID Connect library (Authlib), the way an app would.

    pip install authlib requests
    CIVIC_CLIENT_ID=… CIVIC_CLIENT_SECRET=… AGORA_URL=http://127.0.0.1:8080 python examples/oidc_login.py

Register the client first with redirect URI http://127.0.0.1:8765/callback. The script prints a URL:
open it, sign in, and the script prints the ID token claims, the userinfo answer, and a refreshed token.
"""

import http.server
import os
import secrets
import urllib.parse

import requests
from authlib.integrations.requests_client import OAuth2Session

os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")  # only because the local server speaks plain http

base = os.environ.get("AGORA_URL", "http://127.0.0.1:8080")
redirect_uri = "http://127.0.0.1:8765/callback"
metadata = requests.get(f"{base}/oauth/.well-known/openid-configuration", timeout=10).json()
client = OAuth2Session(os.environ["CIVIC_CLIENT_ID"], os.environ.get("CIVIC_CLIENT_SECRET"),
                       scope="openid email profile offline_access", redirect_uri=redirect_uri, code_challenge_method="S256")
verifier = secrets.token_urlsafe(48)
url, state = client.create_authorization_url(metadata["authorization_endpoint"], code_verifier=verifier,
                                             nonce=secrets.token_urlsafe(16))
print(f"Open this URL and sign in:\n\n  {url}\n")


class Callback(http.server.BaseHTTPRequestHandler):
    response_url = None

    def do_GET(self):
        Callback.response_url = f"http://127.0.0.1:8765{self.path}"
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"Signed in; you can close this tab.")

    def log_message(self, *args):
        pass


with http.server.HTTPServer(("127.0.0.1", 8765), Callback) as server:
    while Callback.response_url is None or not urllib.parse.urlparse(Callback.response_url).path == "/callback":
        server.handle_request()

token = client.fetch_token(metadata["token_endpoint"], authorization_response=Callback.response_url, code_verifier=verifier)
print("token response:", {k: (v[:24] + "…" if isinstance(v, str) and len(v) > 30 else v) for k, v in token.items()})
print("userinfo:", client.get(metadata["userinfo_endpoint"]).json())
refreshed = client.refresh_token(metadata["token_endpoint"])
print("refreshed; new access token expires in", refreshed["expires_in"], "s")
