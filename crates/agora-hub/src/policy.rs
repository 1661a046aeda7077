//! Who may use which tools: for each hub request, the account (from the token's client), the
//! admission (member, public access, invitation), the profile and the tool selections of its
//! toolkits. The rules are `agora_core`'s; this module feeds them from the store through a cache
//! that is dropped whenever the database's policy epoch moves (checked once a second), so a known
//! caller costs no query.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use agora_core::account::{Account, Admission, Invitation, Membership, Role, admit};
use agora_core::profile::{Profile, ProfileRequest, SelectionError, select_profile};
use agora_core::toolkit::ToolSelection;
use agora_store::{PersonalToken, Store, StoreError};
use tokio::sync::RwLock;

/// Who is calling, as the bearer token says.
#[derive(Clone, Debug)]
pub struct Principal {
    /// The user (or, for a client's own token, the client).
    pub subject: String,
    /// The OAuth client the token was issued to; none for personal tokens and anonymous tests.
    pub client_id: Option<String>,
    /// The profile the token is locked to: its `civic_profile` claim, or a personal token's profile.
    pub locked_profile: Option<String>,
}

/// What a hub request may use.
#[derive(Clone, Debug)]
pub struct Scope {
    pub account_id: String,
    pub profile_id: String,
    pub locked: bool,
    pub role: Role,
    pub client_id: Option<String>,
    pub selections: Arc<Vec<ToolSelection>>,
    /// The policy epoch this was decided under (none before the first poll): what is cached
    /// with it is good until the epoch moves.
    pub epoch: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The caller may not use this (403, with the reason).
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<SelectionError> for PolicyError {
    fn from(e: SelectionError) -> Self {
        PolicyError::Forbidden(e.to_string())
    }
}

/// An account as the hub needs it, read once per policy epoch.
struct AccountView {
    account: Account,
    profiles: Vec<Profile>,
    members: HashMap<String, Membership>,
    invitations: Vec<Invitation>,
    selections: HashMap<String, Arc<Vec<ToolSelection>>>,
}

#[derive(Default)]
struct Cached {
    epoch: Option<i64>,
    /// By client id ("" for callers without one: the default account).
    accounts_by_client: HashMap<String, Arc<AccountView>>,
    accounts: HashMap<String, Arc<AccountView>>,
    personal_tokens: HashMap<String, Option<PersonalToken>>,
    /// A profile's account (`None`: no such profile), for personal tokens.
    profile_accounts: HashMap<String, Option<String>>,
    /// This process's own policy changes when the epoch was last read.
    local_changes: u64,
}

pub struct Policy {
    store: Store,
    cached: RwLock<Cached>,
}

/// What a request asks for beyond its token: profile headers and query parameters.
#[derive(Default, Debug)]
pub struct Asked {
    pub header: Option<String>,
    pub query_profile: Option<String>,
    pub query_account: Option<String>,
    pub query_lock: Option<bool>,
}

impl Policy {
    pub fn new(store: Store) -> Self {
        Self { store, cached: RwLock::new(Cached::default()) }
    }

    /// Forgets everything when the policy epoch moves; runs until the process ends.
    pub async fn watch(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.check_epoch().await {
                tracing::warn!(error = %e, "cannot read the policy epoch");
            }
        }
    }

    /// Reads the epoch, and starts over if it moved.
    async fn check_epoch(&self) -> Result<(), StoreError> {
        // Counted before reading, so a change committed meanwhile is checked again next time.
        let local_changes = self.store.local_policy_changes();
        let epoch = self.store.policy_epoch().await?;
        let mut cached = self.cached.write().await;
        if cached.epoch != Some(epoch) {
            *cached = Cached { epoch: Some(epoch), ..Cached::default() };
        }
        cached.local_changes = local_changes;
        Ok(())
    }

    async fn load(&self, account: Account) -> Result<Arc<AccountView>, StoreError> {
        let now = agora_oauth::now();
        let profiles = self.store.profiles(&account.id).await?;
        let mut selections = HashMap::new();
        for profile in &profiles {
            selections.insert(profile.id.clone(), Arc::new(self.store.profile_selections(&profile.id).await?));
        }
        let members = self.store.members(&account.id).await?.into_iter().map(|m| (m.user_id.clone(), m)).collect();
        let invitations = self.store.invitations(&account.id, now).await?;
        Ok(Arc::new(AccountView { account, profiles, members, invitations, selections }))
    }

    async fn account_for_client(&self, client_id: Option<&str>) -> Result<Option<Arc<AccountView>>, StoreError> {
        let key = client_id.unwrap_or_default();
        if let Some(view) = self.cached.read().await.accounts_by_client.get(key) {
            return Ok(Some(view.clone()));
        }
        let Some(account) = self.store.account_for_client(key).await? else { return Ok(None) };
        let view = self.load(account).await?;
        let mut cached = self.cached.write().await;
        cached.accounts.insert(view.account.id.clone(), view.clone());
        cached.accounts_by_client.insert(key.to_owned(), view.clone());
        Ok(Some(view))
    }

    async fn account(&self, account_id: &str) -> Result<Option<Arc<AccountView>>, StoreError> {
        if let Some(view) = self.cached.read().await.accounts.get(account_id) {
            return Ok(Some(view.clone()));
        }
        let Some(account) = self.store.account(account_id).await? else { return Ok(None) };
        let view = self.load(account).await?;
        self.cached.write().await.accounts.insert(account_id.to_owned(), view.clone());
        Ok(Some(view))
    }

    async fn profile_account(&self, profile_id: &str) -> Result<Option<String>, StoreError> {
        if let Some(account_id) = self.cached.read().await.profile_accounts.get(profile_id) {
            return Ok(account_id.clone());
        }
        let account_id = self.store.profile(profile_id).await?.map(|p| p.account_id);
        self.cached.write().await.profile_accounts.insert(profile_id.to_owned(), account_id.clone());
        Ok(account_id)
    }

    /// A personal token by its digest: live, or `None` (unknown, revoked or expired).
    pub async fn personal_token(&self, digest: &str) -> Result<Option<PersonalToken>, StoreError> {
        let known = self.cached.read().await.personal_tokens.get(digest).cloned();
        let token = match known {
            Some(token) => token,
            None => {
                let token = self.store.personal_token_by_digest(digest).await?;
                self.cached.write().await.personal_tokens.insert(digest.to_owned(), token.clone());
                token
            }
        };
        Ok(token.filter(|t| !t.revoked && t.expires_at > agora_oauth::now()))
    }

    /// The account, admission, profile and tools of a request.
    pub async fn scope(&self, principal: &Principal, asked: &Asked) -> Result<Scope, PolicyError> {
        // A change made through this process (its API, connect pages) applies at once; one made
        // elsewhere within the poll interval.
        if self.cached.read().await.local_changes != self.store.local_policy_changes() {
            self.check_epoch().await?;
        }
        let epoch = self.cached.read().await.epoch;
        // A personal token's account is its profile's; any other caller's, its client's.
        let view = match (&principal.client_id, &principal.locked_profile) {
            (None, Some(profile)) => match self.profile_account(profile).await? {
                Some(account_id) => self.account(&account_id).await?,
                None => None,
            },
            (client, _) => self.account_for_client(client.as_deref()).await?,
        };
        let view =
            view.ok_or_else(|| PolicyError::Forbidden("this application is not connected to an account".into()))?;
        let membership = view.members.get(&principal.subject);
        let admission = match membership {
            Some(m) => Admission::Member(m.role),
            // A personal token speaks for a member; one who left loses it.
            None if principal.client_id.is_none() && principal.locked_profile.is_some() => {
                return Err(PolicyError::Forbidden(
                    "the owner of this token is no longer a member of its account".into(),
                ));
            }
            None if view.account.public_access => Admission::Public,
            None => {
                let user = self.store.active_user(&principal.subject).await?;
                let caller = agora_core::account::Caller {
                    user_id: &principal.subject,
                    client_id: principal.client_id.as_deref().unwrap_or_default(),
                    email: user.as_ref().and_then(|u| u.email.as_deref()),
                    email_verified: user.as_ref().is_some_and(|u| u.email_verified),
                };
                let admission = admit(Some(&view.account), None, &view.invitations, &caller, agora_oauth::now())
                    .map_err(|refusal| PolicyError::Forbidden(refusal.to_string()))?;
                if let Admission::Invited { invitation_id, .. } = &admission
                    && let Some(invitation) = view.invitations.iter().find(|i| &i.id == invitation_id)
                {
                    // Accepting makes a member; every replica's cache learns it from the epoch
                    // (this one on its next request).
                    self.store.accept_invitation(invitation, &principal.subject, agora_oauth::now()).await?;
                }
                admission
            }
        };
        let request = ProfileRequest {
            claim: principal.locked_profile.as_deref(),
            header: asked.header.as_deref(),
            query_profile: asked.query_profile.as_deref(),
            query_account: asked.query_account.as_deref(),
            query_lock: asked.query_lock,
        };
        let member_default = membership.and_then(|m| m.default_profile.as_deref());
        let selection = select_profile(&view.account, &view.profiles, admission.role(), member_default, &request)?;
        let selections = view.selections.get(&selection.profile_id).cloned().unwrap_or_default();
        Ok(Scope {
            account_id: view.account.id.clone(),
            profile_id: selection.profile_id,
            locked: selection.locked,
            role: admission.role(),
            client_id: principal.client_id.clone(),
            selections,
            epoch,
        })
    }
}
