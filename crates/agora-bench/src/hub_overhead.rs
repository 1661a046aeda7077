//! hub-overhead: N MCP clients (rmcp) each loop `tools/call noop`, first straight at the upstream,
//! then through the proxy (HTTP forwarding after reading the message: see `proxy`), then through
//! the floor gateway (rmcp server to rmcp client, nothing else: see `floor`), then through
//! `/hub/mcp` with a real token. Reports throughput, latency and CPU per call, and each gateway's
//! figures as ratios of the direct ones measured in the same run.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use crate::agora::Agora;
use crate::load::{Mcp, McpRequest, Stats, run};
use crate::process::cpu_seconds;
use crate::{Error, floor, proxy, upstream};

/// `clients` MCP clients looping `tools/call noop` at `url` for `duration`.
pub async fn run_load(url: &str, token: Option<&str>, clients: usize, duration: Duration) -> Result<Stats, Error> {
    run(Mcp::connect_all(url, token, clients, McpRequest::CallNoop).await?, duration).await
}

#[derive(Serialize)]
struct Step {
    clients: usize,
    direct: Stats,
    proxy: Stats,
    floor: Stats,
    hub: Stats,
    proxy_throughput_ratio: f64,
    floor_throughput_ratio: f64,
    throughput_ratio: f64,
    proxy_added_p50_us: f64,
    floor_added_p50_us: f64,
    added_p50_us: f64,
    proxy_cpu_ms_per_1000_calls: f64,
    floor_cpu_ms_per_1000_calls: f64,
    hub_cpu_ms_per_1000_calls: f64,
    upstream_cpu_ms_per_1000_calls: f64,
}

/// Runs the load at `url` and returns it with the CPU per 1,000 calls it cost each of `pids`.
async fn measured(
    url: &str,
    token: Option<&str>,
    clients: usize,
    duration: Duration,
    pids: [u32; 2],
) -> Result<(Stats, [f64; 2]), Error> {
    let before = pids.map(cpu_seconds);
    let stats = run_load(url, token, clients, duration).await?;
    let per_k = |cpu: f64| if stats.calls == 0 { 0.0 } else { cpu * 1e6 / stats.calls as f64 };
    let spent = [per_k(cpu_seconds(pids[0]) - before[0]), per_k(cpu_seconds(pids[1]) - before[1])];
    Ok((stats, spent))
}

pub async fn hub_overhead(clients: &[usize], duration: Duration) -> Result<Value, Error> {
    let upstream = upstream::start(&[]).await?;
    let hub = Agora::start(&[("AGORA_DEMO_UPSTREAM", "false"), ("AGORA_LOG", "warn")]).await?;
    hub.cli(&["admin", "server", "add", "--name", "bench", "--url", &upstream.line, "--no-prefix"]).await?;
    let token = hub.hub_token().await?;
    let hub_url = format!("{}/hub/mcp", hub.url);
    let proxy = proxy::start(&upstream.line).await?;
    let floor = floor::start(&upstream.line).await?;
    let (hub_pid, proxy_pid, floor_pid, upstream_pid) = (hub.pid(), proxy.pid(), floor.pid(), upstream.pid());

    println!(
        "hub-overhead: tools/call noop, {} s per step, straight vs the proxy vs the floor gateway vs /hub/mcp",
        duration.as_secs()
    );
    println!(
        "{:>7} {:>8} {:>8} {:>8} {:>8} {:>5} {:>5} {:>5} {:>7} {:>7} {:>7} {:>7} {:>7} {:>6} {:>6} {:>6} {:>6}",
        "clients",
        "direct/s",
        "proxy/s",
        "floor/s",
        "hub/s",
        "proxy",
        "floor",
        "hub",
        "dir p50",
        "+proxy",
        "+floor",
        "+hub",
        "hub p99",
        "px cpu",
        "fl cpu",
        "hubcpu",
        "up cpu"
    );
    let mut steps = Vec::new();
    for &n in clients {
        let direct = run_load(&upstream.line, None, n, duration).await?;
        let (proxied, [proxy_cpu, _]) = measured(&proxy.line, None, n, duration, [proxy_pid, upstream_pid]).await?;
        let (floored, [floor_cpu, _]) = measured(&floor.line, None, n, duration, [floor_pid, upstream_pid]).await?;
        let (through, [hub_cpu, up_cpu]) =
            measured(&hub_url, Some(&token), n, duration, [hub_pid, upstream_pid]).await?;
        let step = Step {
            clients: n,
            proxy_throughput_ratio: proxied.ratio_to(direct.throughput),
            floor_throughput_ratio: floored.ratio_to(direct.throughput),
            throughput_ratio: through.ratio_to(direct.throughput),
            proxy_added_p50_us: proxied.p50_us - direct.p50_us,
            floor_added_p50_us: floored.p50_us - direct.p50_us,
            added_p50_us: through.p50_us - direct.p50_us,
            proxy_cpu_ms_per_1000_calls: proxy_cpu,
            floor_cpu_ms_per_1000_calls: floor_cpu,
            hub_cpu_ms_per_1000_calls: hub_cpu,
            upstream_cpu_ms_per_1000_calls: up_cpu,
            direct,
            proxy: proxied,
            floor: floored,
            hub: through,
        };
        println!(
            "{:>7} {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>5.2} {:>5.2} {:>5.2} {:>7.0} {:>7.0} {:>7.0} {:>7.0} {:>7.0} {:>6.0} {:>6.0} {:>6.0} {:>6.0}",
            n,
            step.direct.throughput,
            step.proxy.throughput,
            step.floor.throughput,
            step.hub.throughput,
            step.proxy_throughput_ratio,
            step.floor_throughput_ratio,
            step.throughput_ratio,
            step.direct.p50_us,
            step.proxy_added_p50_us,
            step.floor_added_p50_us,
            step.added_p50_us,
            step.hub.p99_us,
            step.proxy_cpu_ms_per_1000_calls,
            step.floor_cpu_ms_per_1000_calls,
            step.hub_cpu_ms_per_1000_calls,
            step.upstream_cpu_ms_per_1000_calls
        );
        step.direct.print_errors("direct");
        step.proxy.print_errors("proxy");
        step.floor.print_errors("floor");
        step.hub.print_errors("hub");
        steps.push(step);
    }
    println!(
        "        (ratios: calls/s of the direct run; +proxy, +floor, +hub: p50 added, µs; cpu: ms per 1,000 calls,"
    );
    println!("         upstream's while serving the hub)");
    Ok(json!({"scenario": "hub-overhead", "seconds": duration.as_secs(), "steps": steps}))
}

/// `--target`: the same client load against any MCP endpoint.
pub async fn report_target(
    url: &str,
    token: Option<&str>,
    clients: &[usize],
    duration: Duration,
) -> Result<Value, Error> {
    println!("{:>7} {:>11} {:>9} {:>9} {:>7}", "clients", "calls/s", "p50 µs", "p99 µs", "errors");
    let mut steps = Vec::new();
    for &n in clients {
        let stats = run_load(url, token, n, duration).await?;
        println!("{:>7} {:>11.0} {:>9.0} {:>9.0} {:>7}", n, stats.throughput, stats.p50_us, stats.p99_us, stats.errors);
        stats.print_errors("target");
        steps.push(json!({"clients": n, "stats": stats}));
    }
    Ok(json!({"scenario": "hub-overhead", "target": url, "seconds": duration.as_secs(), "steps": steps}))
}
