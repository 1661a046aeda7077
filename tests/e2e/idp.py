"""A test identity provider on loopback: its own keys, a JWKS endpoint that counts fetches (and can
hang, return garbage or a huge body), and tokens minted with a JOSE library (joserfc)."""

from __future__ import annotations

import http.server
import json
import threading
import time
import uuid

from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey

ALGS = {"RS256": lambda p: RSAKey.generate_key(2048, parameters=p), "ES256": lambda p: ECKey.generate_key("P-256", parameters=p),
        "EdDSA": lambda p: OKPKey.generate_key("Ed25519", parameters=p)}


def new_key(alg: str = "RS256", kid: str | None = None):
    return ALGS[alg]({"kid": kid or uuid.uuid4().hex[:8], "use": "sig"})


class IdentityProvider:
    def __init__(self) -> None:
        self.keys = {"RS256": new_key("RS256")}
        self.mode = "normal"
        self.fetches = 0
        provider = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path != "/jwks":
                    self.send_response(404)
                    self.end_headers()
                    return
                provider.fetches += 1
                if provider.mode == "hang":
                    time.sleep(20)
                    return
                if provider.mode == "garbage":
                    body = b"<html>definitely not a key set"
                elif provider.mode == "huge":
                    body = json.dumps({"keys": [], "pad": "x" * 2_000_000}).encode()
                else:
                    body = json.dumps({"keys": [k.as_dict(private=False) for k in provider.keys.values()]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.jwks_uri = f"{self.issuer}/jwks"

    def close(self) -> None:
        self.server.shutdown()

    def token(self, alg: str = "RS256", key=None, header: dict | None = None, **claims) -> str:
        now = int(time.time())
        body = {"iss": self.issuer, "sub": "user-1", "aud": "my-app", "iat": now, "exp": now + 300,
                "jti": uuid.uuid4().hex, **claims}
        body = {k: v for k, v in body.items() if v is not None}
        key = key or self.keys[alg]
        return jwt.encode({"alg": alg, "kid": key.kid, **(header or {})}, body, key, algorithms=[alg])
