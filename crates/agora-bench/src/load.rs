//! hub-overhead: N MCP clients (rmcp) each loop `tools/call noop`, first straight at the upstream,
//! then through `/hub/mcp` with a real token. Reports throughput, latency and CPU per call, and the
//! hub's figures as ratios of the direct ones measured in the same run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde::Serialize;

use crate::{Error, spawn};

#[derive(Serialize, Clone, Copy, Default)]
pub struct Stats {
    pub calls: usize,
    pub errors: usize,
    pub throughput: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// Runs `clients` concurrent MCP clients against `url` for `duration`.
pub async fn run_load(url: &str, token: Option<&str>, clients: usize, duration: Duration) -> Result<Stats, Error> {
    let mut tasks = Vec::with_capacity(clients);
    let start_gate = std::sync::Arc::new(tokio::sync::Barrier::new(clients));
    for _ in 0..clients {
        let (url, token, gate) = (url.to_owned(), token.map(str::to_owned), start_gate.clone());
        tasks.push(tokio::spawn(async move {
            let mut config = StreamableHttpClientTransportConfig::with_uri(url);
            if let Some(token) = token {
                config = config.auth_header(token);
            }
            let client = ().serve(StreamableHttpClientTransport::from_config(config)).await?;
            client.call_tool(CallToolRequestParams::new("noop")).await?; // warm-up
            gate.wait().await;
            let deadline = Instant::now() + duration;
            let (mut latencies, mut errors) = (Vec::new(), 0usize);
            while Instant::now() < deadline {
                let started = Instant::now();
                match client.call_tool(CallToolRequestParams::new("noop")).await {
                    Ok(result) if result.is_error != Some(true) => latencies.push(started.elapsed()),
                    _ => errors += 1,
                }
            }
            let _ = client.cancel().await;
            Ok::<_, Error>((latencies, errors))
        }));
    }
    let started = Instant::now();
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for task in tasks {
        let (l, e) = task.await??;
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64().max(duration.as_secs_f64());
    latencies.sort_unstable();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    Ok(Stats {
        calls: latencies.len(),
        errors,
        throughput: latencies.len() as f64 / elapsed,
        p50_us: percentile(0.50),
        p99_us: percentile(0.99),
    })
}

/// User + system CPU seconds a process has used so far (Linux `/proc/PID/stat`).
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th of them.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / clock_ticks_per_second()
}

fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

#[derive(Serialize)]
struct Step {
    clients: usize,
    direct: Stats,
    hub: Stats,
    throughput_ratio: f64,
    added_p50_us: f64,
    hub_cpu_ms_per_1000_calls: f64,
    upstream_cpu_ms_per_1000_calls: f64,
}

fn sibling(name: &str) -> Result<PathBuf, Error> {
    let exe = std::env::current_exe()?;
    let path = exe.parent().ok_or("no executable directory")?.join(name);
    if !path.exists() {
        return Err(format!("{} not found: build it first (cargo build -p agora)", path.display()).into());
    }
    Ok(path)
}

async fn cli(agora: &Path, data_dir: &str, args: &[&str]) -> Result<String, Error> {
    let out = tokio::process::Command::new(agora)
        .args(args)
        .env("AGORA_DATA_DIR", data_dir)
        .env("AGORA_LOG", "warn")
        .output()
        .await?;
    if !out.status.success() {
        return Err(format!("agora {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8(out.stdout)?)
}

pub async fn hub_overhead(clients: &[usize], duration: Duration, json: &Path) -> Result<(), Error> {
    let agora = sibling("agora")?;
    let me = std::env::current_exe()?;
    let data_dir = std::env::temp_dir().join(format!("agora-bench-{}", std::process::id()));
    let data_dir_str = data_dir.to_string_lossy().into_owned();
    let upstream = spawn(&me, &["upstream"], &[], "upstream listening on ").await?;
    let hub = spawn(
        &agora,
        &["serve"],
        &[
            ("AGORA_DATA_DIR", &data_dir_str),
            ("AGORA_LISTEN", "127.0.0.1:0"),
            ("AGORA_DEMO_UPSTREAM", "false"),
            ("AGORA_LOG", "warn"),
        ],
        "agora listening on ",
    )
    .await?;
    cli(&agora, &data_dir_str, &["admin", "server", "add", "--name", "bench", "--url", &upstream.line, "--no-prefix"])
        .await?;
    let created = cli(
        &agora,
        &data_dir_str,
        &["admin", "client", "create", "--name", "bench", "--redirect-uri", "http://127.0.0.1:1/cb"],
    )
    .await?;
    let value =
        |key: &str| created.lines().find_map(|l| l.strip_prefix(key)).map(str::to_owned).ok_or("no client credentials");
    let (client_id, secret) = (value("CIVIC_CLIENT_ID=")?, value("CIVIC_CLIENT_SECRET=")?);
    let token: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/oauth/token", hub.line))
        .basic_auth(&client_id, Some(&secret))
        .form(&[("grant_type", "client_credentials"), ("scope", "mcp:tools")])
        .send()
        .await?
        .json()
        .await?;
    let token = token["access_token"].as_str().ok_or("no access token")?.to_owned();
    let hub_url = format!("{}/hub/mcp", hub.line);
    let (hub_pid, upstream_pid) = (hub.process.id().unwrap_or(0), upstream.process.id().unwrap_or(0));

    println!("hub-overhead: tools/call noop, {} s per step, straight vs through /hub/mcp", duration.as_secs());
    println!(
        "{:>7} {:>11} {:>11} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>13} {:>13}",
        "clients",
        "direct/s",
        "hub/s",
        "ratio",
        "dir p50",
        "hub p50",
        "dir p99",
        "hub p99",
        "+p50 µs",
        "hub cpu ms/k",
        "up cpu ms/k"
    );
    let mut steps = Vec::new();
    for &n in clients {
        let direct = run_load(&upstream.line, None, n, duration).await?;
        let (hub_cpu, up_cpu) = (cpu_seconds(hub_pid), cpu_seconds(upstream_pid));
        let through = run_load(&hub_url, Some(&token), n, duration).await?;
        let (hub_cpu, up_cpu) = (cpu_seconds(hub_pid) - hub_cpu, cpu_seconds(upstream_pid) - up_cpu);
        let per_k = |cpu: f64| if through.calls == 0 { 0.0 } else { cpu * 1e6 / through.calls as f64 };
        let step = Step {
            clients: n,
            throughput_ratio: if direct.throughput > 0.0 { through.throughput / direct.throughput } else { 0.0 },
            added_p50_us: through.p50_us - direct.p50_us,
            hub_cpu_ms_per_1000_calls: per_k(hub_cpu),
            upstream_cpu_ms_per_1000_calls: per_k(up_cpu),
            direct,
            hub: through,
        };
        println!(
            "{:>7} {:>11.0} {:>11.0} {:>6.2} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>13.1} {:>13.1}",
            n,
            step.direct.throughput,
            step.hub.throughput,
            step.throughput_ratio,
            step.direct.p50_us,
            step.hub.p50_us,
            step.direct.p99_us,
            step.hub.p99_us,
            step.added_p50_us,
            step.hub_cpu_ms_per_1000_calls,
            step.upstream_cpu_ms_per_1000_calls
        );
        if step.direct.errors + step.hub.errors > 0 {
            println!("        errors: direct {}, hub {}", step.direct.errors, step.hub.errors);
        }
        steps.push(step);
    }
    std::fs::write(
        json,
        serde_json::to_vec_pretty(
            &serde_json::json!({"scenario": "hub-overhead", "seconds": duration.as_secs(), "steps": steps}),
        )?,
    )?;
    println!("results written to {}", json.display());
    drop(hub);
    drop(upstream);
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

/// `--target`: the same client load against any MCP endpoint.
pub async fn report_target(url: &str, token: Option<&str>, clients: &[usize], duration: Duration) -> Result<(), Error> {
    println!("{:>7} {:>11} {:>9} {:>9} {:>7}", "clients", "calls/s", "p50 µs", "p99 µs", "errors");
    for &n in clients {
        let stats = run_load(url, token, n, duration).await?;
        println!("{:>7} {:>11.0} {:>9.0} {:>9.0} {:>7}", n, stats.throughput, stats.p50_us, stats.p99_us, stats.errors);
    }
    Ok(())
}
