//! `agora serve` on SQLite in a temporary data directory, and `agora admin` commands against it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::Error;
use crate::process::{Child, sibling, spawn};

pub struct Agora {
    exe: PathBuf,
    data_dir: PathBuf,
    /// The base URL it listens on.
    pub url: String,
    child: Child,
}

impl Agora {
    /// Starts `agora serve` on a free loopback port, with `envs` on top of its defaults.
    pub async fn start(envs: &[(&str, &str)]) -> Result<Self, Error> {
        // `all` runs scenarios one after another in one process: each gets a fresh directory.
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let exe = sibling("agora")?;
        let data_dir = std::env::temp_dir().join(format!(
            "agora-bench-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        let data_dir_str = data_dir.to_string_lossy().into_owned();
        let mut all_envs = vec![("AGORA_DATA_DIR", data_dir_str.as_str()), ("AGORA_LISTEN", "127.0.0.1:0")];
        all_envs.extend_from_slice(envs);
        let child = spawn(&exe, &["serve"], &all_envs, "agora listening on ").await?;
        Ok(Self { exe, data_dir, url: child.line.clone(), child })
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Runs `agora ARGS` on the same data directory; returns its standard output.
    pub async fn cli(&self, args: &[&str]) -> Result<String, Error> {
        let out = tokio::process::Command::new(&self.exe)
            .args(args)
            .env("AGORA_DATA_DIR", &self.data_dir)
            .env("AGORA_LOG", "warn")
            .output()
            .await?;
        if !out.status.success() {
            return Err(format!("agora {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr)).into());
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    /// Creates a confidential client (`agora admin client create … EXTRA`); returns its id and secret.
    pub async fn create_client(&self, extra: &[&str]) -> Result<(String, String), Error> {
        let mut args = vec!["admin", "client", "create", "--name", "bench", "--redirect-uri", REDIRECT_URI];
        args.extend_from_slice(extra);
        let created = self.cli(&args).await?;
        let value = |key: &str| {
            created.lines().find_map(|l| l.strip_prefix(key)).map(str::to_owned).ok_or("no client credentials")
        };
        Ok((value("CIVIC_CLIENT_ID=")?, value("CIVIC_CLIENT_SECRET=")?))
    }

    /// A client-credentials access token for the hub (scope `mcp:tools`) of a new client.
    pub async fn hub_token(&self) -> Result<String, Error> {
        let (client_id, secret) = self.create_client(&[]).await?;
        let token: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/oauth/token", self.url))
            .basic_auth(&client_id, Some(&secret))
            .form(&[("grant_type", "client_credentials"), ("scope", "mcp:tools")])
            .send()
            .await?
            .json()
            .await?;
        Ok(token["access_token"].as_str().ok_or("no access token")?.to_owned())
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.data_dir.join(name)
    }
}

/// The redirect URI of the bench's clients; never followed.
pub const REDIRECT_URI: &str = "http://127.0.0.1:1/cb";

impl Drop for Agora {
    fn drop(&mut self) {
        // Stop the server before its directory goes.
        let _ = self.child.process.start_kill();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}
