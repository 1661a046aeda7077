//! Load generator and benchmark scenarios for agora. Every figure is reported beside a baseline
//! measured in the same run (the machines are shared and noisy), never as an absolute threshold.
//!
//!     agora-bench hub-overhead [--quick] [--clients 1,16,64] [--seconds 10]
//!     agora-bench hub-overhead --target URL [--token T]     load any MCP endpoint
//!     agora-bench fan-out | token-exchange | sessions [--quick]
//!     agora-bench all --quick                               every scenario (CI smoke test)
//!     agora-bench upstream --listen 127.0.0.1:0             the fast upstream the scenarios use
//!     agora-bench floor --upstream URL                       the least gateway built from agora's crates
//!     agora-bench proxy --upstream URL                       the least MCP-aware gateway (HTTP forwarding)

mod agora;
mod fan_out;
mod floor;
mod hub_overhead;
mod load;
mod plain;
mod process;
mod proxy;
mod sessions;
mod tokens;
mod upstream;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "agora-bench", about = "Benchmarks for agora, each against a baseline from the same run")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What every scenario takes.
#[derive(Args)]
struct Run {
    /// A few seconds per step, and 1,000 sessions instead of 10,000 (CI smoke test).
    #[arg(long)]
    quick: bool,
    /// Seconds per step (and to let memory settle) [default: 10, or 2 with --quick].
    #[arg(long)]
    seconds: Option<u64>,
    /// Where to write the JSON results.
    #[arg(long, default_value = "bench-results.json")]
    json: PathBuf,
}

impl Run {
    fn duration(&self) -> Duration {
        Duration::from_secs(self.seconds.unwrap_or(if self.quick { 2 } else { 10 }))
    }

    fn sessions(&self) -> usize {
        if self.quick { 1_000 } else { 10_000 }
    }
}

const HUB_OVERHEAD_CLIENTS: &[usize] = &[1, 16, 64];
const FAN_OUT_CLIENTS: &[usize] = &[1, 4];
const TOKEN_CLIENTS: &[usize] = &[1, 16];
/// Sessions opened at once in the sessions scenario.
const SESSION_CONCURRENCY: usize = 32;

#[derive(Subcommand)]
enum Command {
    /// Serve the benchmark's upstream MCP server (a `noop` tool at /mcp) until killed.
    Upstream {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
        /// Serve N endpoints instead, /mcp/0 … /mcp/N-1, with --tools generated tools each.
        #[arg(long)]
        endpoints: Option<usize>,
        /// Tools per endpoint, with --endpoints.
        #[arg(long, default_value_t = 50, requires = "endpoints")]
        tools: usize,
    },
    /// Serve the floor gateway (rmcp server → rmcp client, nothing else) in front of UPSTREAM.
    Floor {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
        #[arg(long)]
        upstream: String,
    },
    /// Serve the proxy (HTTP forwarding after reading each JSON-RPC message) in front of UPSTREAM.
    Proxy {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
        #[arg(long)]
        upstream: String,
    },
    /// tools/call loops: straight at the upstream, through the proxy, the floor gateway and the hub.
    HubOverhead {
        #[command(flatten)]
        run: Run,
        /// Concurrent clients, comma separated [default: 1,16,64].
        #[arg(long, value_delimiter = ',')]
        clients: Vec<usize>,
        /// Load this MCP endpoint instead (another gateway, or a server directly).
        #[arg(long)]
        target: Option<String>,
        /// Bearer token for --target.
        #[arg(long)]
        token: Option<String>,
    },
    /// tools/list through the hub over 20 upstreams × 50 tools, against one upstream straight.
    FanOut {
        #[command(flatten)]
        run: Run,
        /// Concurrent clients, comma separated [default: 1,4].
        #[arg(long, value_delimiter = ',')]
        clients: Vec<usize>,
    },
    /// Token-exchange and refresh-token grants per second, against their crypto alone.
    TokenExchange {
        #[command(flatten)]
        run: Run,
        /// Concurrent clients, comma separated [default: 1,16].
        #[arg(long, value_delimiter = ',')]
        clients: Vec<usize>,
    },
    /// Resident memory of agora serve, idle and with many open MCP sessions.
    Sessions {
        #[command(flatten)]
        run: Run,
        /// Sessions to open [default: 10000, or 1000 with --quick].
        #[arg(long)]
        sessions: Option<usize>,
    },
    /// Every scenario with its defaults, one after another, into one JSON file.
    All {
        #[command(flatten)]
        run: Run,
    },
}

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // agora's own JOSE provider, so the token-exchange bound signs as agora does.
    agora_oauth::jose::install();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(Cli::parse().command))
}

/// `given` unless it is empty.
fn or<'a>(given: &'a [usize], default: &'a [usize]) -> &'a [usize] {
    if given.is_empty() { default } else { given }
}

async fn run(command: Command) -> Result<(), Error> {
    let (run, results) = match command {
        Command::Upstream { listen, endpoints, tools } => return upstream::serve(&listen, endpoints, tools).await,
        Command::Floor { listen, upstream } => return floor::serve(&listen, &upstream).await,
        Command::Proxy { listen, upstream } => return proxy::serve(&listen, &upstream).await,
        Command::HubOverhead { run, clients, target, token } => {
            let clients = or(&clients, HUB_OVERHEAD_CLIENTS);
            let results = match target {
                Some(url) => hub_overhead::report_target(&url, token.as_deref(), clients, run.duration()).await?,
                None => hub_overhead::hub_overhead(clients, run.duration()).await?,
            };
            (run, results)
        }
        Command::FanOut { run, clients } => {
            let results = fan_out::fan_out(or(&clients, FAN_OUT_CLIENTS), run.duration()).await?;
            (run, results)
        }
        Command::TokenExchange { run, clients } => {
            let results = tokens::token_exchange(or(&clients, TOKEN_CLIENTS), run.duration()).await?;
            (run, results)
        }
        Command::Sessions { run, sessions } => {
            let count = sessions.unwrap_or(run.sessions());
            let results = sessions::sessions(count, SESSION_CONCURRENCY, run.duration()).await?;
            (run, results)
        }
        Command::All { run } => {
            let duration = run.duration();
            let mut all = vec![hub_overhead::hub_overhead(HUB_OVERHEAD_CLIENTS, duration).await?];
            println!();
            all.push(fan_out::fan_out(FAN_OUT_CLIENTS, duration).await?);
            println!();
            all.push(tokens::token_exchange(TOKEN_CLIENTS, duration).await?);
            println!();
            all.push(sessions::sessions(run.sessions(), SESSION_CONCURRENCY, duration).await?);
            (run, serde_json::json!({ "scenarios": all }))
        }
    };
    std::fs::write(&run.json, serde_json::to_vec_pretty(&results)?)?;
    println!("results written to {}", run.json.display());
    Ok(())
}
