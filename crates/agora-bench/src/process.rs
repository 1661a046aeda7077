//! The processes a scenario starts and what it reads of them in `/proc` (Linux).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::Error;

/// A child process that printed `ready_prefix…` on stdout; the rest of that line is returned.
pub struct Child {
    pub process: tokio::process::Child,
    pub line: String,
}

impl Child {
    pub fn pid(&self) -> u32 {
        self.process.id().unwrap_or(0)
    }
}

/// Serves `router` on `listen` until killed, after printing `ready_prefix` and its `/mcp` URL (what
/// [`spawn`] waits for). Replies go out with TCP_NODELAY: on kept-alive connections an answer's
/// last small write must not wait (Nagle) for the client's delayed ACK, which adds 40 ms per call.
pub async fn serve(listen: &str, ready_prefix: &str, router: axum::Router) -> Result<(), Error> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("{ready_prefix}http://{}/mcp", listener.local_addr()?);
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router).await?;
    Ok(())
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

/// A binary built beside this one (`agora`).
pub fn sibling(name: &str) -> Result<PathBuf, Error> {
    let exe = std::env::current_exe()?;
    let path = exe.parent().ok_or("no executable directory")?.join(name);
    if !path.exists() {
        return Err(format!("{} not found: build it first (cargo build -p agora)", path.display()).into());
    }
    Ok(path)
}

/// User + system CPU seconds a process has used so far (`/proc/PID/stat`).
pub fn cpu_seconds(pid: u32) -> f64 {
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

/// Resident memory of a process in bytes (`VmRSS` of `/proc/PID/status`).
pub fn rss_bytes(pid: u32) -> Result<u64, Error> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .ok_or("no VmRSS in /proc/PID/status")?;
    Ok(kib * 1024)
}
