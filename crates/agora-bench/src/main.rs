//! Load generator and benchmark scenarios for agora. Every figure is reported beside a baseline
//! measured in the same run (the machines are shared and noisy), never as an absolute threshold.
//!
//!     agora-bench hub-overhead [--quick] [--clients 1,16,64] [--seconds 10]
//!     agora-bench hub-overhead --target URL [--token T]     load any MCP endpoint
//!     agora-bench upstream --listen 127.0.0.1:0             the fast upstream the scenarios use

mod load;
mod upstream;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Parser)]
#[command(name = "agora-bench", about = "Benchmarks for agora, each against a baseline from the same run")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the benchmark's upstream MCP server (a `noop` tool) until killed.
    Upstream {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
    /// tools/call loops, straight at the upstream and then through the hub.
    HubOverhead {
        /// A few seconds per step (CI smoke test).
        #[arg(long)]
        quick: bool,
        /// Concurrent clients, comma separated.
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        clients: Vec<usize>,
        /// Seconds per step [default: 10, or 2 with --quick].
        #[arg(long)]
        seconds: Option<u64>,
        /// Load this MCP endpoint instead (another gateway, or a server directly).
        #[arg(long)]
        target: Option<String>,
        /// Bearer token for --target.
        #[arg(long)]
        token: Option<String>,
        /// Where to write the JSON results.
        #[arg(long, default_value = "bench-results.json")]
        json: PathBuf,
    },
}

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        match Cli::parse().command {
            Command::Upstream { listen } => upstream::serve(&listen).await,
            Command::HubOverhead { quick, clients, seconds, target, token, json } => {
                let duration = Duration::from_secs(seconds.unwrap_or(if quick { 2 } else { 10 }));
                match target {
                    Some(url) => load::report_target(&url, token.as_deref(), &clients, duration).await,
                    None => load::hub_overhead(&clients, duration, &json).await,
                }
            }
        }
    })
}

/// A child process that printed `ready_prefix…` on stdout; the rest of that line is returned.
pub struct Child {
    pub process: tokio::process::Child,
    pub line: String,
}

pub async fn spawn(
    program: &std::path::Path,
    args: &[&str],
    envs: &[(&str, &str)],
    ready_prefix: &str,
) -> Result<Child, Error> {
    let mut process = tokio::process::Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(process.stdout.take().ok_or("no stdout")?).lines();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let line = tokio::time::timeout_at(deadline, lines.next_line()).await??.ok_or("exited before it was ready")?;
        if let Some(rest) = line.strip_prefix(ready_prefix) {
            // Keep draining stdout so the child never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Ok(Child { process, line: rest.trim().to_owned() });
        }
    }
}
