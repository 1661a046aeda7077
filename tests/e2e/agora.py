"""Drives a real `agora` binary on a loopback port, and a browser-like client for its sign-in pages."""

from __future__ import annotations

import base64
import hashlib
import html.parser
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import uuid

import pytest
import requests

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
POSTGRES_ADMIN = os.environ.get("AGORA_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def agora_bin() -> str:
    explicit = os.environ.get("AGORA_BIN")
    if explicit:
        return explicit
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
    return os.path.join(target, "debug", "agora")


def _psql(sql: str) -> subprocess.CompletedProcess:
    return subprocess.run(["psql", POSTGRES_ADMIN, "-v", "ON_ERROR_STOP=1", "-Atc", sql], capture_output=True, text=True)


class PostgresDatabase:
    """A fresh database on the local PostgreSQL server; under CI its absence fails the run."""

    def __init__(self) -> None:
        self.name = f"agora_e2e_{uuid.uuid4().hex[:12]}"
        probe = _psql(f"CREATE DATABASE {self.name}") if shutil.which("psql") else None
        if probe is None or probe.returncode != 0:
            reason = probe.stderr.strip() if probe else "psql not installed"
            if os.environ.get("CI"):
                pytest.fail(f"PostgreSQL is required under CI: {reason}")
            pytest.skip(f"PostgreSQL unavailable: {reason}")
        parsed = urllib.parse.urlparse(POSTGRES_ADMIN)
        self.url = parsed._replace(path=f"/{self.name}").geturl()

    def dump(self) -> str:
        out = subprocess.run(["pg_dump", "--data-only", self.url], capture_output=True, text=True, check=True)
        return out.stdout

    def drop(self) -> None:
        _psql(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


class Agora:
    """One `agora serve` process with its own data directory (and database)."""

    def __init__(self, backend: str = "sqlite", env: dict | None = None) -> None:
        self.data_dir = tempfile.mkdtemp(prefix="agora-e2e-")
        self.backend = backend
        self.postgres = PostgresDatabase() if backend == "postgres" else None
        self.env = dict(os.environ)
        self.env.update({"AGORA_DATA_DIR": self.data_dir, "AGORA_LISTEN": "127.0.0.1:0", "AGORA_LOG": "info"})
        if self.postgres:
            self.env["AGORA_DATABASE_URL"] = self.postgres.url
        self.env.update(env or {})
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.log = open(os.path.join(self.data_dir, "server.log"), "ab")
        self.process = subprocess.Popen(
            [agora_bin(), "serve"], env=self.env, stdout=subprocess.PIPE, stderr=self.log, text=True
        )
        lines = []
        deadline = time.time() + 60
        while time.time() < deadline:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"agora exited early: {''.join(lines)}\n{self.server_log()}")
            lines.append(line)
            if m := re.search(r"password: (\S+)", line):
                self.admin_password = m.group(1)
            if m := re.match(r"agora listening on (\S+)", line):
                self.base = m.group(1)
            if m := re.match(r"\s+issuer: (\S+)", line):
                self.issuer = m.group(1)
                break
        else:
            raise RuntimeError("agora did not start in time")
        self.stdout = "".join(lines)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)
        self.log.close()

    def restart(self) -> None:
        """Stops and starts again on the same address (so the issuer, and issued tokens, stay valid)."""
        self.stop()
        self.env["AGORA_LISTEN"] = self.base.removeprefix("http://")
        self.start()

    def close(self) -> None:
        self.stop()
        if self.postgres:
            self.postgres.drop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def server_log(self) -> str:
        with open(os.path.join(self.data_dir, "server.log"), "rb") as f:
            return f.read().decode(errors="replace")

    def cli(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        done = subprocess.run([agora_bin(), *args], env=self.env, input=stdin, capture_output=True, text=True)
        if check and done.returncode != 0:
            raise RuntimeError(f"agora {' '.join(args)} failed: {done.stderr}")
        return done.stdout

    def create_client(self, *extra: str, name: str = "demo", redirect: str = "http://127.0.0.1:9999/cb") -> dict:
        out = self.cli("admin", "client", "create", "--name", name, "--redirect-uri", redirect, *extra)
        return dict(line.split("=", 1) for line in out.strip().splitlines())

    def create_user(self, email: str, password: str, name: str = "Test User") -> None:
        self.cli("admin", "user", "create", "--email", email, "--name", name, "--password-stdin", stdin=password + "\n")

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def metadata(self) -> dict:
        return requests.get(self.url("/oauth/.well-known/openid-configuration"), timeout=10).json()

    def mailbox(self) -> list[str]:
        path = os.path.join(self.data_dir, "mailbox.jsonl")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return f.read().splitlines()

    def wait_for_mail(self, count: int, timeout: float = 10) -> list[str]:
        """Mail is sent in the background: waits until the mailbox holds `count` messages."""
        deadline = time.time() + timeout
        while len(self.mailbox()) < count and time.time() < deadline:
            time.sleep(0.02)
        return self.mailbox()

    def sql(self, statement: str) -> None:
        """Runs one statement on agora's database: for tests that must stand in for the passing of time."""
        if self.postgres:
            subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", self.postgres.url, "-c", statement], check=True,
                           capture_output=True)
        else:
            import sqlite3
            with sqlite3.connect(os.path.join(self.data_dir, "agora.db")) as db:
                db.execute(statement)

    def stored_bytes(self) -> bytes:
        """Everything the database holds, as bytes to search for secrets."""
        if self.postgres:
            return self.postgres.dump().encode()
        blob = b""
        for suffix in ("", "-wal", "-shm"):
            path = os.path.join(self.data_dir, "agora.db" + suffix)
            if os.path.exists(path):
                with open(path, "rb") as f:
                    blob += f.read()
        return blob


class FormParser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append({"action": attrs.get("action"), "fields": {}, "buttons": {}})
        elif tag == "input" and self.forms and attrs.get("name"):
            self.forms[-1]["fields"][attrs["name"]] = attrs.get("value") or ""
        elif tag == "button" and self.forms and attrs.get("name"):
            self.forms[-1]["buttons"][attrs["name"]] = attrs.get("value")


def forms(page: str) -> list[dict]:
    parser = FormParser()
    parser.feed(page)
    return parser.forms


def form_with_action(page: str, action: str) -> dict:
    for form in forms(page):
        if form["action"] == action:
            return form
    raise AssertionError(f"no form posting to {action} in page:\n{page[:2000]}")


class Browser:
    """A cookie-keeping HTTP client that fills agora's forms the way a person would."""

    def __init__(self, agora: Agora) -> None:
        self.agora = agora
        self.session = requests.Session()

    def get(self, url: str, **kw) -> requests.Response:
        return self.session.get(url, allow_redirects=False, timeout=15, **kw)

    def submit(self, page: str, action: str, **values) -> requests.Response:
        form = form_with_action(page, action)
        data = {**form["fields"], **values}
        return self.session.post(self.agora.url(action), data=data, allow_redirects=False, timeout=30)

    def password_sign_in(self, authorize_url: str, email: str, password: str) -> requests.Response:
        page = self.get(authorize_url)
        assert page.status_code == 200, page.text
        return self.submit(page.text, "/oauth/login", email=email, password=password)


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def query_of(location: str) -> dict:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlparse(location).query))
