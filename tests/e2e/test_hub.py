"""The hub at /hub/mcp, driven by the official MCP Python SDK: bearer authentication, the union of
tools from the built-in demo, a stdio upstream and a remote HTTP upstream, and calls routed to each."""

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
import os
import socket
import subprocess
import sys
import threading
import time

import httpx2
import pytest
import requests
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from agora import Agora

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port):
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


@pytest.fixture(scope="module")
def hub():
    server = Agora("sqlite", env={"AGORA_LOG": "info,rmcp=warn"})
    port = free_port()
    remote = subprocess.Popen([sys.executable, os.path.join(FIXTURES, "notes_server.py"), "--http", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port)
    server.cli("admin", "server", "add", "--name", "remote", "--url", f"http://127.0.0.1:{port}/mcp")
    server.cli("admin", "server", "add", "--name", "local", "--command", sys.executable,
               "--arg", os.path.join(FIXTURES, "notes_server.py"), "--env", "NOTES_SECRET=s3cret")
    creds = server.create_client(name="hub-test")
    token = requests.post(server.url("/oauth/token"), data={"grant_type": "client_credentials", "scope": "mcp:tools"},
                          auth=(creds["CIVIC_CLIENT_ID"], creds["CIVIC_CLIENT_SECRET"]), timeout=10).json()["access_token"]
    server.token = token
    yield server
    # agora first: its shutdown closes the streams it holds open to the remote server.
    server.close()
    remote.terminate()
    remote.wait(timeout=10)


def client_token(server, name):
    """A client-credentials access token of a new client called `name`."""
    creds = server.create_client(name=name)
    return requests.post(server.url("/oauth/token"), data={"grant_type": "client_credentials"},
                         auth=(creds["CIVIC_CLIENT_ID"], creds["CIVIC_CLIENT_SECRET"]), timeout=10).json()["access_token"]


def run(coro):
    return asyncio.run(coro)


def message_of(response):
    """The JSON-RPC message of a response, whether sent as JSON or as a one-event SSE stream."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        for line in response.text.splitlines():
            if line.startswith("data:") and line[5:].strip():
                return json.loads(line[5:])
        return None
    return response.json()


class RawSession:
    """A 2025-11-25 MCP session spoken over plain HTTP, to look at what the wire carries."""

    def __init__(self, hub, token, url=None):
        self.url, self.token = url or hub.url("/hub/mcp"), token
        init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}
        r = requests.post(self.url, json=init, headers=self.headers(session=False), timeout=10)
        assert r.status_code == 200, r.text
        self.id = r.headers["Mcp-Session-Id"]
        assert requests.post(self.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                             headers=self.headers(), timeout=10).status_code == 202

    def headers(self, session=True, token=None, **extra):
        h = {"Authorization": f"Bearer {token or self.token}", "Content-Type": "application/json",
             "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}
        if session:
            h["Mcp-Session-Id"] = self.id
        return {**h, **extra}

    def post(self, body, url=None, token=None, **extra):
        data = body if isinstance(body, str) else json.dumps(body)
        return requests.post(url or self.url, data=data, headers=self.headers(token=token, **extra), timeout=30)


async def with_client(hub, token, action):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        async with Client(streamable_http_client(hub.url("/hub/mcp"), http_client=http)) as client:
            return await action(client)


def test_sdk_lists_and_calls_tools_from_every_upstream(hub):
    async def scenario(client):
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert {"demo_echo", "demo_calculate", "demo_current_time"} <= names
        assert {"local_add_note", "local_environment", "remote_add_note", "remote_environment"} <= names
        product = await client.call_tool("demo_calculate", {"a": 6, "b": 7, "operation": "multiply"})
        local = await client.call_tool("local_add_note", {"text": "from stdio"})
        remote = await client.call_tool("remote_add_note", {"text": "from http"})
        env = await client.call_tool("local_environment", {})
        return product, local, remote, env

    product, local, remote, env = run(with_client(hub, hub.token, scenario))
    assert product.content[0].text == "42" and not product.is_error
    assert local.content[0].text.endswith("notes") and remote.content[0].text.endswith("notes")
    # The stdio child sees only what was configured: no AGORA_* variables leak from the hub.
    assert env.content[0].text == "NOTES_SECRET"


def test_unknown_tools_and_upstream_crashes(hub):
    async def scenario(client):
        try:
            await client.call_tool("local_does_not_exist", {})
            unknown = None
        except Exception as e:  # the SDK raises for JSON-RPC errors
            unknown = e
        crashed = await client.call_tool("local_crash", {})
        after = await client.call_tool("local_add_note", {"text": "still here"})
        return unknown, crashed, after

    unknown, crashed, after = run(with_client(hub, hub.token, scenario))
    assert unknown is not None and "Unknown tool" in str(unknown)
    assert crashed.is_error, "a crashed upstream yields an error result for that call only"
    assert not after.is_error, "the next call restarts the child"


def test_unauthenticated_requests_get_401_with_metadata(hub):
    r = requests.post(hub.url("/hub/mcp"), json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, timeout=10)
    assert r.status_code == 401
    challenge = r.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ") and 'resource_metadata="' in challenge
    metadata_url = challenge.split('resource_metadata="')[1].split('"')[0]
    metadata = requests.get(metadata_url, timeout=10).json()
    assert metadata["resource"] == hub.url("/hub/mcp")
    assert metadata["authorization_servers"] == [hub.issuer]
    bad = requests.post(hub.url("/hub/mcp"), headers={"Authorization": "Bearer nope"}, json={}, timeout=10)
    assert bad.status_code == 401 and 'error="invalid_token"' in bad.headers["WWW-Authenticate"]
    with pytest.raises(Exception):
        run(with_client(hub, None, lambda client: client.list_tools()))


def test_no_child_process_survives_shutdown(hub):
    run(with_client(hub, hub.token, lambda client: client.call_tool("local_add_note", {"text": "x"})))
    fixture = os.path.join(FIXTURES, "notes_server.py")
    children = lambda: subprocess.run(["pgrep", "-f", f"{fixture}$"], capture_output=True, text=True).stdout.split()
    assert children(), "the stdio upstream runs while the hub uses it"
    hub.stop()
    time.sleep(0.5)
    assert children() == [], "shutdown kills every stdio upstream"
    hub.restart()


def test_bad_input_gets_jsonrpc_errors(hub):
    session = RawSession(hub, hub.token)
    cases = [
        ("not json", {}, 400, -32700),
        ('{"jsonrpc":"1.0","id":1,"method":"tools/list"}', {}, 400, -32600),
        ('[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"tools/list"}]', {}, 400, -32600),
        ('{"jsonrpc":"2.0","id":1,"method":"nope/nope"}', {}, 200, -32601),
        ('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"nope"}}', {}, 200, -32602),
        ('{"jsonrpc":"2.0","id":1,"method":"tools/list"}', {"Origin": "https://evil.example"}, 403, -32600),
        ('{"jsonrpc":"2.0","id":1,"method":"tools/list"}', {"MCP-Protocol-Version": "1999-01-01"}, 400, -32600),
        ('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"demo_echo","arguments":{"text":"' + "x" * 5_000_000 + '"}}}', {}, 413, -32600),
    ]
    for body, extra, status, code in cases:
        r = session.post(body, **extra)
        assert r.status_code == status, (body[:60], r.status_code, r.text[:200])
        assert message_of(r)["error"]["code"] == code, (body[:60], r.text[:200])
    headers = {"Authorization": f"Bearer {hub.token}", "Content-Type": "application/json",
               "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call"}
    mismatch = requests.post(hub.url("/hub/mcp"), headers=headers, timeout=10, json={
        "jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}})
    assert mismatch.status_code == 400 and "does not match" in mismatch.json()["error"]["message"]
    wrong_args = session.post({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "demo_echo", "arguments": {"wrong": 1}}})
    assert wrong_args.status_code == 200 and message_of(wrong_args)["result"]["isError"] is True


def test_sessions_continue_on_another_process_and_belong_to_their_subject(hub):
    """A session started on one process continues on a second one over the same database; nobody else may use it."""
    session = RawSession(hub, hub.token)
    # Replicas share the database and the configured public URL (and so the issuer).
    second = Agora("sqlite", env={"AGORA_DATA_DIR": hub.data_dir, "AGORA_LOG": "warn", "AGORA_PUBLIC_URL": hub.base})
    try:
        listed = session.post({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, url=second.url("/hub/mcp"))
        assert listed.status_code == 200, listed.text
        assert any(t["name"] == "local_add_note" for t in message_of(listed)["result"]["tools"])

        other = client_token(hub, "someone-else")
        for url in (hub.url("/hub/mcp"), second.url("/hub/mcp")):
            hijack = session.post({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}, url=url, token=other)
            assert hijack.status_code == 404, "a session answers only to its own subject"
        tampered = session.post({"jsonrpc": "2.0", "id": 4, "method": "tools/list"}, **{"Mcp-Session-Id": session.id[:-2] + "zz"})
        assert tampered.status_code == 404

        ended = requests.delete(second.url("/hub/mcp"), headers=session.headers(), timeout=10)
        assert ended.status_code in (200, 202, 204), ended.text
        after = session.post({"jsonrpc": "2.0", "id": 5, "method": "tools/list"}, url=second.url("/hub/mcp"))
        assert after.status_code == 404
    finally:
        second.stop()


def test_cancelling_a_call_cancels_it_upstream(hub):
    session = RawSession(hub, hub.token)
    notes = lambda: int(message_of(session.post({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "remote_add_note", "arguments": {"text": "n"}}}))["result"]["content"][0]["text"].split()[0])
    before = notes()
    slow = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "remote_wait", "arguments": {"seconds": 8}}}
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(lambda: session.post(slow))
        time.sleep(1)
        cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7, "reason": "test"}}
        assert session.post(cancel).status_code == 202
        time.sleep(1)
        # The upstream's wait was cancelled (it noted so) well before its 8 s were up.
        assert notes() == before + 2
        try:
            waiting.result(timeout=15)
        except Exception:
            pass  # a cancelled request need not be answered


def test_prompts_and_resources_are_aggregated(hub):
    async def scenario(client):
        await client.call_tool("remote_add_note", {"text": "first remote note"})
        prompts = {p.name for p in (await client.list_prompts()).prompts}
        prompt = await client.get_prompt("remote_summarize", {"topic": "agora"})
        resources = {str(r.uri) for r in (await client.list_resources()).resources}
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
        everything = await client.read_resource("notes://all")
        by_index = await client.read_resource("notes://by-index/0")
        return prompts, prompt, resources, templates, everything, by_index

    prompts, prompt, resources, templates, everything, by_index = run(with_client(hub, hub.token, scenario))
    assert {"local_summarize", "remote_summarize"} <= prompts
    assert "Summarize my notes about agora." in prompt.messages[0].content.text
    assert "notes://all" in resources, "resource URIs are passed through unchanged"
    assert "notes://by-index/{index}" in templates
    # Both upstreams list notes://all: the URI routes to the one listed first, and it answers.
    assert everything.contents and by_index.contents


def test_revocation_reaches_the_hub_within_seconds(hub):
    creds = hub.create_client(name="revoker")
    token = requests.post(hub.url("/oauth/token"), data={"grant_type": "client_credentials"},
                          auth=(creds["CIVIC_CLIENT_ID"], creds["CIVIC_CLIENT_SECRET"]), timeout=10).json()["access_token"]
    session = RawSession(hub, token)
    ping = lambda: session.post({"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert ping().status_code == 200
    assert ping().status_code == 200  # now answered from the liveness cache
    revoked = requests.post(hub.url("/oauth/token/revocation"), data={"token": token},
                            auth=(creds["CIVIC_CLIENT_ID"], creds["CIVIC_CLIENT_SECRET"]), timeout=10)
    assert revoked.status_code == 200
    deadline = time.time() + 5
    while ping().status_code != 401:
        assert time.time() < deadline, "a revoked token must stop working at the hub within seconds"
        time.sleep(0.2)


def test_idle_local_servers_are_stopped_and_restarted_on_use():
    server = Agora("sqlite", env={"AGORA_UPSTREAM_IDLE_TIMEOUT": "1", "AGORA_LOG": "warn", "AGORA_DEMO_UPSTREAM": "false"})
    try:
        fixture = os.path.join(FIXTURES, "notes_server.py")
        server.cli("admin", "server", "add", "--name", "idle", "--command", sys.executable, "--arg", fixture)
        token = client_token(server, "idle-test")
        children = lambda: subprocess.run(["pgrep", "-f", f"{fixture}$"], capture_output=True, text=True).stdout.split()
        before = set(children())
        session = RawSession(server, token)
        call = lambda: message_of(session.post({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                                "params": {"name": "idle_add_note", "arguments": {"text": "x"}}}))
        first = call()
        assert "result" in first and not first["result"]["isError"], first
        assert set(children()) - before, "the local server runs while used"
        deadline = time.time() + 10
        while set(children()) - before:
            assert time.time() < deadline, "an idle local server is stopped"
            time.sleep(0.2)
        again = call()
        assert "result" in again and not again["result"]["isError"], again
    finally:
        server.close()


def test_idle_sessions_leave_memory_and_come_back_unless_listening():
    """A session with no request and no open stream for the idle timeout leaves the process's memory
    (its row stays) and its next request restores it, with the same upstream connection behind it;
    a session whose client holds a GET stream open stays, and so does its stream."""
    server = Agora("sqlite", env={"AGORA_MCP_SESSION_IDLE_TIMEOUT": "1", "AGORA_DEMO_UPSTREAM": "false",
                                  "AGORA_LOG": "info,rmcp=warn,agora_hub::sessions=debug"})
    try:
        fixture = os.path.join(FIXTURES, "notes_server.py")
        server.cli("admin", "server", "add", "--name", "local", "--command", sys.executable, "--arg", fixture)
        token = client_token(server, "dormant-test")
        add_note = lambda session: message_of(session.post({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "local_add_note", "arguments": {"text": "x"}}}))["result"]["content"][0]["text"]
        left_memory = lambda session: f"session={session.id}" in server.server_log().replace('"', "")
        idle, listening = RawSession(server, token), RawSession(server, token)
        assert add_note(idle) == "1 notes"

        stream = requests.get(server.url("/hub/mcp"), headers=listening.headers(), stream=True, timeout=30)
        assert stream.status_code == 200, stream.text
        def listen():
            try:
                for _ in stream.iter_lines():
                    pass
            except (requests.RequestException, AttributeError, ValueError):
                pass  # the test closes the stream under it at the end
        listener = threading.Thread(target=listen, daemon=True)
        listener.start()

        deadline = time.time() + 10
        while not left_memory(idle):
            assert time.time() < deadline, "an idle session leaves memory"
            time.sleep(0.2)
        time.sleep(1.5)  # three more sweeps
        assert not left_memory(listening), "a session with an open stream is not idle"
        assert listener.is_alive(), "its stream stays open"
        assert add_note(idle) == "2 notes", "the restored session reaches the same upstream connection"
        stream.close()
    finally:
        server.close()


def test_garbage_silence_and_broken_upstreams_fail_only_their_calls():
    """An upstream that writes garbage, one that never answers (per-call timeout) and one that is not an MCP
    server at all each fail only what they are asked; the hub and the other upstreams carry on."""
    junk_port = free_port()
    junk = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(junk_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = Agora("sqlite", env={"AGORA_LOG": "warn"})
    try:
        wait_for_port(junk_port)
        fixture = os.path.join(FIXTURES, "notes_server.py")
        server.cli("admin", "server", "add", "--name", "odd", "--command", sys.executable, "--arg", fixture,
                   "--timeout-ms", "1500")
        server.cli("admin", "server", "add", "--name", "junk", "--url", f"http://127.0.0.1:{junk_port}/mcp")
        token = client_token(server, "odd-test")
        session = RawSession(server, token)
        call = lambda name, args={}: message_of(session.post(
            {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": args}}))
        names = {t["name"] for t in message_of(session.post({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))["result"]["tools"]}
        assert {"odd_garble", "odd_hang", "demo_echo"} <= names and not any(n.startswith("junk_") for n in names)

        garbled = call("odd_garble")
        assert "result" in garbled, garbled
        started = time.time()
        hung = call("odd_hang")
        assert hung["result"]["isError"] and "timed out" in hung["result"]["content"][0]["text"], hung
        assert time.time() - started < 10, "the per-call timeout ends a call nobody answers"
        assert call("odd_add_note", {"text": "after"})["result"]["content"][0]["text"].endswith("notes")
        assert call("demo_echo", {"text": "ok"})["result"]["content"][0]["text"] == "ok"
        assert requests.get(server.url("/healthz"), timeout=5).text == "ok"
    finally:
        server.close()
        junk.terminate()
        junk.wait(timeout=10)


def test_legacy_sse_upstream():
    """A remote server that speaks only the older HTTP+SSE transport (2024-11-05) is served too."""
    port = free_port()
    remote = subprocess.Popen([sys.executable, os.path.join(FIXTURES, "notes_server.py"), "--sse", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = Agora("sqlite", env={"AGORA_LOG": "warn", "AGORA_DEMO_UPSTREAM": "false"})
    try:
        wait_for_port(port)
        server.cli("admin", "server", "add", "--name", "legacy", "--sse-url", f"http://127.0.0.1:{port}/sse")
        token = client_token(server, "sse-test")

        async def use(client):
            tools = {t.name for t in (await client.list_tools()).tools}
            added = await client.call_tool("legacy_add_note", {"text": "over sse"})
            prompt = await client.get_prompt("legacy_summarize", {"topic": "sse"})
            return tools, added, prompt

        tools, added, prompt = run(with_client(server, token, use))
        assert {"legacy_add_note", "legacy_wait"} <= tools
        assert not added.is_error and added.content[0].text == "1 notes"
        assert "sse" in prompt.messages[0].content.text
    finally:
        server.close()
        remote.terminate()
        remote.wait(timeout=10)


def test_running_local_servers_are_capped():
    """Each session gets its own local server; past the cap the least recently used idle one makes
    room, and when every slot is busy the call fails clearly instead of spawning more."""
    server = Agora("sqlite", env={"AGORA_MAX_LOCAL_SERVERS": "1", "AGORA_LOG": "warn", "AGORA_DEMO_UPSTREAM": "false"})
    try:
        fixture = os.path.join(FIXTURES, "notes_server.py")
        server.cli("admin", "server", "add", "--name", "capped", "--command", sys.executable, "--arg", fixture)
        token = client_token(server, "cap-test")
        children = lambda: subprocess.run(["pgrep", "-f", f"{fixture}$"], capture_output=True, text=True).stdout.split()
        before = set(children())
        call = lambda session, name, arguments: message_of(session.post(
            {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": arguments}}))
        first, second, third = RawSession(server, token), RawSession(server, token), RawSession(server, token)
        assert not call(first, "capped_add_note", {"text": "a"})["result"]["isError"]
        running = set(children()) - before
        assert len(running) == 1
        assert not call(second, "capped_add_note", {"text": "b"})["result"]["isError"]
        time.sleep(0.5)
        now = set(children()) - before
        assert len(now) == 1 and now != running, "the idle server of the first session made room"

        with ThreadPoolExecutor(1) as pool:
            slow = pool.submit(call, second, "capped_wait", {"seconds": 3})
            time.sleep(1)
            busy = call(third, "capped_add_note", {"text": "c"})
            assert busy["result"]["isError"] and "local server slots are in use" in busy["result"]["content"][0]["text"], busy
            assert slow.result()["result"]["content"][0]["text"] == "waited", "the busy server was left alone"
        assert not call(third, "capped_add_note", {"text": "c"})["result"]["isError"], "a freed slot is used"
    finally:
        server.close()


def test_list_changed_refreshes_the_catalog(hub):
    """An upstream's tools/list_changed makes the hub list it again at once, not after its cache expires."""
    session = RawSession(hub, hub.token)
    names = lambda: {t["name"] for t in message_of(session.post({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))["result"]["tools"]}
    assert "local_extra" not in names()
    grown = message_of(session.post({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "local_grow", "arguments": {}}}))
    assert grown["result"]["content"][0]["text"] == "grown"
    deadline = time.time() + 5
    while "local_extra" not in names():
        assert time.time() < deadline, "the new tool shows up well before the 30 s cache would expire"
        time.sleep(0.1)
