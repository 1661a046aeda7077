"""A standard MCP client (the official Python SDK's OAuth support) meets the hub with no token: the 401's
resource_metadata pointer leads it through discovery, dynamic registration and the PKCE sign-in (the test
plays the user in the browser), and it ends with a working session."""

import asyncio
import secrets

import httpx2
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientMetadata

from agora import Agora, Browser, query_of


class MemoryStorage:
    def __init__(self):
        self.tokens, self.client = None, None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client

    async def set_client_info(self, client):
        self.client = client


def test_standard_client_signs_in_starting_from_the_401():
    agora = Agora("sqlite", env={"AGORA_LOG": "info,rmcp=warn"})
    try:
        email, password = f"sdk.{secrets.token_hex(3)}@example.com", secrets.token_urlsafe(12)
        agora.create_user(email, password)
        browser, redirect = Browser(agora), {}

        async def play_the_user(authorization_url: str) -> None:
            page = browser.password_sign_in(authorization_url, email, password)
            if page.status_code == 200 and "Allow access?" in page.text:
                page = browser.submit(page.text, "/oauth/consent", decision="allow")
            assert page.status_code == 302, page.text
            redirect.update(query_of(page.headers["Location"]))

        async def callback() -> AuthorizationCodeResult:
            return AuthorizationCodeResult(code=redirect["code"], state=redirect.get("state"), iss=redirect.get("iss"))

        storage = MemoryStorage()
        auth = OAuthClientProvider(
            server_url=agora.url("/hub/mcp"),
            client_metadata=OAuthClientMetadata(client_name="sdk test client", redirect_uris=["http://127.0.0.1:7788/callback"]),
            storage=storage,
            redirect_handler=play_the_user,
            callback_handler=callback,
        )

        async def scenario():
            async with httpx2.AsyncClient(auth=auth, timeout=30) as http:
                async with Client(streamable_http_client(agora.url("/hub/mcp"), http_client=http)) as client:
                    tools = {t.name for t in (await client.list_tools()).tools}
                    echoed = await client.call_tool("demo_echo", {"text": "signed in"})
                    return tools, echoed

        tools, echoed = asyncio.run(scenario())
        assert "demo_echo" in tools and echoed.content[0].text == "signed in"
        assert storage.client is not None, "the client registered itself (RFC 7591)"
        assert storage.tokens is not None and storage.tokens.access_token
        assert redirect["iss"] == agora.issuer
    finally:
        agora.close()
