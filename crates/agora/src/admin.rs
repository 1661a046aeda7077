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
    /// Identity providers whose tokens a client may exchange (RFC 8693).
    #[command(subcommand)]
    Provider(ProviderCommand),
    /// Upstream MCP servers the hub serves.
    #[command(subcommand)]
    Server(ServerCommand),
    /// Accounts: client links, public access, members, invitations, audit log.
    #[command(subcommand)]
    Account(crate::manage::AccountCommand),
    /// Profiles of an account.
    #[command(subcommand)]
    Profile(crate::manage::ProfileCommand),
    /// Toolkits: which tools a profile offers, with overrides.
    #[command(subcommand)]
    Toolkit(crate::manage::ToolkitCommand),
    /// Personal access tokens for agent platforms.
    #[command(subcommand)]
    Token(crate::manage::TokenCommand),
    /// Third-party services whose per-user credentials upstreams need.
    #[command(subcommand)]
    Service(crate::manage::ServiceCommand),
    /// Users' and organizations' credentials for third-party services.
    #[command(subcommand)]
    Credential(crate::manage::CredentialCommand),
}

#[derive(Subcommand)]
#[expect(clippy::large_enum_variant, reason = "a command line is parsed once per process")]
pub enum ServerCommand {
    /// Add a remote (--url, or --sse-url for the older transport) or local stdio (--command) MCP server.
    Add {
        #[arg(long)]
        name: String,
        /// Streamable HTTP endpoint of a remote server.
        #[arg(long, conflicts_with_all = ["command", "sse_url"])]
        url: Option<String>,
        /// Event-stream endpoint of a remote server speaking the older HTTP+SSE transport (2024-11-05).
        #[arg(long, conflicts_with = "command")]
        sse_url: Option<String>,
        /// Extra request header for a remote server, NAME=VALUE (repeatable; stored encrypted).
        #[arg(long = "header")]
        headers: Vec<String>,
        /// Program of a local server, started on demand and spoken to over stdio.
        #[arg(long)]
        command: Option<String>,
        /// Argument for --command (repeatable).
        #[arg(long = "arg", allow_hyphen_values = true)]
        args: Vec<String>,
        /// Environment variable for --command, NAME=VALUE (repeatable; stored encrypted). Nothing else is inherited but PATH.
        #[arg(long = "env")]
        env: Vec<String>,
        /// Prefix of its tool names [default: the server name].
        #[arg(long, conflicts_with = "no_prefix")]
        prefix: Option<String>,
        /// Expose its tool names as they are.
        #[arg(long)]
        no_prefix: bool,
        /// Per-call timeout in milliseconds.
        #[arg(long, default_value_t = 30_000)]
        timeout_ms: i64,
        /// The third-party service (`agora admin service add`) whose credential each caller's
        /// connection carries: the service's header for --url, its environment variable for --command.
        #[arg(long)]
        service: Option<String>,
    },
    /// List upstream servers.
    List,
    /// Remove an upstream server (by name or id).
    Remove { name: String },
}

#[derive(Subcommand)]
#[expect(clippy::large_enum_variant, reason = "a command line is parsed once per process")]
pub enum ProviderCommand {
    /// Let CLIENT exchange tokens from an identity provider; enables token exchange on the client.
    Add {
        #[arg(long)]
        client: String,
        /// google, auth0, entra, okta (fill issuer and JWKS URL), or custom.
        #[arg(long, default_value = "custom")]
        preset: String,
        /// Auth0/Okta domain or Entra tenant id, for presets that need one.
        #[arg(long)]
        tenant: Option<String>,
        /// Must equal the tokens' `iss` exactly (custom providers).
        #[arg(long)]
        issuer: Option<String>,
        #[arg(long)]
        jwks_uri: Option<String>,
        /// A PEM public key file, instead of a JWKS URL.
        #[arg(long)]
        public_key_file: Option<std::path::PathBuf>,
        /// When set, must be among the tokens' `aud` (for Google: your OAuth client id).
        #[arg(long)]
        audience: Option<String>,
        /// Accepted signature algorithm (repeatable) [default: RS256].
        #[arg(long = "alg")]
        algorithms: Vec<String>,
        /// Scopes an exchange grants when it asks for none.
        #[arg(long, default_value = "openid email profile")]
        default_scopes: String,
        /// Longest lifetime of exchanged tokens, 60–86400 seconds.
        #[arg(long, default_value_t = 3600)]
        max_token_lifetime: i64,
        /// Attach a first exchange to an existing user with the same verified email.
        #[arg(long)]
        link_by_email: bool,
        #[arg(long)]
        name: Option<String>,
    },
    /// List identity providers (of one client, or all).
    List {
        #[arg(long)]
        client: Option<String>,
    },
    /// Remove an identity provider.
    Remove { id: String },
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
        /// Allow RFC 8693 token exchange (also enabled by `agora admin provider add`).
        #[arg(long)]
        token_exchange: bool,
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
            let new = NewUser { email: Some(email), email_verified: true, name, password_hash: Some(hash(&password)?) };
            let user = store.create_user(new, now).await?;
            println!("created user {} ({})", user.email.unwrap_or_default(), user.id);
            if generated {
                println!("password: {password}   (shown once)");
            }
        }
        AdminCommand::User(UserCommand::List) => {
            for user in store.list_users().await? {
                let status = if user.disabled { "disabled" } else { "active" };
                println!(
                    "{}\t{}\t{}\t{}",
                    user.id,
                    user.email.unwrap_or_default(),
                    user.name.unwrap_or_default(),
                    status
                );
            }
        }
        AdminCommand::User(UserCommand::SetPassword { email: raw, password_stdin }) => {
            let user =
                store.user_by_email(&email(&raw)?).await?.ok_or_else(|| AppError::Usage(format!("no user {raw}")))?;
            let (password, generated) = read_password(password_stdin)?;
            store.set_password_hash(&user.id, &hash(&password)?, now).await?;
            println!("password updated for {raw}");
            if generated {
                println!("password: {password}   (shown once)");
            }
        }
        AdminCommand::User(UserCommand::Disable { email: raw }) => {
            let user =
                store.user_by_email(&email(&raw)?).await?.ok_or_else(|| AppError::Usage(format!("no user {raw}")))?;
            store.disable_user(&user.id, now).await?;
            println!("disabled {raw}; their sessions and tokens are revoked");
        }
        AdminCommand::Client(ClientCommand::Create {
            name,
            public,
            redirect_uris,
            post_logout_redirect_uris,
            token_exchange,
        }) => {
            for uri in redirect_uris.iter().chain(&post_logout_redirect_uris) {
                validate_redirect_uri(uri).map_err(|e| AppError::Usage(e.to_string()))?;
            }
            let secret = (!public).then(|| random_token("agora_cs_"));
            let mut grant_types = vec![GrantType::AuthorizationCode, GrantType::RefreshToken];
            if !public {
                grant_types.push(GrantType::ClientCredentials);
            }
            if token_exchange {
                if public {
                    return Err(AppError::Usage("token exchange needs a confidential client".into()));
                }
                grant_types.push(GrantType::TokenExchange);
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
        AdminCommand::Provider(command) => provider_command(&store, command, now).await?,
        AdminCommand::Server(command) => server_command(&store, command, now).await?,
        AdminCommand::Account(command) => crate::manage::account(store.clone(), command, now).await?,
        AdminCommand::Profile(command) => crate::manage::profile(store.clone(), command, now).await?,
        AdminCommand::Toolkit(command) => crate::manage::toolkit(store.clone(), command, now).await?,
        AdminCommand::Token(command) => crate::manage::token(store.clone(), command, now).await?,
        AdminCommand::Service(command) => crate::manage::service(store.clone(), command, now).await?,
        AdminCommand::Credential(command) => crate::manage::credential(store.clone(), command, now).await?,
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

async fn provider_command(store: &agora_store::Store, command: ProviderCommand, now: i64) -> Result<(), AppError> {
    use agora_core::federation::{IdentityProvider, KeySource, preset};
    let usage = |e: &dyn std::fmt::Display| AppError::Usage(e.to_string());
    match command {
        ProviderCommand::Add {
            client,
            preset: preset_name,
            tenant,
            issuer,
            jwks_uri,
            public_key_file,
            audience,
            algorithms,
            default_scopes,
            max_token_lifetime,
            link_by_email,
            name,
        } => {
            let found =
                store.client_by_id(&client).await?.ok_or_else(|| AppError::Usage(format!("no client {client}")))?;
            if found.is_public() {
                return Err(AppError::Usage("token exchange needs a confidential client".into()));
            }
            let (preset_label, issuer, jwks_uri) = match preset_name.as_str() {
                "custom" => ("Custom".to_owned(), issuer, jwks_uri),
                other => {
                    let p = preset(other, tenant.as_deref()).map_err(|e| usage(&e))?;
                    // These issuers sign tokens for every app that uses them: without an audience
                    // check, a token issued to any other app would be accepted.
                    if audience.is_none() {
                        return Err(AppError::Usage(format!(
                            "--audience is required with --preset {other} (your app's client id or API identifier there)"
                        )));
                    }
                    // A preset's JWKS URL gives way to an explicit key file.
                    let jwks_uri = public_key_file.is_none().then_some(p.jwks_uri);
                    (p.name.to_owned(), Some(p.issuer), jwks_uri)
                }
            };
            let issuer = issuer.ok_or_else(|| AppError::Usage("--issuer is required for custom providers".into()))?;
            let algorithms = if algorithms.is_empty() { vec!["RS256".to_owned()] } else { algorithms };
            let keys = match (jwks_uri, public_key_file) {
                (Some(uri), None) => KeySource::JwksUri(uri),
                (None, Some(path)) => {
                    let pem = std::fs::read_to_string(&path).map_err(|source| AppError::Io {
                        context: format!("cannot read {}", path.display()),
                        source,
                    })?;
                    if !agora_oauth::check_static_key(&pem, &algorithms) {
                        return Err(AppError::Usage(
                            "the public key does not parse for the accepted algorithms".into(),
                        ));
                    }
                    KeySource::Pem(pem)
                }
                _ => return Err(AppError::Usage("give exactly one of --jwks-uri and --public-key-file".into())),
            };
            agora_core::scope::Scopes::parse(&default_scopes).map_err(|e| usage(&e))?;
            let provider = IdentityProvider {
                id: uuid::Uuid::new_v4().to_string(),
                client_id: client,
                name: name.unwrap_or(preset_label),
                issuer,
                audience,
                keys,
                algorithms,
                default_scopes,
                max_token_lifetime,
                link_by_email,
            };
            provider.validate().map_err(|e| usage(&e))?;
            store.create_identity_provider(&provider, now).await?;
            println!("added provider {} ({}) to client {}", provider.id, provider.issuer, provider.client_id);
        }
        ProviderCommand::List { client } => {
            for p in store.identity_providers(client.as_deref()).await? {
                let keys = match &p.keys {
                    KeySource::JwksUri(uri) => uri.clone(),
                    KeySource::Pem(_) => "static PEM key".to_owned(),
                };
                println!("{}\t{}\t{}\t{}\t{}\t{}", p.id, p.client_id, p.name, p.issuer, keys, p.algorithms.join(","));
            }
        }
        ProviderCommand::Remove { id } => {
            if !store.delete_identity_provider(&id).await? {
                return Err(AppError::Usage(format!("no provider {id}")));
            }
            println!("removed provider {id}");
        }
    }
    Ok(())
}

fn pairs(values: &[String], what: &str) -> Result<std::collections::BTreeMap<String, String>, AppError> {
    values
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
            _ => Err(AppError::Usage(format!("{what} `{pair}` must look like NAME=VALUE"))),
        })
        .collect()
}

async fn server_command(store: &agora_store::Store, command: ServerCommand, now: i64) -> Result<(), AppError> {
    use agora_store::{HttpProtocol, UpstreamServer, UpstreamTransport};
    match command {
        ServerCommand::Add {
            name,
            url,
            sse_url,
            headers,
            command,
            args,
            env,
            prefix,
            no_prefix,
            timeout_ms,
            service,
        } => {
            let valid_name = |s: &str| {
                !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            };
            if !valid_name(&name) {
                return Err(AppError::Usage("--name may hold letters, digits, - and _ (at most 64)".into()));
            }
            let remote = match (url, sse_url) {
                (Some(url), None) => Some((url, HttpProtocol::Streamable)),
                (None, Some(url)) => Some((url, HttpProtocol::LegacySse)),
                _ => None,
            };
            let transport = match (remote, command) {
                (Some((url, protocol)), None) => {
                    let parsed = url::Url::parse(&url).map_err(|e| AppError::Usage(format!("the URL: {e}")))?;
                    if !matches!(parsed.scheme(), "http" | "https") {
                        return Err(AppError::Usage("the URL must be http(s)".into()));
                    }
                    UpstreamTransport::Http { url, headers: pairs(&headers, "--header")?, protocol }
                }
                (None, Some(command)) => UpstreamTransport::Stdio { command, args, env: pairs(&env, "--env")? },
                _ => return Err(AppError::Usage("give exactly one of --url, --sse-url and --command".into())),
            };
            let tool_prefix = if no_prefix { None } else { Some(prefix.unwrap_or_else(|| name.clone())) };
            if tool_prefix.as_deref().is_some_and(|p| !valid_name(p)) {
                return Err(AppError::Usage("--prefix may hold letters, digits, - and _".into()));
            }
            if !(100..=600_000).contains(&timeout_ms) {
                return Err(AppError::Usage("--timeout-ms must be between 100 and 600000".into()));
            }
            let server = UpstreamServer {
                id: uuid::Uuid::new_v4().to_string(),
                name,
                transport,
                tool_prefix,
                timeout_ms,
                service,
            };
            store.create_upstream(&server, now).await?;
            println!("added upstream {} ({})", server.name, server.id);
        }
        ServerCommand::List => {
            for server in store.upstreams().await? {
                let target = match &server.transport {
                    UpstreamTransport::Http { url, .. } => url.clone(),
                    UpstreamTransport::Stdio { command, args, .. } => format!("{command} {}", args.join(" ")),
                };
                println!(
                    "{}\t{}\t{}\t{}",
                    server.id,
                    server.name,
                    server.tool_prefix.unwrap_or_default(),
                    target.trim()
                );
            }
        }
        ServerCommand::Remove { name } => {
            if !store.delete_upstream(&name).await? {
                return Err(AppError::Usage(format!("no upstream {name}")));
            }
            println!("removed upstream {name}");
        }
    }
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
            let kid = keys.rotate(alg, now, agora_oauth::retired_key_retention(config.access_token_ttl)).await?;
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
