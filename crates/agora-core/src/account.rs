//! Accounts (organizations and personal accounts), roles, invitations, and the admission rule that
//! decides, for each hub request, whether and as what a caller may use an account.

use crate::UnixTime;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Owner,
    Admin,
    Member,
    /// Someone using an app built on the account (public access or invitation), not a team member.
    EndUser,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "OWNER",
            Role::Admin => "ADMIN",
            Role::Member => "MEMBER",
            Role::EndUser => "END_USER",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Role::Owner, Role::Admin, Role::Member, Role::EndUser].into_iter().find(|r| r.as_str() == raw)
    }

    /// The Integration settings (auth clients, identity providers, public access) need OWNER or ADMIN.
    pub fn may_manage_integration(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountKind {
    Organization,
    Personal,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub kind: AccountKind,
    /// Anyone signed in through one of the account's clients may use it, as `END_USER`.
    pub public_access: bool,
    /// Profile for callers who name none and have no default of their own (end users, new members).
    pub default_profile: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    pub account_id: String,
    pub user_id: String,
    pub role: Role,
    pub default_profile: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invitation {
    pub id: String,
    pub account_id: String,
    /// Normalized (lower-case) address the invitation is for.
    pub email: String,
    pub role: Role,
    /// The auth client the invited person must come through.
    pub client_id: String,
    pub expires_at: UnixTime,
}

/// Who is calling, as the verified token says.
#[derive(Clone, Copy, Debug)]
pub struct Caller<'a> {
    pub user_id: &'a str,
    pub client_id: &'a str,
    pub email: Option<&'a str>,
    pub email_verified: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// A member, with its role.
    Member(Role),
    /// A non-member let in by the account's public access.
    Public,
    /// A non-member with a pending invitation that matches; accepting it makes a member.
    Invited { invitation_id: String, role: Role },
}

impl Admission {
    pub fn role(&self) -> Role {
        match self {
            Admission::Member(role) | Admission::Invited { role, .. } => *role,
            Admission::Public => Role::EndUser,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this application is not connected to an account")]
    NoAccount,
    #[error("you are not a member of this account and have no invitation for this application")]
    NotAdmitted,
}

/// The admission rule (wire contract, "The hub"): a member gets its role; a non-member gets in as
/// `END_USER` when public access is on; otherwise only with an unexpired invitation whose email is the
/// caller's *verified* email and whose client is the caller's client.
pub fn admit(
    account: Option<&Account>,
    membership: Option<&Membership>,
    invitations: &[Invitation],
    caller: &Caller,
    now: UnixTime,
) -> Result<Admission, Refusal> {
    let account = account.ok_or(Refusal::NoAccount)?;
    if let Some(m) = membership.filter(|m| m.account_id == account.id && m.user_id == caller.user_id) {
        return Ok(Admission::Member(m.role));
    }
    if account.public_access {
        return Ok(Admission::Public);
    }
    let verified_email = caller.email.filter(|_| caller.email_verified);
    invitations
        .iter()
        .find(|i| {
            i.account_id == account.id
                && i.expires_at > now
                && i.client_id == caller.client_id
                && verified_email.is_some_and(|e| e.eq_ignore_ascii_case(&i.email))
        })
        .map(|i| Admission::Invited { invitation_id: i.id.clone(), role: i.role })
        .ok_or(Refusal::NotAdmitted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(public_access: bool) -> Account {
        Account {
            id: "acc".into(),
            name: "Acme".into(),
            kind: AccountKind::Organization,
            public_access,
            default_profile: None,
        }
    }

    fn member(role: Role) -> Membership {
        Membership { account_id: "acc".into(), user_id: "u".into(), role, default_profile: None }
    }

    fn invitation(email: &str, client: &str, expires_at: UnixTime) -> Invitation {
        Invitation {
            id: "inv".into(),
            account_id: "acc".into(),
            email: email.into(),
            role: Role::Member,
            client_id: client.into(),
            expires_at,
        }
    }

    const NOW: UnixTime = 1_000;

    #[test]
    fn admission_table() {
        let invited = [invitation("ada@example.com", "app", NOW + 100)];
        let expired = [invitation("ada@example.com", "app", NOW - 1)];
        let other_client = [invitation("ada@example.com", "other-app", NOW + 100)];
        let other_account =
            [Invitation { account_id: "elsewhere".into(), ..invitation("ada@example.com", "app", NOW + 100) }];
        let verified = Caller { user_id: "u", client_id: "app", email: Some("Ada@Example.com"), email_verified: true };
        let unverified = Caller { email_verified: false, ..verified };
        let no_email = Caller { email: None, ..verified };
        use Admission::*;
        let invited_as_member = Ok(Invited { invitation_id: "inv".into(), role: Role::Member });
        type Row<'a> =
            (&'a str, Option<Account>, Option<Membership>, &'a [Invitation], Caller<'a>, Result<Admission, Refusal>);
        let rows: Vec<Row> = vec![
            ("no linked account", None, None, &invited, verified, Err(Refusal::NoAccount)),
            ("owner", Some(account(false)), Some(member(Role::Owner)), &[], verified, Ok(Member(Role::Owner))),
            ("admin", Some(account(false)), Some(member(Role::Admin)), &[], verified, Ok(Member(Role::Admin))),
            ("member", Some(account(false)), Some(member(Role::Member)), &[], verified, Ok(Member(Role::Member))),
            (
                "end-user member",
                Some(account(false)),
                Some(member(Role::EndUser)),
                &[],
                verified,
                Ok(Member(Role::EndUser)),
            ),
            (
                "member, public on: still member",
                Some(account(true)),
                Some(member(Role::Admin)),
                &[],
                verified,
                Ok(Member(Role::Admin)),
            ),
            ("public access", Some(account(true)), None, &[], unverified, Ok(Public)),
            ("public access beats invitation", Some(account(true)), None, &invited, verified, Ok(Public)),
            ("invited", Some(account(false)), None, &invited, verified, invited_as_member),
            ("invited, unverified email", Some(account(false)), None, &invited, unverified, Err(Refusal::NotAdmitted)),
            ("invited, no email", Some(account(false)), None, &invited, no_email, Err(Refusal::NotAdmitted)),
            ("invitation expired", Some(account(false)), None, &expired, verified, Err(Refusal::NotAdmitted)),
            (
                "invitation for another client",
                Some(account(false)),
                None,
                &other_client,
                verified,
                Err(Refusal::NotAdmitted),
            ),
            (
                "invitation of another account",
                Some(account(false)),
                None,
                &other_account,
                verified,
                Err(Refusal::NotAdmitted),
            ),
            ("not invited", Some(account(false)), None, &[], verified, Err(Refusal::NotAdmitted)),
            (
                "membership of another account does not count",
                Some(account(false)),
                Some(Membership { account_id: "elsewhere".into(), ..member(Role::Owner) }),
                &[],
                verified,
                Err(Refusal::NotAdmitted),
            ),
        ];
        for (name, account, membership, invitations, caller, expected) in rows {
            assert_eq!(admit(account.as_ref(), membership.as_ref(), invitations, &caller, NOW), expected, "{name}");
        }
    }

    #[test]
    fn roles() {
        assert!(Role::Owner.may_manage_integration() && Role::Admin.may_manage_integration());
        assert!(!Role::Member.may_manage_integration() && !Role::EndUser.may_manage_integration());
        for role in [Role::Owner, Role::Admin, Role::Member, Role::EndUser] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("owner"), None);
    }
}
