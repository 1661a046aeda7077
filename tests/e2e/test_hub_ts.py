"""The official MCP TypeScript SDK connects to the hub with a bearer token, lists tools from the demo, a
stdio and an HTTP upstream, and calls one from each."""

import json
import os
import subprocess

from test_hub import hub  # noqa: F401  (the module-scoped hub with both upstreams)

TS = os.path.join(os.path.dirname(__file__), "ts")


def test_typescript_sdk_client(hub):  # noqa: F811
    calls = ['demo_echo:{"text":"hi from ts"}', 'local_add_note:{"text":"ts stdio"}', 'remote_add_note:{"text":"ts http"}']
    done = subprocess.run(["node", os.path.join(TS, "hub_client.mjs"), hub.url("/hub/mcp"), hub.token, *calls],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert {"demo_echo", "local_add_note", "remote_add_note"} <= set(report["tools"])
    assert report["results"]["demo_echo"] == {"isError": False, "text": "hi from ts"}
    assert report["results"]["local_add_note"]["text"].endswith("notes")
    assert report["results"]["remote_add_note"]["text"].endswith("notes")
