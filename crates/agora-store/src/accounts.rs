//! Accounts, their auth clients, members, invitations, profiles and toolkits. Every change bumps
//! `policy_epoch` in the same transaction, so replicas caching what the hub decides from these
//! rows know when to read them again.

use agora_core::UnixTime;
use agora_core::account::{Account, AccountKind, Invitation, Membership, Role};
use agora_core::profile::Profile;
use agora_core::toolkit::ToolSelection;
use sqlx::Row as _;
use sqlx::any::AnyArguments;
use sqlx::query::Query;

use crate::{Result, Row, Store, StoreError, conflict_as, flag};

type AnyQuery<'q> = Query<'q, sqlx::Any, AnyArguments>;

fn corrupt(table: &'static str, detail: String) -> StoreError {
    StoreError::Corrupt { table, detail }
}

fn kind_name(kind: AccountKind) -> &'static str {
    match kind {
        AccountKind::Organization => "ORGANIZATION",
        AccountKind::Personal => "PERSONAL",
    }
}

fn role(table: &'static str, row: &Row) -> Result<Role> {
    let raw: String = row.try_get("role")?;
    Role::parse(&raw).ok_or_else(|| corrupt(table, format!("role {raw}")))
}

fn account_from_row(row: &Row) -> Result<Account> {
    let kind: String = row.try_get("kind")?;
    Ok(Account {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        kind: match kind.as_str() {
            "ORGANIZATION" => AccountKind::Organization,
            "PERSONAL" => AccountKind::Personal,
            other => return Err(corrupt("accounts", format!("kind {other}"))),
        },
        public_access: flag(row, "public_access")?,
        default_profile: row.try_get("default_profile")?,
    })
}

fn membership_from_row(row: &Row) -> Result<Membership> {
    Ok(Membership {
        account_id: row.try_get("account_id")?,
        user_id: row.try_get("user_id")?,
        role: role("memberships", row)?,
        default_profile: row.try_get("default_profile")?,
    })
}

fn invitation_from_row(row: &Row) -> Result<Invitation> {
    Ok(Invitation {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        email: row.try_get("email")?,
        role: role("invitations", row)?,
        client_id: row.try_get("client_id")?,
        expires_at: row.try_get("expires_at")?,
    })
}

fn profile_from_row(row: &Row) -> Result<Profile> {
    Ok(Profile {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        name: row.try_get("name")?,
        alias: row.try_get("alias")?,
    })
}

fn selection_from_row(row: &Row) -> Result<ToolSelection> {
    let fixed: String = row.try_get("fixed_arguments")?;
    Ok(ToolSelection {
        server: row.try_get("server")?,
        tool: row.try_get("tool")?,
        alias: row.try_get("alias")?,
        description: row.try_get("description")?,
        fixed_arguments: serde_json::from_str(&fixed).map_err(|e| corrupt("toolkit_tools", e.to_string()))?,
        hidden: flag(row, "hidden")?,
    })
}

/// A toolkit: a named set of tool selections in an account.
#[derive(Clone, Debug, PartialEq)]
pub struct Toolkit {
    pub id: String,
    pub account_id: String,
    pub name: String,
}

pub struct NewAccount {
    pub id: String,
    pub name: String,
    pub kind: AccountKind,
    pub public_access: bool,
    pub is_default: bool,
}

const ACCOUNT_COLUMNS: &str = "id, name, kind, public_access, default_profile";

impl Store {
    /// Bumps the policy epoch within `tx` and commits: other replicas notice within their poll,
    /// this process at once (see [`Store::local_policy_changes`]).
    pub(crate) async fn commit_policy_change(&self, mut tx: sqlx::Transaction<'_, sqlx::Any>) -> Result<()> {
        sqlx::query("UPDATE policy_epoch SET epoch = epoch + 1 WHERE id = 1").execute(&mut *tx).await?;
        tx.commit().await?;
        self.local_policy_changes.fetch_add(1, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// How many policy changes this process has committed: a cache that saw a different count
    /// re-reads the epoch before trusting itself.
    pub fn local_policy_changes(&self) -> u64 {
        self.local_policy_changes.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Runs one statement that changes policy data, bumping the policy epoch with it.
    pub(crate) async fn policy_change(&self, query: AnyQuery<'_>, what: &'static str) -> Result<u64> {
        let mut tx = self.pool().begin().await?;
        let done = query.execute(&mut *tx).await.map_err(conflict_as(what))?;
        self.commit_policy_change(tx).await?;
        Ok(done.rows_affected())
    }

    /// Changes whenever anything the hub's admission, profile or toolkit decisions read changes.
    pub async fn policy_epoch(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT epoch FROM policy_epoch WHERE id = 1").fetch_one(self.pool()).await?)
    }

    pub async fn create_account(&self, new: NewAccount, now: UnixTime) -> Result<Account> {
        let query = sqlx::query(
            "INSERT INTO accounts (id, name, kind, public_access, default_profile, is_default, created_at) \
             VALUES ($1, $2, $3, $4, NULL, $5, $6)",
        )
        .bind(new.id.clone())
        .bind(new.name.clone())
        .bind(kind_name(new.kind))
        .bind(i64::from(new.public_access))
        .bind(i64::from(new.is_default))
        .bind(now);
        self.policy_change(query, "account").await?;
        Ok(Account {
            id: new.id,
            name: new.name,
            kind: new.kind,
            public_access: new.public_access,
            default_profile: None,
        })
    }

    pub async fn account(&self, id: &str) -> Result<Option<Account>> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .map(|r| account_from_row(&r))
            .transpose()
    }

    pub async fn account_by_name(&self, name: &str) -> Result<Option<Account>> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE name = $1");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .fetch_optional(self.pool())
            .await?
            .map(|r| account_from_row(&r))
            .transpose()
    }

    pub async fn accounts(&self) -> Result<Vec<Account>> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY name");
        sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(self.pool()).await?.iter().map(account_from_row).collect()
    }

    /// The account a client belongs to: the one it is linked to, else the default account.
    pub async fn account_for_client(&self, client_id: &str) -> Result<Option<Account>> {
        let sql = format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = (SELECT account_id FROM account_clients WHERE client_id = $1) \
             OR (is_default = 1 AND NOT EXISTS (SELECT 1 FROM account_clients WHERE client_id = $1)) ORDER BY is_default LIMIT 1"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(client_id)
            .fetch_optional(self.pool())
            .await?
            .map(|r| account_from_row(&r))
            .transpose()
    }

    pub async fn set_public_access(&self, account_id: &str, on: bool) -> Result<bool> {
        let query = sqlx::query("UPDATE accounts SET public_access = $2 WHERE id = $1")
            .bind(account_id.to_owned())
            .bind(i64::from(on));
        Ok(self.policy_change(query, "account").await? == 1)
    }

    pub async fn set_account_default_profile(&self, account_id: &str, profile_id: &str) -> Result<bool> {
        let query = sqlx::query(
            "UPDATE accounts SET default_profile = $2 WHERE id = $1 \
             AND EXISTS (SELECT 1 FROM profiles WHERE id = $2 AND account_id = $1)",
        )
        .bind(account_id.to_owned())
        .bind(profile_id.to_owned());
        Ok(self.policy_change(query, "account").await? == 1)
    }

    /// Links a client to an account; a client already linked elsewhere is a conflict.
    pub async fn link_client(
        &self,
        account_id: &str,
        client_id: &str,
        secret: Option<&str>,
        now: UnixTime,
    ) -> Result<()> {
        let sealed = secret.map(|s| self.secrets().seal(&format!("account_client:{client_id}"), s.as_bytes()));
        let query = sqlx::query(
            "INSERT INTO account_clients (client_id, account_id, sealed_secret, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(client_id.to_owned())
        .bind(account_id.to_owned())
        .bind(sealed)
        .bind(now);
        self.policy_change(query, "client link").await?;
        Ok(())
    }

    pub async fn unlink_client(&self, account_id: &str, client_id: &str) -> Result<bool> {
        let query = sqlx::query("DELETE FROM account_clients WHERE client_id = $1 AND account_id = $2")
            .bind(client_id.to_owned())
            .bind(account_id.to_owned());
        Ok(self.policy_change(query, "client link").await? == 1)
    }

    pub async fn linked_clients(&self, account_id: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT client_id FROM account_clients WHERE account_id = $1 ORDER BY client_id")
            .bind(account_id)
            .fetch_all(self.pool())
            .await?)
    }

    pub async fn add_member(&self, account_id: &str, user_id: &str, role: Role, now: UnixTime) -> Result<()> {
        let query = sqlx::query(
            "INSERT INTO memberships (account_id, user_id, role, default_profile, created_at) VALUES ($1, $2, $3, NULL, $4)",
        )
        .bind(account_id.to_owned())
        .bind(user_id.to_owned())
        .bind(role.as_str())
        .bind(now);
        self.policy_change(query, "membership").await?;
        Ok(())
    }

    pub async fn membership(&self, account_id: &str, user_id: &str) -> Result<Option<Membership>> {
        sqlx::query(
            "SELECT account_id, user_id, role, default_profile FROM memberships WHERE account_id = $1 AND user_id = $2",
        )
        .bind(account_id)
        .bind(user_id)
        .fetch_optional(self.pool())
        .await?
        .map(|r| membership_from_row(&r))
        .transpose()
    }

    pub async fn members(&self, account_id: &str) -> Result<Vec<Membership>> {
        sqlx::query("SELECT account_id, user_id, role, default_profile FROM memberships WHERE account_id = $1 ORDER BY created_at")
            .bind(account_id)
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(membership_from_row)
            .collect()
    }

    /// Changes a member's role, or removes them (`None`), unless that would leave the account
    /// without an OWNER. `Ok(false)`: no such member; `Err(Conflict)`: the last OWNER.
    pub async fn change_member(&self, account_id: &str, user_id: &str, role: Option<Role>) -> Result<bool> {
        let mut tx = self.pool().begin().await?;
        let current: Option<String> =
            sqlx::query_scalar("SELECT role FROM memberships WHERE account_id = $1 AND user_id = $2")
                .bind(account_id)
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(current) = current else { return Ok(false) };
        if current == Role::Owner.as_str() && role != Some(Role::Owner) {
            let owners: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM memberships WHERE account_id = $1 AND role = 'OWNER'")
                    .bind(account_id)
                    .fetch_one(&mut *tx)
                    .await?;
            if owners <= 1 {
                return Err(StoreError::Conflict("the account's last OWNER"));
            }
        }
        match role {
            Some(role) => {
                sqlx::query("UPDATE memberships SET role = $3 WHERE account_id = $1 AND user_id = $2")
                    .bind(account_id)
                    .bind(user_id)
                    .bind(role.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
            None => {
                sqlx::query("DELETE FROM memberships WHERE account_id = $1 AND user_id = $2")
                    .bind(account_id)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        self.commit_policy_change(tx).await?;
        Ok(true)
    }

    /// The accounts `user_id` belongs to, with their role.
    pub async fn accounts_of(&self, user_id: &str) -> Result<Vec<(Account, Role)>> {
        let rows = sqlx::query(
            "SELECT a.id, a.name, a.kind, a.public_access, a.default_profile, m.role FROM accounts a \
             JOIN memberships m ON m.account_id = a.id WHERE m.user_id = $1 ORDER BY a.name",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|row| Ok((account_from_row(row)?, role("memberships", row)?))).collect()
    }

    pub async fn create_invitation(&self, invitation: &Invitation, now: UnixTime) -> Result<()> {
        let query = sqlx::query(
            "INSERT INTO invitations (id, account_id, email, role, client_id, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(invitation.id.clone())
        .bind(invitation.account_id.clone())
        .bind(invitation.email.clone())
        .bind(invitation.role.as_str())
        .bind(invitation.client_id.clone())
        .bind(invitation.expires_at)
        .bind(now);
        self.policy_change(query, "invitation").await?;
        Ok(())
    }

    /// Pending (unexpired) invitations of an account.
    pub async fn invitations(&self, account_id: &str, now: UnixTime) -> Result<Vec<Invitation>> {
        sqlx::query(
            "SELECT id, account_id, email, role, client_id, expires_at FROM invitations \
             WHERE account_id = $1 AND expires_at > $2 ORDER BY created_at",
        )
        .bind(account_id)
        .bind(now)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(invitation_from_row)
        .collect()
    }

    pub async fn revoke_invitation(&self, account_id: &str, invitation_id: &str) -> Result<bool> {
        let query = sqlx::query("DELETE FROM invitations WHERE id = $1 AND account_id = $2")
            .bind(invitation_id.to_owned())
            .bind(account_id.to_owned());
        Ok(self.policy_change(query, "invitation").await? == 1)
    }

    /// Spends an invitation on `user_id`, who becomes a member with its role. False when it was
    /// already spent (by another replica, say) or has expired.
    pub async fn accept_invitation(&self, invitation: &Invitation, user_id: &str, now: UnixTime) -> Result<bool> {
        let mut tx = self.pool().begin().await?;
        let spent = sqlx::query("DELETE FROM invitations WHERE id = $1 AND expires_at > $2")
            .bind(&invitation.id)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if spent != 1 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO memberships (account_id, user_id, role, default_profile, created_at) VALUES ($1, $2, $3, NULL, $4) \
             ON CONFLICT (account_id, user_id) DO NOTHING",
        )
        .bind(&invitation.account_id)
        .bind(user_id)
        .bind(invitation.role.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        self.commit_policy_change(tx).await?;
        Ok(true)
    }

    pub async fn create_profile(&self, profile: &Profile, now: UnixTime) -> Result<()> {
        let query =
            sqlx::query("INSERT INTO profiles (id, account_id, name, alias, created_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(profile.id.clone())
                .bind(profile.account_id.clone())
                .bind(profile.name.clone())
                .bind(profile.alias.clone())
                .bind(now);
        self.policy_change(query, "profile").await?;
        Ok(())
    }

    pub async fn profiles(&self, account_id: &str) -> Result<Vec<Profile>> {
        sqlx::query("SELECT id, account_id, name, alias FROM profiles WHERE account_id = $1 ORDER BY name")
            .bind(account_id)
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(profile_from_row)
            .collect()
    }

    pub async fn profile(&self, id: &str) -> Result<Option<Profile>> {
        sqlx::query("SELECT id, account_id, name, alias FROM profiles WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .map(|r| profile_from_row(&r))
            .transpose()
    }

    pub async fn create_toolkit(&self, toolkit: &Toolkit, now: UnixTime) -> Result<()> {
        let query = sqlx::query("INSERT INTO toolkits (id, account_id, name, created_at) VALUES ($1, $2, $3, $4)")
            .bind(toolkit.id.clone())
            .bind(toolkit.account_id.clone())
            .bind(toolkit.name.clone())
            .bind(now);
        self.policy_change(query, "toolkit").await?;
        Ok(())
    }

    pub async fn toolkits(&self, account_id: &str) -> Result<Vec<Toolkit>> {
        let rows = sqlx::query("SELECT id, account_id, name FROM toolkits WHERE account_id = $1 ORDER BY name")
            .bind(account_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Toolkit { id: r.try_get("id")?, account_id: r.try_get("account_id")?, name: r.try_get("name")? })
            })
            .collect()
    }

    /// Adds (or replaces) one selection of a toolkit.
    pub async fn put_toolkit_tool(&self, toolkit_id: &str, selection: &ToolSelection) -> Result<()> {
        let fixed = serde_json::Value::Object(selection.fixed_arguments.clone()).to_string();
        let query = sqlx::query(
            "INSERT INTO toolkit_tools (toolkit_id, server, tool, alias, description, fixed_arguments, hidden) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (toolkit_id, server, tool) DO UPDATE SET \
             alias = excluded.alias, description = excluded.description, fixed_arguments = excluded.fixed_arguments, \
             hidden = excluded.hidden",
        )
        .bind(toolkit_id.to_owned())
        .bind(selection.server.clone())
        .bind(selection.tool.clone())
        .bind(selection.alias.clone())
        .bind(selection.description.clone())
        .bind(fixed)
        .bind(i64::from(selection.hidden));
        self.policy_change(query, "toolkit tool").await?;
        Ok(())
    }

    /// Puts a toolkit in a profile; both must belong to the same account.
    pub async fn attach_toolkit(&self, profile_id: &str, toolkit_id: &str) -> Result<bool> {
        let query = sqlx::query(
            "INSERT INTO profile_toolkits (profile_id, toolkit_id) SELECT p.id, t.id FROM profiles p JOIN toolkits t \
             ON t.account_id = p.account_id WHERE p.id = $1 AND t.id = $2 ON CONFLICT (profile_id, toolkit_id) DO NOTHING",
        )
        .bind(profile_id.to_owned())
        .bind(toolkit_id.to_owned());
        Ok(self.policy_change(query, "profile toolkit").await? == 1)
    }

    /// Every tool selection of a profile's toolkits, toolkits in name order.
    pub async fn profile_selections(&self, profile_id: &str) -> Result<Vec<ToolSelection>> {
        sqlx::query(
            "SELECT tt.server, tt.tool, tt.alias, tt.description, tt.fixed_arguments, tt.hidden \
             FROM profile_toolkits pt JOIN toolkits t ON t.id = pt.toolkit_id JOIN toolkit_tools tt ON tt.toolkit_id = t.id \
             WHERE pt.profile_id = $1 ORDER BY t.name, tt.server, tt.tool",
        )
        .bind(profile_id)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(selection_from_row)
        .collect()
    }
}
