//! fan-out: `tools/list` through the hub over many upstreams (20 × 50 tools), against `tools/list`
//! of one of those upstreams (50 tools) straight, and of one upstream serving all 1,000 tools
//! straight (what receiving a list that long costs a client and a server, with no hub between).
//! Each is read by rmcp's typed client and by a plain one (reqwest + serde_json). Reports lists per
//! second, p50 and p99, the hub's CPU per list, and its p50 in milliseconds (the target:
//! ≤ 2 ms).

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use crate::agora::Agora;
use crate::load::{Mcp, McpRequest, Stats, run};
use crate::plain::Lister;
use crate::process::cpu_seconds;
use crate::{Error, upstream};

const UPSTREAMS: usize = 20;
const TOOLS_PER_UPSTREAM: usize = 50;

/// One client kind's lists, each a load step of its own.
#[derive(Serialize)]
struct Lists {
    direct: Stats,
    /// One upstream with as many tools as the hub lists.
    direct_all: Stats,
    hub: Stats,
    throughput_ratio: f64,
    hub_p50_ms: f64,
    hub_cpu_ms_per_1000_lists: f64,
}

#[derive(Serialize)]
struct Step {
    clients: usize,
    /// rmcp's client, which decodes every answer into its typed model.
    rmcp: Lists,
    /// reqwest and serde_json: what a list costs the servers, with less spent reading it.
    plain: Lists,
}

#[derive(Clone, Copy)]
enum ClientKind {
    Rmcp,
    Plain,
}

impl ClientKind {
    fn name(self) -> &'static str {
        match self {
            ClientKind::Rmcp => "rmcp",
            ClientKind::Plain => "plain",
        }
    }
}

/// `n` clients of `kind` listing `expected` tools at `url` for `duration`, each in its own session.
async fn load(
    kind: ClientKind,
    url: &str,
    token: Option<&str>,
    n: usize,
    expected: usize,
    duration: Duration,
) -> Result<Stats, Error> {
    match kind {
        ClientKind::Rmcp => {
            run(Mcp::connect_all(url, token, n, McpRequest::ListTools(expected)).await?, duration).await
        }
        ClientKind::Plain => run(Lister::connect_all(url, token, n, expected).await?, duration).await,
    }
}

/// The three endpoints a step lists from, and the hub's process.
struct Endpoints<'a> {
    direct: String,
    all: String,
    hub: String,
    token: &'a str,
    hub_pid: u32,
    duration: Duration,
}

impl Endpoints<'_> {
    /// One client kind's three runs at `n` clients, printed as one row.
    async fn lists(&self, kind: ClientKind, n: usize) -> Result<Lists, Error> {
        let expected = UPSTREAMS * TOOLS_PER_UPSTREAM;
        let direct = load(kind, &self.direct, None, n, TOOLS_PER_UPSTREAM, self.duration).await?;
        let direct_all = load(kind, &self.all, None, n, expected, self.duration).await?;
        let cpu = cpu_seconds(self.hub_pid);
        let through = load(kind, &self.hub, Some(self.token), n, expected, self.duration).await?;
        let cpu = cpu_seconds(self.hub_pid) - cpu;
        let lists = Lists {
            throughput_ratio: through.ratio_to(direct.throughput),
            hub_p50_ms: through.p50_us / 1000.0,
            hub_cpu_ms_per_1000_lists: if through.calls == 0 { 0.0 } else { cpu * 1e6 / through.calls as f64 },
            direct,
            direct_all,
            hub: through,
        };
        println!(
            "{:>7} {:>6} {:>9.0} {:>9.0} {:>9.0} {:>6.3} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>11.2} {:>13.0}",
            n,
            kind.name(),
            lists.direct.throughput,
            lists.direct_all.throughput,
            lists.hub.throughput,
            lists.throughput_ratio,
            lists.direct.p50_us,
            lists.direct_all.p50_us,
            lists.hub.p50_us,
            lists.direct.p99_us,
            lists.hub.p99_us,
            lists.hub_p50_ms,
            lists.hub_cpu_ms_per_1000_lists
        );
        lists.direct.print_errors("direct");
        lists.direct_all.print_errors("direct, all tools");
        lists.hub.print_errors("hub");
        Ok(lists)
    }
}

pub async fn fan_out(clients: &[usize], duration: Duration) -> Result<Value, Error> {
    let (upstream_count, tools) = (UPSTREAMS.to_string(), TOOLS_PER_UPSTREAM.to_string());
    let upstream = upstream::start(&["--endpoints", &upstream_count, "--tools", &tools]).await?;
    let expected = UPSTREAMS * TOOLS_PER_UPSTREAM;
    let one_long = upstream::start(&["--endpoints", "1", "--tools", &expected.to_string()]).await?;
    let hub = Agora::start(&[("AGORA_DEMO_UPSTREAM", "false"), ("AGORA_LOG", "warn")]).await?;
    for i in 0..UPSTREAMS {
        // Each keeps the default prefix (its name), so the 1,000 exposed names are distinct.
        let url = format!("{}/{i}", upstream.line);
        hub.cli(&["admin", "server", "add", "--name", &format!("up{i}"), "--url", &url]).await?;
    }
    let token = hub.hub_token().await?;
    let (hub_url, direct_url) = (format!("{}/hub/mcp", hub.url), format!("{}/0", upstream.line));
    let all_url = format!("{}/0", one_long.line);
    wait_for_tools(&hub_url, &token, expected).await?;

    println!(
        "fan-out: tools/list, {} s per step: one upstream straight ({TOOLS_PER_UPSTREAM} tools; {expected} tools) \
         vs the hub over {UPSTREAMS} upstreams ({expected} tools)",
        duration.as_secs()
    );
    println!(
        "{:>7} {:>6} {:>9} {:>9} {:>9} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>11} {:>13}",
        "clients",
        "client",
        "direct/s",
        "d1000/s",
        "hub/s",
        "ratio",
        "dir p50",
        "d1000 p50",
        "hub p50",
        "dir p99",
        "hub p99",
        "hub p50 ms",
        "hub cpu ms/k"
    );
    let endpoints =
        Endpoints { direct: direct_url, all: all_url, hub: hub_url, token: &token, hub_pid: hub.pid(), duration };
    let mut steps = Vec::new();
    for &n in clients {
        let rmcp = endpoints.lists(ClientKind::Rmcp, n).await?;
        let plain = endpoints.lists(ClientKind::Plain, n).await?;
        steps.push(Step { clients: n, rmcp, plain });
    }
    println!("        (latencies in µs; ratio: hub/direct; d1000: one upstream with all {expected} tools, straight;");
    println!("         rmcp: rmcp's typed client; plain: reqwest + serde_json::Value; target: hub p50 ≤ 2 ms)");
    Ok(json!({
        "scenario": "fan-out",
        "seconds": duration.as_secs(),
        "upstreams": UPSTREAMS,
        "tools_per_upstream": TOOLS_PER_UPSTREAM,
        "steps": steps,
    }))
}

/// Waits until the hub lists exactly `expected` tools: it reads the set of upstreams every few
/// seconds and connects to each on first use.
async fn wait_for_tools(hub_url: &str, token: &str, expected: usize) -> Result<(), Error> {
    let probe = Mcp::connect(hub_url, Some(token), McpRequest::ListTools(expected)).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = probe.tool_count().await?;
        if listed == expected {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("the hub lists {listed} tools, expected {expected}").into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
