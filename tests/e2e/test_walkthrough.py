"""The README walkthrough works as written: create a client with the CLI, run examples/oidc_login.py."""

import os
import subprocess
import sys

import requests

from agora import REPO, Agora, Browser


def test_readme_walkthrough_example():
    agora = Agora("sqlite")
    try:
        creds = agora.create_client(name="walkthrough", redirect="http://127.0.0.1:8765/callback")
        agora.create_user("walk@example.com", "walkthrough-password")
        env = {**os.environ, **creds, "AGORA_URL": agora.base}
        example = subprocess.Popen([sys.executable, os.path.join(REPO, "examples", "oidc_login.py")], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        url = None
        for line in example.stdout:
            if line.strip().startswith("http"):
                url = line.strip()
                break
        assert url, "the example prints the authorization URL"
        signed = Browser(agora).password_sign_in(url, "walk@example.com", "walkthrough-password")
        assert signed.status_code == 302
        assert requests.get(signed.headers["Location"], timeout=10).status_code == 200
        output = example.stdout.read()
        assert example.wait(timeout=30) == 0, output
        assert "walk@example.com" in output and "refreshed" in output
    finally:
        agora.close()
