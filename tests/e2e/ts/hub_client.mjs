// Connects to the agora hub with the official MCP TypeScript SDK, lists its tools and calls the ones
// named on the command line. Prints one JSON document for the test to check.
//   node hub_client.mjs HUB_URL TOKEN TOOL:JSON_ARGS...
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, token, ...calls] = process.argv.slice(2);
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
const client = new Client({ name: "agora-e2e-ts", version: "1.0.0" });
await client.connect(transport);
const tools = (await client.listTools()).tools.map((t) => t.name);
const results = {};
for (const call of calls) {
  const [name, args] = [call.slice(0, call.indexOf(":")), JSON.parse(call.slice(call.indexOf(":") + 1))];
  const result = await client.callTool({ name, arguments: args });
  results[name] = { isError: result.isError ?? false, text: result.content.map((c) => c.text).join("") };
}
console.log(JSON.stringify({ protocolVersion: transport.protocolVersion, tools, results }));
await client.close();
