//! `agora admin …` and `agora keys …`: operator commands that act on the database directly, so they
//! work with or without a running server (and against any replica's shared database).

use std::io::BufRead;

use agora_core::client::{AuthMethod, ClientOrigin, GrantType, validate_redirect_uri};
use agora_store::secret::{random_token, token_digest};
use agora_store::{NewClient, NewUser};
use clap::Subcommand;

use crate::config::Config;
use crate::{AppError, open_store};

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Users who sign in to agora.
    #[command(subcommand)]
    User(UserCommand),
    /// OAuth clients (applications).
    #[command(subcommand)]
    Client(ClientCommand),
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user; prints a generated password unless --password-stdin is given.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List,
    /// Set a new password (generated and printed, or read with --password-stdin).
    SetPassword {
        #[arg(long)]
        email: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disable a user: ends their sessions and revokes their tokens.
    Disable {
        #[arg(long)]
        email: String,
    },
}

#[derive(Subcommand)]
pub enum ClientCommand {
    /// Create a client and print CIVIC_CLIENT_ID / CIVIC_CLIENT_SECRET lines for an app's .env.
    Create {
        #[arg(long)]
        name: String,
        /// A public client (browser or native app): no secret, PKCE only.
        #[arg(long)]
        public: bool,
        /// Allowed redirect URI (repeatable).
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// Allowed post-logout redirect URI (repeatable).
        #[arg(long = "post-logout-redirect-uri")]
        post_logout_redirect_uris: Vec<String>,
    },
    /// List clients.
    List,
    /// Revoke a client and every token it holds.
    Revoke { client_id: String },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Start signing with the published successor key and publish a new successor.
    Rotate {
        /// Algorithm of the new successor key [default: the configured signing_alg].
        #[arg(long)]
        alg: Option<String>,
    },
    /// List published keys.
    List,
}

fn read_password(from_stdin: bool) -> Result<(String, bool), AppError> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|source| AppError::Io { context: "cannot read password from stdin".into(), source })?;
        let password = line.trim_end_matches(['\r', '\n']).to_owned();
        if password.chars().count() < 8 {
            return Err(AppError::Usage("the password must have at least 8 characters".into()));
        }
        Ok((password, false))
    } else {
        Ok((random_token("")[..20].to_owned(), true))
    }
}

fn hash(password: &str) -> Result<String, AppError> {
    agora_oauth::password::hash(password).map_err(|e| AppError::Usage(e.to_string()))
}

fn email(raw: &str) -> Result<String, AppError> {
    agora_core::email::normalize(raw).map_err(|e| AppError::Usage(e.to_string()))
}

pub async fn run_admin(config: Config, command: AdminCommand) -> Result<(), AppError> {
    let store = open_store(&config).await?;
    let now = agora_oauth::now();
    match command {
        AdminCommand::User(UserCommand::Create { email: raw, name, password_stdin }) => {
            let email = email(&raw)?;
            let (password, generated) = read_password(password_stdin)?;
            let new = NewUser { email, email_verified: true, name, password_hash: Some(hash(&password)?) };
            let user = store.create_user(new, now).await?;
            println!("created user {} ({})", user.email, user.id);
            if generated {
                println!("password: {password}   (shown once)");
            }
        }
        AdminCommand::User(UserCommand::List) => {
            for user in store.list_users().await? {
                let status = if user.disabled { "disabled" } else { "active" };
                println!("{}\t{}\t{}\t{}", user.id, user.email, user.name.unwrap_or_default(), status);
            }
        }
        AdminCommand::User(UserCommand::SetPassword { email: raw, password_stdin }) => {
            let user =
                store.user_by_email(&email(&raw)?).await?.ok_or_else(|| AppError::Usage(format!("no user {raw}")))?;
            let (password, generated) = read_password(password_stdin)?;
            store.set_password_hash(&user.id, &hash(&password)?, now).await?;
            println!("password updated for {}", user.email);
            if generated {
                println!("password: {password}   (shown once)");
            }
        }
        AdminCommand::User(UserCommand::Disable { email: raw }) => {
            let user =
                store.user_by_email(&email(&raw)?).await?.ok_or_else(|| AppError::Usage(format!("no user {raw}")))?;
            store.disable_user(&user.id, now).await?;
            println!("disabled {}; their sessions and tokens are revoked", user.email);
        }
        AdminCommand::Client(ClientCommand::Create { name, public, redirect_uris, post_logout_redirect_uris }) => {
            for uri in redirect_uris.iter().chain(&post_logout_redirect_uris) {
                validate_redirect_uri(uri).map_err(|e| AppError::Usage(e.to_string()))?;
            }
            let secret = (!public).then(|| random_token("agora_cs_"));
            let mut grant_types = vec![GrantType::AuthorizationCode, GrantType::RefreshToken];
            if !public {
                grant_types.push(GrantType::ClientCredentials);
            }
            let client = store
                .create_client(
                    NewClient {
                        id: uuid::Uuid::new_v4().to_string(),
                        name,
                        secret_digest: secret.as_deref().map(token_digest),
                        auth_method: if public { AuthMethod::None } else { AuthMethod::ClientSecretBasic },
                        redirect_uris,
                        post_logout_redirect_uris,
                        grant_types,
                        origin: ClientOrigin::Admin,
                    },
                    now,
                )
                .await?;
            println!("CIVIC_CLIENT_ID={}", client.id);
            if let Some(secret) = secret {
                println!("CIVIC_CLIENT_SECRET={secret}");
            }
        }
        AdminCommand::Client(ClientCommand::List) => {
            for client in store.list_clients().await? {
                let kind = if client.is_public() { "public" } else { "confidential" };
                let status = if client.revoked { "revoked" } else { "active" };
                println!(
                    "{}\t{}\t{kind}\t{}\t{status}\t{}",
                    client.id,
                    client.name,
                    client.origin.as_str(),
                    client.redirect_uris.join(" ")
                );
            }
        }
        AdminCommand::Client(ClientCommand::Revoke { client_id }) => {
            if !store.revoke_client(&client_id, now).await? {
                return Err(AppError::Usage(format!("no client {client_id}")));
            }
            println!("revoked client {client_id} and its tokens");
        }
    }
    store.close().await;
    Ok(())
}

pub async fn run_keys(config: Config, command: KeysCommand) -> Result<(), AppError> {
    let store = open_store(&config).await?;
    let keys = agora_oauth::KeyRing::new(store.clone());
    let now = agora_oauth::now();
    match command {
        KeysCommand::Rotate { alg } => {
            let alg = match alg {
                Some(raw) => agora_oauth::SigningAlg::parse(&raw)
                    .ok_or_else(|| AppError::Usage(format!("unknown algorithm {raw}; use RS256, ES256 or EdDSA")))?,
                None => config.signing_alg,
            };
            keys.ensure_keys(alg, now).await?;
            let retain = config.access_token_ttl.max(3600);
            let kid = keys.rotate(alg, now, retain).await?;
            println!("now signing with {kid}; the previous key stays published until its tokens expire");
        }
        KeysCommand::List => {
            for key in store.published_keys().await? {
                println!("{}\t{}\t{}", key.kid, key.alg, key.state);
            }
        }
    }
    store.close().await;
    Ok(())
}
