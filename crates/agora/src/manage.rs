//! `agora admin account|profile|toolkit|token …`: the operator's side of the management service
//! (`agora_api::Service`), which checks and audits every change as the management API does.

use agora_api::{Actor, InvitationRequest, Service};
use agora_core::account::Role;
use agora_core::toolkit::ToolSelection;
use clap::Subcommand;

use crate::AppError;

#[derive(Subcommand)]
pub enum AccountCommand {
    /// Create an organization account.
    Create {
        #[arg(long)]
        name: String,
        /// Let anyone signed in through the account's clients use it, as END_USER.
        #[arg(long)]
        public_access: bool,
    },
    /// List accounts.
    List,
    /// Create a new auth connection: a client linked to the account, public access on; prints its credentials once.
    Connect {
        #[arg(long)]
        account: String,
        #[arg(long)]
        name: String,
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
    },
    /// Link an existing OAuth client to the account (a client belongs to at most one account).
    Link {
        #[arg(long)]
        account: String,
        #[arg(long)]
        client: String,
    },
    /// Turn public access on or off.
    PublicAccess {
        #[arg(long)]
        account: String,
        #[arg(long, action = clap::ArgAction::Set)]
        enabled: bool,
    },
    /// Make an existing user a member.
    Member {
        #[arg(long)]
        account: String,
        #[arg(long)]
        email: String,
        /// OWNER, ADMIN, MEMBER or END_USER.
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
    /// Invite an email address, to come through one of the account's clients.
    Invite {
        #[arg(long)]
        account: String,
        #[arg(long)]
        email: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        #[arg(long)]
        client: String,
        #[arg(long, default_value_t = 7)]
        days: i64,
    },
    /// Print the account's audit log (tab-separated: time, actor, action, detail).
    Audit {
        #[arg(long)]
        account: String,
        /// Only entries of the last this many seconds.
        #[arg(long, default_value_t = 86_400)]
        since_seconds: i64,
    },
}

#[derive(Subcommand)]
pub enum ProfileCommand {
    /// Create a profile in an account.
    Create {
        #[arg(long)]
        account: String,
        #[arg(long)]
        name: String,
        /// Short name for the `profile` query parameter.
        #[arg(long)]
        alias: Option<String>,
        /// Make it the account's default profile.
        #[arg(long)]
        default: bool,
    },
    /// List an account's profiles.
    List {
        #[arg(long)]
        account: String,
    },
}

#[derive(Subcommand)]
pub enum ToolkitCommand {
    /// Create a toolkit in an account.
    Create {
        #[arg(long)]
        account: String,
        #[arg(long)]
        name: String,
    },
    /// Select a tool (or `*`) of an upstream server (or `*`), with overrides.
    Tool {
        #[arg(long)]
        account: String,
        #[arg(long)]
        toolkit: String,
        #[arg(long)]
        server: String,
        #[arg(long)]
        tool: String,
        /// Name clients see instead.
        #[arg(long)]
        alias: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// NAME=JSON, injected on every call and hidden from the schema (repeatable).
        #[arg(long = "fixed")]
        fixed: Vec<String>,
        /// Hide the tool: listed nowhere, not callable.
        #[arg(long)]
        hidden: bool,
    },
    /// Put a toolkit in a profile.
    Attach {
        #[arg(long)]
        account: String,
        #[arg(long)]
        toolkit: String,
        #[arg(long)]
        profile: String,
    },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a personal access token for a member, locked to one profile; printed once.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        account: String,
        #[arg(long)]
        profile: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value_t = 30)]
        days: i64,
    },
    /// List a user's personal tokens.
    List {
        #[arg(long)]
        email: String,
    },
    /// Revoke one of a user's personal tokens.
    Revoke {
        #[arg(long)]
        email: String,
        #[arg(long)]
        id: String,
    },
}

fn parse_role(raw: &str) -> Result<Role, String> {
    Role::parse(&raw.to_ascii_uppercase()).ok_or_else(|| "use OWNER, ADMIN, MEMBER or END_USER".to_owned())
}

const OPERATOR: Actor = Actor::Operator;

async fn user_id(store: &agora_store::Store, email: &str) -> Result<String, AppError> {
    let normalized = agora_core::email::normalize(email).map_err(|e| AppError::Usage(e.to_string()))?;
    Ok(store.user_by_email(&normalized).await?.ok_or_else(|| AppError::Usage(format!("no user {email}")))?.id)
}

pub async fn account(store: agora_store::Store, command: AccountCommand, now: i64) -> Result<(), AppError> {
    let service = Service::new(store.clone());
    match command {
        AccountCommand::Create { name, public_access } => {
            let account = service.create_account(&OPERATOR, &name, public_access, now).await?;
            println!("created account {} ({})", account.name, account.id);
        }
        AccountCommand::List => {
            for account in store.accounts().await? {
                let access = if account.public_access { "public" } else { "members" };
                println!("{}\t{}\t{access}\t{}", account.id, account.name, account.default_profile.unwrap_or_default());
            }
        }
        AccountCommand::Connect { account, name, redirect_uris } => {
            let account = service.find_account(&OPERATOR, &account).await?;
            let (id, secret) = service.create_connection(&OPERATOR, &account.id, &name, redirect_uris, now).await?;
            println!("CIVIC_CLIENT_ID={id}");
            println!("CIVIC_CLIENT_SECRET={secret}");
        }
        AccountCommand::Link { account, client } => {
            let account = service.find_account(&OPERATOR, &account).await?;
            service.link_client(&OPERATOR, &account.id, &client, None, now).await?;
            println!("linked client {client} to {}", account.name);
        }
        AccountCommand::PublicAccess { account, enabled } => {
            let account = service.find_account(&OPERATOR, &account).await?;
            service.set_public_access(&OPERATOR, &account.id, enabled, now).await?;
            println!("public access of {} is {}", account.name, if enabled { "on" } else { "off" });
        }
        AccountCommand::Member { account, email, role } => {
            let account = service.find_account(&OPERATOR, &account).await?;
            service.add_member(&OPERATOR, &account.id, &email, role, now).await?;
            println!("{email} is {} of {}", role.as_str(), account.name);
        }
        AccountCommand::Invite { account, email, role, client, days } => {
            let account = service.find_account(&OPERATOR, &account).await?;
            let asked = InvitationRequest { email: &email, role, client_id: &client, days };
            let invitation = service.invite(&OPERATOR, &account.id, asked, now).await?;
            println!("invited {} ({})", invitation.email, invitation.id);
        }
        AccountCommand::Audit { account, since_seconds } => {
            let account = service.find_account(&OPERATOR, &account).await?;
            for entry in service.audit_log(&OPERATOR, &account.id, now - since_seconds, now + 1).await? {
                println!("{}\t{}\t{}\t{}", entry.at, entry.actor, entry.action, entry.detail);
            }
        }
    }
    Ok(())
}

pub async fn profile(store: agora_store::Store, command: ProfileCommand, now: i64) -> Result<(), AppError> {
    let service = Service::new(store.clone());
    match command {
        ProfileCommand::Create { account, name, alias, default } => {
            let account = service.find_account(&OPERATOR, &account).await?;
            let profile = service.create_profile(&OPERATOR, &account.id, &name, alias.as_deref(), default, now).await?;
            println!("CIVIC_PROFILE_ID={}", profile.id);
        }
        ProfileCommand::List { account } => {
            let account = service.find_account(&OPERATOR, &account).await?;
            for profile in store.profiles(&account.id).await? {
                println!("{}\t{}\t{}", profile.id, profile.name, profile.alias.unwrap_or_default());
            }
        }
    }
    Ok(())
}

pub async fn toolkit(store: agora_store::Store, command: ToolkitCommand, now: i64) -> Result<(), AppError> {
    let service = Service::new(store);
    match command {
        ToolkitCommand::Create { account, name } => {
            let account = service.find_account(&OPERATOR, &account).await?;
            let toolkit = service.create_toolkit(&OPERATOR, &account.id, &name, now).await?;
            println!("created toolkit {} ({})", toolkit.name, toolkit.id);
        }
        ToolkitCommand::Tool { account, toolkit, server, tool, alias, description, fixed, hidden } => {
            let account = service.find_account(&OPERATOR, &account).await?;
            let mut fixed_arguments = serde_json::Map::new();
            for pair in fixed {
                let (name, value) = pair
                    .split_once('=')
                    .ok_or_else(|| AppError::Usage(format!("--fixed `{pair}` must be NAME=JSON")))?;
                let value = serde_json::from_str(value)
                    .map_err(|e| AppError::Usage(format!("--fixed {name}: not JSON ({e}); quote strings: '\"x\"'")))?;
                fixed_arguments.insert(name.to_owned(), value);
            }
            let selection = ToolSelection { server, tool, alias, description, fixed_arguments, hidden };
            service.put_toolkit_tool(&OPERATOR, &account.id, &toolkit, selection, now).await?;
            println!("updated toolkit {toolkit}");
        }
        ToolkitCommand::Attach { account, toolkit, profile } => {
            let account = service.find_account(&OPERATOR, &account).await?;
            service.attach_toolkit(&OPERATOR, &account.id, &profile, &toolkit, now).await?;
            println!("toolkit {toolkit} is in profile {profile}");
        }
    }
    Ok(())
}

pub async fn token(store: agora_store::Store, command: TokenCommand, now: i64) -> Result<(), AppError> {
    let service = Service::new(store.clone());
    match command {
        TokenCommand::Create { email, account, profile, name, days } => {
            let user = user_id(&store, &email).await?;
            let account = service.find_account(&OPERATOR, &account).await?;
            let profile = service.find_profile(&OPERATOR, &account.id, &profile).await?;
            let (token, secret) =
                service.create_personal_token(&OPERATOR, &user, &profile.id, &name, days, now).await?;
            println!("created personal token {} (expires at {})", token.id, token.expires_at);
            println!("AGORA_PERSONAL_TOKEN={secret}");
        }
        TokenCommand::List { email } => {
            for token in store.personal_tokens(&user_id(&store, &email).await?).await? {
                let status = if token.revoked {
                    "revoked"
                } else if token.expires_at <= now {
                    "expired"
                } else {
                    "active"
                };
                println!("{}\t{}\t{}\t{}\t{status}", token.id, token.name, token.profile_id, token.expires_at);
            }
        }
        TokenCommand::Revoke { email, id } => {
            let user = user_id(&store, &email).await?;
            service.revoke_personal_token(&OPERATOR, &user, &id, now).await?;
            println!("revoked {id}");
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum CredentialCommand {
    /// List an account's credentials (metadata only; secrets are never shown).
    List {
        #[arg(long)]
        account: String,
    },
    /// Add the organization's API key for a service (read from stdin), shared with its members.
    Add {
        #[arg(long)]
        account: String,
        #[arg(long)]
        service: String,
    },
    /// Assign a credential to a profile (or, with --unassign, take it away).
    Assign {
        #[arg(long)]
        account: String,
        #[arg(long)]
        credential: String,
        #[arg(long)]
        profile: String,
        #[arg(long)]
        unassign: bool,
    },
    /// Remove a credential, revoking it at the provider when it offers revocation.
    Disconnect {
        #[arg(long)]
        account: String,
        #[arg(long)]
        credential: String,
    },
}

pub async fn credential(store: agora_store::Store, command: CredentialCommand, now: i64) -> Result<(), AppError> {
    let service = Service::new(store);
    match command {
        CredentialCommand::List { account } => {
            let account = service.find_account(&OPERATOR, &account).await?;
            for c in service.credentials(&OPERATOR, &account.id).await? {
                let owner = c.owner.unwrap_or_else(|| "(organization)".into());
                println!("{}\t{}\t{owner}\t{}\t{}", c.id, c.service, c.profiles.join(","), c.updated_at);
            }
        }
        CredentialCommand::Add { account, service: name } => {
            let account = service.find_account(&OPERATOR, &account).await?;
            let mut key = String::new();
            std::io::stdin()
                .read_line(&mut key)
                .map_err(|source| AppError::Io { context: "cannot read the API key".into(), source })?;
            let id = service.add_shared_api_key(&OPERATOR, &account.id, &name, &key, now).await?;
            println!("added the organization's {name} credential ({id})");
        }
        CredentialCommand::Assign { account, credential, profile, unassign } => {
            let account = service.find_account(&OPERATOR, &account).await?;
            let profile = service.find_profile(&OPERATOR, &account.id, &profile).await?;
            service.assign_credential(&OPERATOR, &account.id, &credential, &profile.id, !unassign, now).await?;
            println!(
                "{} {credential} {} profile {}",
                if unassign { "unassigned" } else { "assigned" },
                if unassign { "from" } else { "to" },
                profile.name
            );
        }
        CredentialCommand::Disconnect { account, credential } => {
            let account = service.find_account(&OPERATOR, &account).await?;
            service.disconnect(&OPERATOR, &account.id, &credential, now).await?;
            println!("disconnected {credential}");
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum ServiceCommand {
    /// Add a service: OAuth 2.0 (--authorize-url, --token-url, --client-id, secret on stdin with
    /// --client-secret-stdin) or an API key the user pastes (--api-key).
    Add {
        #[arg(long)]
        account: String,
        /// What upstream servers name with `agora admin server add --service`.
        #[arg(long)]
        name: String,
        #[arg(long, conflicts_with_all = ["authorize_url", "token_url", "client_id", "basic"])]
        api_key: bool,
        /// A user name and password, sent as `base64(user:password)` (use --header-template "Basic {token}").
        #[arg(long, conflicts_with_all = ["authorize_url", "token_url", "client_id"])]
        basic: bool,
        #[arg(long)]
        authorize_url: Option<String>,
        #[arg(long)]
        token_url: Option<String>,
        #[arg(long)]
        client_id: Option<String>,
        #[arg(long)]
        client_secret_stdin: bool,
        #[arg(long, default_value = "")]
        scopes: String,
        /// The provider's token revocation endpoint (RFC 7009), used when a credential is removed.
        #[arg(long)]
        revocation_url: Option<String>,
        /// Header remote upstreams receive.
        #[arg(long, default_value = "Authorization")]
        header_name: String,
        /// Its value; `{token}` is replaced by the credential.
        #[arg(long, default_value = "Bearer {token}")]
        header_template: String,
        /// Environment variable local upstreams receive the credential in.
        #[arg(long)]
        env: Option<String>,
    },
}

pub async fn service(store: agora_store::Store, command: ServiceCommand, now: i64) -> Result<(), AppError> {
    use agora_store::{Service as ThirdParty, ServiceKind};
    let service = Service::new(store);
    match command {
        ServiceCommand::Add {
            account,
            name,
            api_key,
            basic,
            authorize_url,
            token_url,
            client_id,
            client_secret_stdin,
            scopes,
            revocation_url,
            header_name,
            header_template,
            env,
        } => {
            let kind = match (api_key || basic, authorize_url, token_url, client_id) {
                (true, None, None, None) if basic => ServiceKind::Basic,
                (true, None, None, None) => ServiceKind::ApiKey,
                (false, Some(authorize_url), Some(token_url), Some(client_id)) => {
                    let client_secret = if client_secret_stdin {
                        let mut line = String::new();
                        std::io::stdin().read_line(&mut line).map_err(|source| AppError::Io {
                            context: "cannot read the client secret".into(),
                            source,
                        })?;
                        Some(line.trim().to_owned()).filter(|s| !s.is_empty())
                    } else {
                        None
                    };
                    ServiceKind::OAuth2 { authorize_url, token_url, client_id, client_secret, scopes, revocation_url }
                }
                _ => {
                    return Err(AppError::Usage(
                        "give --api-key, --basic, or --authorize-url, --token-url and --client-id".into(),
                    ));
                }
            };
            let account = service.find_account(&OPERATOR, &account).await?;
            let third_party = ThirdParty {
                id: String::new(),
                account_id: String::new(),
                name: name.clone(),
                kind,
                header_name,
                header_template,
                env_name: env,
            };
            service.create_service(&OPERATOR, &account.id, third_party, now).await?;
            println!("added service {name} to {}", account.name);
        }
    }
    Ok(())
}
