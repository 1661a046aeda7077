//! sessions: resident memory (`VmRSS`) of an idle `agora serve` in its default configuration
//! (SQLite, demo upstream on), then with N MCP sessions of revision 2025-11-25 opened and left
//! open, once just opened and once idle past the session idle timeout; and whether a random sample
//! of those sessions still answers `tools/list`. The same sessions opened at the floor gateway
//! (rmcp's session layer and nothing else) are the baseline.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::agora::Agora;
use crate::plain::{REVISION, message, open_session, post};
use crate::process::rss_bytes;
use crate::{Error, floor, upstream};

const SAMPLE: usize = 100;
const MIB: f64 = 1024.0 * 1024.0;

/// Opens `count` sessions over `concurrency` connections, which are closed again afterwards.
async fn open_sessions(url: &str, token: Option<&str>, count: usize, concurrency: usize) -> Result<Vec<String>, Error> {
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (url, token, next) = (url.to_owned(), token.map(str::to_owned), next.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::builder().build()?;
                let mut ids = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    ids.push(open_session(&http, &url, token.as_deref()).await?);
                }
                Ok::<_, Error>(ids)
            })
        })
        .collect();
    let mut ids = Vec::with_capacity(count);
    for task in tasks {
        ids.extend(task.await??);
    }
    Ok(ids)
}

/// How many of `ids` answer `tools/list` with a list.
async fn answering(url: &str, token: &str, ids: &[String]) -> Result<usize, Error> {
    let http = reqwest::Client::builder().build()?;
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let mut answered = 0;
    for id in ids {
        let response = post(&http, url, Some(token), Some(id), &list).send().await?;
        if response.status().is_success() && message(&response.bytes().await?)["result"]["tools"].is_array() {
            answered += 1;
        }
    }
    Ok(answered)
}

pub async fn sessions(count: usize, concurrency: usize, settle: Duration) -> Result<Value, Error> {
    // As a user runs it, except that sessions leave memory after a shorter idle time than the
    // default 60 s, so the run need not wait that long: longer than opening them all takes.
    let idle_timeout = settle * 3;
    let idle_timeout_s = idle_timeout.as_secs().to_string();
    let agora = Agora::start(&[("AGORA_MCP_SESSION_IDLE_TIMEOUT", &idle_timeout_s)]).await?;
    tokio::time::sleep(settle).await;
    let idle = rss_bytes(agora.pid())?;
    let (url, token) = (format!("{}/hub/mcp", agora.url), agora.hub_token().await?);
    // One session first, so the one-time costs of a first token and a first hub request are not
    // counted per session.
    open_sessions(&url, Some(&token), 1, 1).await?;
    let warm = rss_bytes(agora.pid())?;
    let started = Instant::now();
    let mut ids = open_sessions(&url, Some(&token), count, concurrency).await?;
    let opened_per_s = count as f64 / started.elapsed().as_secs_f64();
    tokio::time::sleep(settle).await;
    let live = rss_bytes(agora.pid())?;
    let live_added = live.saturating_sub(warm);
    // Idle past the timeout and one sweep (every half timeout): every session is now dormant.
    tokio::time::sleep(idle_timeout + idle_timeout / 2 + settle).await;
    let dormant = rss_bytes(agora.pid())?;
    let added = dormant.saturating_sub(warm);
    let per_session = added as f64 / count.max(1) as f64;
    let random = std::collections::hash_map::RandomState::new();
    ids.sort_by_cached_key(|id| random.hash_one(id));
    ids.truncate(SAMPLE);
    // Dormant sessions answer too: each is restored from the database on this request.
    let answered = answering(&url, &token, &ids).await?;
    drop(agora);

    // The same sessions at the floor gateway (it takes no token, and connects upstream only on
    // a first tool request, which these sessions never make).
    let upstream = upstream::start(&[]).await?;
    let floor = floor::start(&upstream.line).await?;
    open_sessions(&floor.line, None, 1, 1).await?;
    let floor_warm = rss_bytes(floor.pid())?;
    open_sessions(&floor.line, None, count, concurrency).await?;
    tokio::time::sleep(settle).await;
    let floor_added = rss_bytes(floor.pid())?.saturating_sub(floor_warm);
    let floor_per_session = floor_added as f64 / count.max(1) as f64;

    println!(
        "sessions: resident memory of agora serve (default configuration, SQLite), idle and with {count} MCP \
         sessions ({REVISION}) open: just opened (live), then idle past the {}s idle timeout (dormant)",
        idle_timeout.as_secs()
    );
    println!(
        "{:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>11} {:>8} {:>8}",
        "idle MiB",
        "warm MiB",
        "sessions",
        "live MiB",
        "idle MiB",
        "added MiB",
        "B/session",
        "MiB per 10k",
        "opened/s",
        "sample"
    );
    println!(
        "{:>8.1} {:>8.1} {:>8} {:>8.1} {:>8.1} {:>9.1} {:>9.0} {:>11.1} {:>8.0} {:>8}",
        idle as f64 / MIB,
        warm as f64 / MIB,
        count,
        live as f64 / MIB,
        dormant as f64 / MIB,
        added as f64 / MIB,
        per_session,
        per_session * 10_000.0 / MIB,
        opened_per_s,
        format!("{answered}/{}", ids.len())
    );
    println!(
        "{:>8} {:>8.1} {:>8} {:>8} {:>8} {:>9.1} {:>9.0} {:>11.1}   (the floor gateway: rmcp's sessions alone, live)",
        "floor",
        floor_warm as f64 / MIB,
        count,
        "",
        "",
        floor_added as f64 / MIB,
        floor_per_session,
        floor_per_session * 10_000.0 / MIB,
    );
    println!(
        "        (warm: after a first token and session; added = idle − warm; live: {:.1} MiB added, {:.0} B/session)",
        live_added as f64 / MIB,
        live_added as f64 / count.max(1) as f64
    );
    println!("        (targets: idle ≤ 40 MiB; 10,000 sessions add ≤ 20 MiB)");
    if answered < ids.len() {
        return Err(format!("only {answered} of {} sampled sessions answered tools/list", ids.len()).into());
    }
    Ok(json!({
        "scenario": "sessions",
        "revision": REVISION,
        "sessions": count,
        "idle_rss_bytes": idle,
        "warm_rss_bytes": warm,
        "idle_timeout_s": idle_timeout.as_secs(),
        "rss_live_bytes": live,
        "live_added_bytes": live_added,
        "rss_with_sessions_bytes": dormant,
        "added_bytes": added,
        "bytes_per_session": per_session,
        "floor_added_bytes": floor_added,
        "floor_bytes_per_session": floor_per_session,
        "opened_per_s": opened_per_s,
        "sample": ids.len(),
        "sample_answered": answered,
    }))
}
