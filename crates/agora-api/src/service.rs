//! The operations behind `agora admin` and `/api/v1`. Each checks the actor's role in the account
//! it touches (an unknown id and another account's id get the same `NotFound`, so nothing leaks),
//! and each change is written to the account's audit log with who made it.

use agora_core::UnixTime;
use agora_core::account::{AccountKind, Invitation, Role};
use agora_core::client::{AuthMethod, ClientOrigin, GrantType};
use agora_core::profile::{PERSONAL_TOKEN_PREFIX, Profile};
use agora_core::toolkit::ToolSelection;
use agora_store::secret::{random_token, token_digest};
use agora_store::{AuditEntry, NewAccount, NewClient, PersonalToken, Store, StoreError, Toolkit};
use serde_json::{Value, json};

/// The longest a personal token may live.
pub const MAX_PERSONAL_TOKEN_DAYS: i64 = 30;

/// Who asks for an operation.
#[derive(Clone, Debug)]
pub enum Actor {
    /// The operator at the command line: every right, recorded as `operator`.
    Operator,
    /// A signed-in user: the rights of their role in the account concerned.
    User(String),
}

impl Actor {
    fn name(&self) -> &str {
        match self {
            Actor::Operator => "operator",
            Actor::User(id) => id,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Unknown, or not the actor's to see: the same answer either way.
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    Invalid(String),
    #[error("{0} already exists")]
    Conflict(&'static str),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => ServiceError::Conflict(what),
            other => ServiceError::Store(other),
        }
    }
}

pub type Result<T> = std::result::Result<T, ServiceError>;

/// Who to invite, as what, through which of the account's clients, for how many days.
pub struct InvitationRequest<'a> {
    pub email: &'a str,
    pub role: Role,
    pub client_id: &'a str,
    pub days: i64,
}

/// A header name as HTTP allows it (letters, digits and `!#$%&'*+-.^_`|~`).
struct HeaderCheck;

impl std::str::FromStr for HeaderCheck {
    type Err = ();
    fn from_str(name: &str) -> std::result::Result<Self, ()> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if !name.is_empty() && name.chars().all(allowed) { Ok(HeaderCheck) } else { Err(()) }
    }
}

/// What an operation needs of the actor's role.
#[derive(Clone, Copy)]
enum Need {
    /// OWNER or ADMIN: Integration settings, members, invitations, profiles, toolkits, audit.
    Manage,
    /// Any team member (not END_USER).
    Member,
}

pub struct Service {
    store: Store,
    provider: agora_oauth::provider::ProviderClient,
}

fn valid_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ServiceError::Invalid("a name needs 1 to 100 printable characters".into()));
    }
    Ok(name.to_owned())
}

impl Service {
    pub fn new(store: Store) -> Self {
        Self { store, provider: agora_oauth::provider::ProviderClient::new() }
    }

    /// The actor's role in `account_id`, if it allows `need`. Someone with no place in the account
    /// learns nothing about it (`NotFound`).
    async fn authorize(&self, actor: &Actor, account_id: &str, need: Need) -> Result<Option<Role>> {
        if self.store.account(account_id).await?.is_none() {
            return Err(ServiceError::NotFound("account"));
        }
        let Actor::User(user_id) = actor else { return Ok(None) };
        let role = match self.store.membership(account_id, user_id).await? {
            Some(m) if m.role != Role::EndUser => m.role,
            _ => return Err(ServiceError::NotFound("account")),
        };
        match need {
            Need::Manage if !role.may_manage_integration() => {
                Err(ServiceError::Forbidden("this needs the OWNER or ADMIN role"))
            }
            _ => Ok(Some(role)),
        }
    }

    async fn audit(&self, actor: &Actor, account_id: &str, action: &str, detail: Value, now: UnixTime) -> Result<()> {
        let entry = AuditEntry {
            id: uuid::Uuid::new_v4().to_string(),
            account_id: Some(account_id.to_owned()),
            at: now,
            actor: actor.name().to_owned(),
            action: action.to_owned(),
            detail,
        };
        Ok(self.store.append_audit(&[entry]).await?)
    }

    /// Finds an account by id or name, as the actor may see it.
    pub async fn find_account(&self, actor: &Actor, id_or_name: &str) -> Result<agora_core::account::Account> {
        let account = match self.store.account(id_or_name).await? {
            Some(account) => account,
            None => self.store.account_by_name(id_or_name).await?.ok_or(ServiceError::NotFound("account"))?,
        };
        self.authorize(actor, &account.id, Need::Member).await?;
        Ok(account)
    }

    /// A new organization; a user creating it becomes its OWNER.
    pub async fn create_account(
        &self,
        actor: &Actor,
        name: &str,
        public_access: bool,
        now: UnixTime,
    ) -> Result<agora_core::account::Account> {
        let new = NewAccount {
            id: uuid::Uuid::new_v4().to_string(),
            name: valid_name(name)?,
            kind: AccountKind::Organization,
            public_access,
            is_default: false,
        };
        let account = self.store.create_account(new, now).await?;
        if let Actor::User(user_id) = actor {
            self.store.add_member(&account.id, user_id, Role::Owner, now).await?;
        }
        self.audit(
            actor,
            &account.id,
            "account.create",
            json!({"after": {"name": account.name, "public_access": public_access}}),
            now,
        )
        .await?;
        Ok(account)
    }

    pub async fn set_public_access(&self, actor: &Actor, account_id: &str, on: bool, now: UnixTime) -> Result<()> {
        self.authorize(actor, account_id, Need::Manage).await?;
        self.store.set_public_access(account_id, on).await?;
        self.audit(actor, account_id, "account.public_access", json!({"after": on}), now).await
    }

    /// "Link existing": links a client to the account. Whoever links a confidential client proves
    /// it is theirs with its secret (kept, sealed, for the account's owners); only the operator
    /// links public clients, which have none. A client belongs to at most one account.
    pub async fn link_client(
        &self,
        actor: &Actor,
        account_id: &str,
        client_id: &str,
        secret: Option<&str>,
        now: UnixTime,
    ) -> Result<()> {
        self.authorize(actor, account_id, Need::Manage).await?;
        let (client, stored) = self
            .store
            .client_and_secret_digest(client_id)
            .await?
            .filter(|(c, _)| !c.revoked)
            .ok_or(ServiceError::NotFound("client"))?;
        let proven = match (stored, secret) {
            (Some(stored), Some(secret)) => token_digest(secret) == stored,
            (None, None) => client.is_public(),
            _ => false,
        };
        if !proven && !matches!(actor, Actor::Operator) {
            // The same answer as an unknown client: ids of clients one cannot prove are not confirmed.
            return Err(ServiceError::NotFound("client"));
        }
        self.store.link_client(account_id, client_id, secret.filter(|_| proven), now).await?;
        self.audit(actor, account_id, "client.link", json!({"client": client_id}), now).await
    }

    /// "Create new auth connection": a new confidential client (code flow, refresh, client
    /// credentials, token exchange) linked to the account, with public access turned on. The
    /// secret is returned once and kept only as a digest.
    pub async fn create_connection(
        &self,
        actor: &Actor,
        account_id: &str,
        name: &str,
        redirect_uris: Vec<String>,
        now: UnixTime,
    ) -> Result<(String, String)> {
        self.authorize(actor, account_id, Need::Manage).await?;
        for uri in &redirect_uris {
            agora_core::client::validate_redirect_uri(uri).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        }
        let secret = random_token("agora_cs_");
        let client = self
            .store
            .create_client(
                NewClient {
                    id: uuid::Uuid::new_v4().to_string(),
                    name: valid_name(name)?,
                    secret_digest: Some(token_digest(&secret)),
                    auth_method: AuthMethod::ClientSecretBasic,
                    redirect_uris,
                    post_logout_redirect_uris: Vec::new(),
                    grant_types: vec![
                        GrantType::AuthorizationCode,
                        GrantType::RefreshToken,
                        GrantType::ClientCredentials,
                        GrantType::TokenExchange,
                    ],
                    origin: ClientOrigin::Admin,
                },
                now,
            )
            .await?;
        self.store.link_client(account_id, &client.id, None, now).await?;
        self.store.set_public_access(account_id, true).await?;
        let detail = json!({"client": client.id, "name": client.name, "after": {"public_access": true}});
        self.audit(actor, account_id, "connection.create", detail, now).await?;
        Ok((client.id, secret))
    }

    pub async fn add_member(
        &self,
        actor: &Actor,
        account_id: &str,
        email: &str,
        role: Role,
        now: UnixTime,
    ) -> Result<()> {
        let actor_role = self.authorize(actor, account_id, Need::Manage).await?;
        if role == Role::Owner && actor_role.is_some_and(|r| r != Role::Owner) {
            return Err(ServiceError::Forbidden("only an OWNER can make an OWNER"));
        }
        let email = agora_core::email::normalize(email).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        let user = self.store.user_by_email(&email).await?.ok_or(ServiceError::NotFound("user"))?;
        self.store.add_member(account_id, &user.id, role, now).await?;
        self.audit(actor, account_id, "member.add", json!({"after": {"user": user.id, "role": role.as_str()}}), now)
            .await
    }

    pub async fn invite(
        &self,
        actor: &Actor,
        account_id: &str,
        asked: InvitationRequest<'_>,
        now: UnixTime,
    ) -> Result<Invitation> {
        let InvitationRequest { email, role, client_id, days } = asked;
        let actor_role = self.authorize(actor, account_id, Need::Manage).await?;
        if role == Role::Owner && actor_role.is_some_and(|r| r != Role::Owner) {
            return Err(ServiceError::Forbidden("only an OWNER can invite an OWNER"));
        }
        if !(1..=90).contains(&days) {
            return Err(ServiceError::Invalid("an invitation lasts 1 to 90 days".into()));
        }
        if !self.store.linked_clients(account_id).await?.iter().any(|c| c == client_id) {
            return Err(ServiceError::NotFound("client"));
        }
        let invitation = Invitation {
            id: uuid::Uuid::new_v4().to_string(),
            account_id: account_id.to_owned(),
            email: agora_core::email::normalize(email).map_err(|e| ServiceError::Invalid(e.to_string()))?,
            role,
            client_id: client_id.to_owned(),
            expires_at: now + days * 86_400,
        };
        self.store.create_invitation(&invitation, now).await?;
        let detail = json!({"after": {"email": invitation.email, "role": role.as_str(), "client": client_id}});
        self.audit(actor, account_id, "invitation.create", detail, now).await?;
        Ok(invitation)
    }

    pub async fn create_profile(
        &self,
        actor: &Actor,
        account_id: &str,
        name: &str,
        alias: Option<&str>,
        make_default: bool,
        now: UnixTime,
    ) -> Result<Profile> {
        self.authorize(actor, account_id, Need::Manage).await?;
        if alias.is_some_and(|a| a.is_empty() || !a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        {
            return Err(ServiceError::Invalid("an alias holds letters, digits, - and _".into()));
        }
        let profile = Profile {
            id: uuid::Uuid::new_v4().to_string(),
            account_id: account_id.to_owned(),
            name: valid_name(name)?,
            alias: alias.map(str::to_owned),
        };
        self.store.create_profile(&profile, now).await?;
        if make_default {
            self.store.set_account_default_profile(account_id, &profile.id).await?;
        }
        let detail =
            json!({"after": {"id": profile.id, "name": profile.name, "alias": profile.alias, "default": make_default}});
        self.audit(actor, account_id, "profile.create", detail, now).await?;
        Ok(profile)
    }

    /// A profile of the account, by id or alias.
    pub async fn find_profile(&self, actor: &Actor, account_id: &str, id_or_alias: &str) -> Result<Profile> {
        self.authorize(actor, account_id, Need::Member).await?;
        self.store
            .profiles(account_id)
            .await?
            .into_iter()
            .find(|p| p.id == id_or_alias || p.alias.as_deref() == Some(id_or_alias) || p.name == id_or_alias)
            .ok_or(ServiceError::NotFound("profile"))
    }

    pub async fn create_toolkit(&self, actor: &Actor, account_id: &str, name: &str, now: UnixTime) -> Result<Toolkit> {
        self.authorize(actor, account_id, Need::Manage).await?;
        let toolkit = Toolkit {
            id: uuid::Uuid::new_v4().to_string(),
            account_id: account_id.to_owned(),
            name: valid_name(name)?,
        };
        self.store.create_toolkit(&toolkit, now).await?;
        self.audit(
            actor,
            account_id,
            "toolkit.create",
            json!({"after": {"id": toolkit.id, "name": toolkit.name}}),
            now,
        )
        .await?;
        Ok(toolkit)
    }

    async fn find_toolkit(&self, account_id: &str, id_or_name: &str) -> Result<Toolkit> {
        self.store
            .toolkits(account_id)
            .await?
            .into_iter()
            .find(|t| t.id == id_or_name || t.name == id_or_name)
            .ok_or(ServiceError::NotFound("toolkit"))
    }

    pub async fn put_toolkit_tool(
        &self,
        actor: &Actor,
        account_id: &str,
        toolkit: &str,
        selection: ToolSelection,
        now: UnixTime,
    ) -> Result<()> {
        self.authorize(actor, account_id, Need::Manage).await?;
        let toolkit = self.find_toolkit(account_id, toolkit).await?;
        if selection.server.is_empty() || selection.tool.is_empty() {
            return Err(ServiceError::Invalid("a selection names a server and a tool (or *)".into()));
        }
        self.store.put_toolkit_tool(&toolkit.id, &selection).await?;
        let detail = json!({"toolkit": toolkit.id, "after": {
            "server": selection.server, "tool": selection.tool, "alias": selection.alias,
            "description": selection.description, "fixed_arguments": selection.fixed_arguments.keys().collect::<Vec<_>>(),
            "hidden": selection.hidden,
        }});
        self.audit(actor, account_id, "toolkit.tool.put", detail, now).await
    }

    pub async fn attach_toolkit(
        &self,
        actor: &Actor,
        account_id: &str,
        profile: &str,
        toolkit: &str,
        now: UnixTime,
    ) -> Result<()> {
        self.authorize(actor, account_id, Need::Manage).await?;
        let profile = self.find_profile(actor, account_id, profile).await?;
        let toolkit = self.find_toolkit(account_id, toolkit).await?;
        self.store.attach_toolkit(&profile.id, &toolkit.id).await?;
        self.audit(
            actor,
            account_id,
            "profile.toolkit.attach",
            json!({"profile": profile.id, "toolkit": toolkit.id}),
            now,
        )
        .await
    }

    /// A personal access token of `user_id` for one of their account's profiles, shown once.
    pub async fn create_personal_token(
        &self,
        actor: &Actor,
        user_id: &str,
        profile_id: &str,
        name: &str,
        days: i64,
        now: UnixTime,
    ) -> Result<(PersonalToken, String)> {
        if let Actor::User(me) = actor
            && me != user_id
        {
            return Err(ServiceError::Forbidden("personal tokens are made by their owner"));
        }
        if !(1..=MAX_PERSONAL_TOKEN_DAYS).contains(&days) {
            return Err(ServiceError::Invalid(format!("a personal token lives 1 to {MAX_PERSONAL_TOKEN_DAYS} days")));
        }
        let profile = self.store.profile(profile_id).await?.ok_or(ServiceError::NotFound("profile"))?;
        match self.store.membership(&profile.account_id, user_id).await? {
            Some(m) if m.role != Role::EndUser => {}
            _ => return Err(ServiceError::NotFound("profile")),
        }
        let secret = random_token(PERSONAL_TOKEN_PREFIX);
        let token = PersonalToken {
            id: uuid::Uuid::new_v4().to_string(),
            user_id: user_id.to_owned(),
            profile_id: profile.id.clone(),
            name: valid_name(name)?,
            expires_at: now + days * 86_400,
            revoked: false,
            created_at: now,
        };
        self.store.create_personal_token(&token, &token_digest(&secret)).await?;
        let detail =
            json!({"after": {"id": token.id, "user": user_id, "profile": profile.id, "expires_at": token.expires_at}});
        self.audit(actor, &profile.account_id, "personal_token.create", detail, now).await?;
        Ok((token, secret))
    }

    pub async fn revoke_personal_token(
        &self,
        actor: &Actor,
        user_id: &str,
        token_id: &str,
        now: UnixTime,
    ) -> Result<()> {
        if let Actor::User(me) = actor
            && me != user_id
        {
            return Err(ServiceError::NotFound("personal token"));
        }
        let token = self
            .store
            .personal_tokens(user_id)
            .await?
            .into_iter()
            .find(|t| t.id == token_id)
            .ok_or(ServiceError::NotFound("personal token"))?;
        self.store.revoke_personal_token(user_id, token_id, now).await?;
        if let Some(profile) = self.store.profile(&token.profile_id).await? {
            self.audit(
                actor,
                &profile.account_id,
                "personal_token.revoke",
                json!({"id": token_id, "user": user_id}),
                now,
            )
            .await?;
        }
        Ok(())
    }

    /// The accounts the actor belongs to, with its role (the operator: every account, as OWNER).
    pub async fn my_accounts(&self, actor: &Actor) -> Result<Vec<(agora_core::account::Account, Role)>> {
        match actor {
            Actor::Operator => Ok(self.store.accounts().await?.into_iter().map(|a| (a, Role::Owner)).collect()),
            Actor::User(user_id) => Ok(self.store.accounts_of(user_id).await?),
        }
    }

    pub async fn account_details(
        &self,
        actor: &Actor,
        account_id: &str,
    ) -> Result<(agora_core::account::Account, Vec<String>)> {
        self.authorize(actor, account_id, Need::Member).await?;
        let account = self.store.account(account_id).await?.ok_or(ServiceError::NotFound("account"))?;
        Ok((account, self.store.linked_clients(account_id).await?))
    }

    pub async fn unlink_client(&self, actor: &Actor, account_id: &str, client_id: &str, now: UnixTime) -> Result<()> {
        self.authorize(actor, account_id, Need::Manage).await?;
        if !self.store.unlink_client(account_id, client_id).await? {
            return Err(ServiceError::NotFound("client"));
        }
        self.audit(actor, account_id, "client.unlink", json!({"client": client_id}), now).await
    }

    pub async fn members(&self, actor: &Actor, account_id: &str) -> Result<Vec<agora_core::account::Membership>> {
        self.authorize(actor, account_id, Need::Member).await?;
        Ok(self.store.members(account_id).await?)
    }

    /// Changes a member's role (`Some`) or removes them (`None`). Only an OWNER touches OWNERs or
    /// makes one; the last OWNER stays.
    pub async fn change_member(
        &self,
        actor: &Actor,
        account_id: &str,
        user_id: &str,
        role: Option<Role>,
        now: UnixTime,
    ) -> Result<()> {
        let actor_role = self.authorize(actor, account_id, Need::Manage).await?;
        let before = self.store.membership(account_id, user_id).await?.ok_or(ServiceError::NotFound("member"))?;
        if actor_role.is_some_and(|r| r != Role::Owner) && (before.role == Role::Owner || role == Some(Role::Owner)) {
            return Err(ServiceError::Forbidden("only an OWNER can change an OWNER or make one"));
        }
        match self.store.change_member(account_id, user_id, role).await {
            Ok(true) => {}
            Ok(false) => return Err(ServiceError::NotFound("member")),
            Err(StoreError::Conflict(_)) => {
                return Err(ServiceError::Invalid("an account keeps at least one OWNER".into()));
            }
            Err(e) => return Err(e.into()),
        }
        let detail = json!({"user": user_id, "before": before.role.as_str(), "after": role.map(Role::as_str)});
        self.audit(actor, account_id, if role.is_some() { "member.role" } else { "member.remove" }, detail, now).await
    }

    pub async fn invitations(&self, actor: &Actor, account_id: &str, now: UnixTime) -> Result<Vec<Invitation>> {
        self.authorize(actor, account_id, Need::Manage).await?;
        Ok(self.store.invitations(account_id, now).await?)
    }

    pub async fn revoke_invitation(
        &self,
        actor: &Actor,
        account_id: &str,
        invitation_id: &str,
        now: UnixTime,
    ) -> Result<()> {
        self.authorize(actor, account_id, Need::Manage).await?;
        if !self.store.revoke_invitation(account_id, invitation_id).await? {
            return Err(ServiceError::NotFound("invitation"));
        }
        self.audit(actor, account_id, "invitation.revoke", json!({"id": invitation_id}), now).await
    }

    pub async fn profiles(&self, actor: &Actor, account_id: &str) -> Result<Vec<Profile>> {
        self.authorize(actor, account_id, Need::Member).await?;
        Ok(self.store.profiles(account_id).await?)
    }

    pub async fn toolkits(&self, actor: &Actor, account_id: &str) -> Result<Vec<Toolkit>> {
        self.authorize(actor, account_id, Need::Member).await?;
        Ok(self.store.toolkits(account_id).await?)
    }

    pub async fn personal_tokens(&self, actor: &Actor, user_id: &str) -> Result<Vec<PersonalToken>> {
        if let Actor::User(me) = actor
            && me != user_id
        {
            return Err(ServiceError::NotFound("user"));
        }
        Ok(self.store.personal_tokens(user_id).await?)
    }

    /// A third-party service of the account: how its credential is obtained and handed to upstreams.
    pub async fn create_service(
        &self,
        actor: &Actor,
        account_id: &str,
        mut service: agora_store::Service,
        now: UnixTime,
    ) -> Result<()> {
        self.authorize(actor, account_id, Need::Manage).await?;
        service.id = uuid::Uuid::new_v4().to_string();
        service.account_id = account_id.to_owned();
        let token_name = |s: &str| {
            !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        if !token_name(&service.name) {
            return Err(ServiceError::Invalid("a service name holds letters, digits, - and _".into()));
        }
        if !service.header_template.contains("{token}") || service.header_name.parse::<HeaderCheck>().is_err() {
            return Err(ServiceError::Invalid("the header needs a valid name and a template with {token}".into()));
        }
        if service.env_name.as_deref().is_some_and(|e| !token_name(e)) {
            return Err(ServiceError::Invalid("the environment variable name holds letters, digits and _".into()));
        }
        if let agora_store::ServiceKind::OAuth2 { authorize_url, token_url, client_id, .. } = &service.kind {
            let web = |u: &str| u.starts_with("https://") || u.starts_with("http://");
            if !web(authorize_url) || !web(token_url) || client_id.is_empty() {
                return Err(ServiceError::Invalid(
                    "OAuth services need http(s) authorize and token URLs and a client id".into(),
                ));
            }
        }
        self.store.create_service(&service, now).await?;
        let detail = json!({"after": {"id": service.id, "name": service.name, "header": service.header_name, "env": service.env_name}});
        self.audit(actor, account_id, "service.create", detail, now).await
    }

    pub async fn services(&self, actor: &Actor, account_id: &str) -> Result<Vec<agora_store::Service>> {
        self.authorize(actor, account_id, Need::Member).await?;
        Ok(self.store.services(account_id).await?)
    }

    /// Credentials of the account (metadata, never secrets): an OWNER or ADMIN sees all; a member
    /// their own and the organization's.
    pub async fn credentials(&self, actor: &Actor, account_id: &str) -> Result<Vec<agora_store::CredentialMeta>> {
        let role = self.authorize(actor, account_id, Need::Member).await?;
        let all = self.store.credentials_of_account(account_id).await?;
        Ok(match (actor, role) {
            (Actor::User(me), Some(role)) if !role.may_manage_integration() => {
                all.into_iter().filter(|c| c.owner.as_deref().is_none_or(|owner| owner == me)).collect()
            }
            _ => all,
        })
    }

    /// A credential the actor may change: their own, or (OWNER or ADMIN) the organization's.
    async fn own_credential(
        &self,
        actor: &Actor,
        account_id: &str,
        credential_id: &str,
    ) -> Result<agora_store::CredentialMeta> {
        let role = self.authorize(actor, account_id, Need::Member).await?;
        let credential = self
            .store
            .credentials_of_account(account_id)
            .await?
            .into_iter()
            .find(|c| c.id == credential_id)
            .ok_or(ServiceError::NotFound("credential"))?;
        let allowed = match (actor, &credential.owner) {
            (Actor::Operator, _) => true,
            (Actor::User(me), Some(owner)) => me == owner,
            (Actor::User(_), None) => role.is_some_and(Role::may_manage_integration),
        };
        if !allowed {
            return Err(ServiceError::NotFound("credential"));
        }
        Ok(credential)
    }

    /// The organization's credential for an API-key service, shared with its members (OWNER or ADMIN).
    pub async fn add_shared_api_key(
        &self,
        actor: &Actor,
        account_id: &str,
        service: &str,
        key: &str,
        now: UnixTime,
    ) -> Result<String> {
        self.authorize(actor, account_id, Need::Manage).await?;
        let service =
            self.store.service_by_name(account_id, service).await?.ok_or(ServiceError::NotFound("service"))?;
        if service.kind != agora_store::ServiceKind::ApiKey {
            return Err(ServiceError::Invalid("OAuth services are connected through their connect link".into()));
        }
        if key.trim().is_empty() {
            return Err(ServiceError::Invalid("the API key is empty".into()));
        }
        let secret = agora_store::CredentialSecret { token: key.trim().to_owned(), refresh_token: None };
        let id = self.store.add_credential(&service.id, None, &secret, None, None, now).await?;
        self.audit(actor, account_id, "credential.add", json!({"id": id, "service": service.name, "owner": null}), now)
            .await?;
        Ok(id)
    }

    /// Assigns a credential to a profile of the same account, or unassigns it.
    pub async fn assign_credential(
        &self,
        actor: &Actor,
        account_id: &str,
        credential_id: &str,
        profile_id: &str,
        assigned: bool,
        now: UnixTime,
    ) -> Result<()> {
        let credential = self.own_credential(actor, account_id, credential_id).await?;
        let profile = self.store.profile(profile_id).await?.filter(|p| p.account_id == account_id);
        let profile = profile.ok_or(ServiceError::NotFound("profile"))?;
        self.store.set_assignment(&credential.id, &profile.id, assigned).await?;
        let action = if assigned { "credential.assign" } else { "credential.unassign" };
        self.audit(actor, account_id, action, json!({"id": credential.id, "profile": profile.id}), now).await
    }

    /// Removes a credential, revoking its tokens at the provider when it offers revocation.
    pub async fn disconnect(&self, actor: &Actor, account_id: &str, credential_id: &str, now: UnixTime) -> Result<()> {
        let credential = self.own_credential(actor, account_id, credential_id).await?;
        let service = self.store.service_by_name(account_id, &credential.service).await?;
        let secret = self.store.credential_secret(&credential.id).await?;
        if let (Some(service), Some((secret, _))) = (service, secret) {
            let tokens =
                [(secret.refresh_token.as_deref(), "refresh_token"), (Some(secret.token.as_str()), "access_token")];
            for (token, hint) in tokens {
                if let Some(token) = token
                    && let Err(reason) = self.provider.revoke(&service, token, hint).await
                {
                    tracing::warn!(service = %service.name, %reason, "revoking a credential at its provider failed");
                }
            }
        }
        self.store.delete_credential(&credential.id).await?;
        self.audit(
            actor,
            account_id,
            "credential.disconnect",
            json!({"id": credential.id, "service": credential.service}),
            now,
        )
        .await
    }

    /// The account's audit entries in `[from, until)`.
    pub async fn audit_log(
        &self,
        actor: &Actor,
        account_id: &str,
        from: UnixTime,
        until: UnixTime,
    ) -> Result<Vec<AuditEntry>> {
        self.authorize(actor, account_id, Need::Manage).await?;
        Ok(self.store.audit(account_id, from, until, 10_000).await?)
    }
}

#[cfg(test)]
mod tests {
    use agora_store::{MasterKey, NewUser};

    use super::*;

    async fn store() -> Store {
        let dir = std::env::temp_dir().join(format!("agora-api-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Store::open(&format!("sqlite://{}?mode=rwc", dir.join("agora.db").display()), &MasterKey::generate())
            .await
            .unwrap()
    }

    async fn user(store: &Store, email: &str) -> Actor {
        let new = NewUser { email: Some(email.into()), email_verified: true, name: None, password_hash: None };
        Actor::User(store.create_user(new, 0).await.unwrap().id)
    }

    #[tokio::test]
    async fn roles_are_checked_and_other_accounts_stay_invisible() {
        let store = store().await;
        let service = Service::new(store.clone());
        let (owner, admin, member, outsider) = (
            user(&store, "owner@a.example").await,
            user(&store, "admin@a.example").await,
            user(&store, "member@a.example").await,
            user(&store, "outsider@b.example").await,
        );
        let account = service.create_account(&owner, "Acme", false, 0).await.unwrap();
        service.add_member(&owner, &account.id, "admin@a.example", Role::Admin, 0).await.unwrap();
        service.add_member(&owner, &account.id, "member@a.example", Role::Member, 0).await.unwrap();
        let theirs = service.create_account(&outsider, "Other", false, 0).await.unwrap();

        // An ADMIN cannot make anyone (itself included) an OWNER; a MEMBER manages nothing.
        assert!(matches!(
            service.add_member(&admin, &account.id, "admin@a.example", Role::Owner, 0).await,
            Err(ServiceError::Forbidden(_))
        ));
        assert!(matches!(
            service.create_profile(&member, &account.id, "P", None, false, 0).await,
            Err(ServiceError::Forbidden(_))
        ));
        assert!(service.create_profile(&admin, &account.id, "P", Some("p"), false, 0).await.is_ok());
        assert!(matches!(
            service.create_profile(&admin, &account.id, "P", None, false, 0).await,
            Err(ServiceError::Conflict(_))
        ));
        assert!(matches!(
            service.create_profile(&admin, &account.id, "Q", Some("bad alias"), false, 0).await,
            Err(ServiceError::Invalid(_))
        ));

        // Another account's ids answer exactly like unknown ones.
        for id in [theirs.id.as_str(), "no-such-account"] {
            assert!(matches!(
                service.create_toolkit(&owner, id, "kit", 0).await,
                Err(ServiceError::NotFound("account"))
            ));
            assert!(matches!(service.audit_log(&owner, id, 0, i64::MAX).await, Err(ServiceError::NotFound("account"))));
        }
        let profile = store.profiles(&theirs.id).await.unwrap();
        assert!(profile.is_empty());
        let other_profile = service.create_profile(&outsider, &theirs.id, "Mine", None, true, 0).await.unwrap();
        let Actor::User(member_id) = &member else { unreachable!() };
        assert!(matches!(
            service.create_personal_token(&member, member_id, &other_profile.id, "t", 1, 0).await,
            Err(ServiceError::NotFound("profile"))
        ));
        // Personal tokens: at most 30 days, made by their owner.
        let own = service.create_profile(&owner, &account.id, "Main", None, true, 0).await.unwrap();
        assert!(matches!(
            service.create_personal_token(&member, member_id, &own.id, "t", 31, 0).await,
            Err(ServiceError::Invalid(_))
        ));
        assert!(matches!(
            service.create_personal_token(&owner, member_id, &own.id, "t", 1, 0).await,
            Err(ServiceError::Forbidden(_))
        ));
        let (_, secret) = service.create_personal_token(&member, member_id, &own.id, "t", 30, 0).await.unwrap();
        assert!(secret.starts_with(PERSONAL_TOKEN_PREFIX));
        // Invitations: valid email, one of the account's clients.
        let asked = InvitationRequest { email: "not an email", role: Role::Member, client_id: "c", days: 7 };
        assert!(matches!(
            service.invite(&owner, &account.id, asked, 0).await,
            Err(ServiceError::Invalid(_) | ServiceError::NotFound(_))
        ));
        let actions: Vec<String> =
            service.audit_log(&owner, &account.id, 0, i64::MAX).await.unwrap().into_iter().map(|e| e.action).collect();
        assert!(actions.contains(&"member.add".to_owned()) && actions.contains(&"personal_token.create".to_owned()));
    }
}
