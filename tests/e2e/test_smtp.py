"""With SMTP configured, sign-in codes travel by real SMTP (aiosmtpd on loopback) and nowhere else."""

import re
import socket
import time

from aiosmtpd.controller import Controller

from agora import Agora, Browser, pkce_pair, query_of
from test_clients import authorize


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 OK"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_login_code_by_smtp():
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    agora = Agora("sqlite", env={"AGORA_SMTP_URL": f"smtp://127.0.0.1:{port}", "AGORA_MAIL_FROM": "agora <login@agora.test>"})
    try:
        creds = agora.create_client("--public", redirect="http://127.0.0.1:7777/callback")
        agora.create_user("mail@example.com", "mail-password-1")
        browser = Browser(agora)
        verifier, challenge = pkce_pair()
        login = browser.get(authorize(agora, creds["CIVIC_CLIENT_ID"], challenge, scope="openid"))
        sent = browser.submit(login.text, "/oauth/login/code", email="mail@example.com")
        assert sent.status_code == 200
        deadline = time.time() + 10
        while not inbox.messages and time.time() < deadline:
            time.sleep(0.05)
        assert inbox.messages, "no mail arrived"
        envelope = inbox.messages[0]
        assert envelope.rcpt_tos == ["mail@example.com"] and envelope.mail_from == "login@agora.test"
        code = re.search(rb"sign-in code is (\d{6})", envelope.content).group(1).decode()
        ok = browser.submit(sent.text, "/oauth/login/code/verify", code=code)
        assert ok.status_code == 302 and "code" in query_of(ok.headers["Location"])
        assert agora.mailbox() == [], "with SMTP configured nothing goes to the dev mailbox"
        assert code not in agora.server_log(), "codes are logged only in dev-mailbox mode"
    finally:
        agora.close()
        controller.stop()
