//! Profiles (named sets of toolkits within an account) and the rule that picks the one a hub
//! request uses, and whether it is locked (resolves only credentials assigned to it).

use crate::account::{Account, Role};

/// Personal access tokens carry this prefix, so secret scanners can find leaked ones.
pub const PERSONAL_TOKEN_PREFIX: &str = "agora_pat_";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// A UUID: what `civic_profile`, `x-civic-profile-id` and personal tokens name.
    pub id: String,
    pub account_id: String,
    pub name: String,
    /// A short name usable in the `profile` query parameter.
    pub alias: Option<String>,
}

/// What a hub request says about its profile, strongest first.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProfileRequest<'a> {
    /// The token's `civic_profile` claim (or a personal token's profile): wins, and locks.
    pub claim: Option<&'a str>,
    /// `x-civic-profile-id` (or the legacy `x-civic-profile`) header.
    pub header: Option<&'a str>,
    /// `profile` query parameter: an id or an alias.
    pub query_profile: Option<&'a str>,
    /// `accountId` query parameter.
    pub query_account: Option<&'a str>,
    /// `lock` query parameter.
    pub query_lock: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    pub profile_id: String,
    pub locked: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    #[error("this token is locked to another profile")]
    LockedElsewhere,
    #[error("the request names two different profiles")]
    Conflict,
    #[error("accountId names another account than this application's")]
    OtherAccount,
    /// Unknown, or of another account: the same answer, so nothing leaks about other accounts.
    #[error("no such profile is available")]
    Unavailable,
    #[error("no profile is set up for you yet")]
    NoProfile,
}

fn resolve<'p>(profiles: &'p [Profile], account: &Account, name: &str) -> Result<&'p Profile, SelectionError> {
    profiles
        .iter()
        .filter(|p| p.account_id == account.id)
        .find(|p| p.id.eq_ignore_ascii_case(name) || p.alias.as_deref() == Some(name))
        .ok_or(SelectionError::Unavailable)
}

/// The profile-selection rule (wire contract, "The hub"): claim > header > query > the member's
/// default > the account's default. A claim cannot be overridden; `END_USER` is always locked.
pub fn select_profile(
    account: &Account,
    profiles: &[Profile],
    role: Role,
    member_default: Option<&str>,
    request: &ProfileRequest,
) -> Result<Selection, SelectionError> {
    if request.query_account.is_some_and(|a| a != account.id) {
        return Err(SelectionError::OtherAccount);
    }
    let header = request.header.map(|h| resolve(profiles, account, h)).transpose()?;
    let query = request.query_profile.map(|q| resolve(profiles, account, q)).transpose()?;
    if let Some(claim) = request.claim {
        let claimed = resolve(profiles, account, claim)?;
        if [header, query].into_iter().flatten().any(|named| named.id != claimed.id) {
            return Err(SelectionError::LockedElsewhere);
        }
        return Ok(Selection { profile_id: claimed.id.clone(), locked: true });
    }
    let named = match (header, query) {
        (Some(h), Some(q)) if h.id != q.id => return Err(SelectionError::Conflict),
        (Some(named), _) | (None, Some(named)) => Some(named),
        (None, None) => None,
    };
    let profile = match named {
        Some(profile) => profile,
        None => {
            let fallback = member_default.or(account.default_profile.as_deref());
            match fallback {
                Some(id) => resolve(profiles, account, id)?,
                None => return Err(SelectionError::NoProfile),
            }
        }
    };
    let locked = role == Role::EndUser || request.query_lock == Some(true);
    Ok(Selection { profile_id: profile.id.clone(), locked })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::{AccountKind, Admission, Caller, Invitation, Membership, Refusal, admit};

    const P1: &str = "11111111-1111-4111-8111-111111111111";
    const P2: &str = "22222222-2222-4222-8222-222222222222";
    const FOREIGN: &str = "33333333-3333-4333-8333-333333333333";

    fn account(public_access: bool) -> Account {
        Account {
            id: "acc".into(),
            name: "Acme".into(),
            kind: AccountKind::Organization,
            public_access,
            default_profile: Some(P1.into()),
        }
    }

    fn profiles() -> Vec<Profile> {
        vec![
            Profile { id: P1.into(), account_id: "acc".into(), name: "Default".into(), alias: Some("default".into()) },
            Profile { id: P2.into(), account_id: "acc".into(), name: "Sales".into(), alias: Some("sales".into()) },
            Profile {
                id: FOREIGN.into(),
                account_id: "other".into(),
                name: "Theirs".into(),
                alias: Some("theirs".into()),
            },
        ]
    }

    fn select(role: Role, member_default: Option<&str>, request: ProfileRequest) -> Result<Selection, SelectionError> {
        select_profile(&account(false), &profiles(), role, member_default, &request)
    }

    fn ok(profile: &str, locked: bool) -> Result<Selection, SelectionError> {
        Ok(Selection { profile_id: profile.into(), locked })
    }

    #[test]
    fn selection_precedence_and_locking() {
        let claim = ProfileRequest { claim: Some(P2), ..Default::default() };
        let header = ProfileRequest { header: Some(P2), ..Default::default() };
        let query = ProfileRequest { query_profile: Some("sales"), ..Default::default() };
        let none = ProfileRequest::default();
        let rows = [
            ("claim locks", Role::Member, None, claim, ok(P2, true)),
            ("claim locks an owner too", Role::Owner, None, claim, ok(P2, true)),
            ("header", Role::Member, None, header, ok(P2, false)),
            ("query alias", Role::Member, None, query, ok(P2, false)),
            ("query id", Role::Admin, None, ProfileRequest { query_profile: Some(P2), ..none }, ok(P2, false)),
            ("member default", Role::Member, Some(P2), none, ok(P2, false)),
            ("account default", Role::Member, None, none, ok(P1, false)),
            ("end user: its own profile, locked", Role::EndUser, Some(P2), none, ok(P2, true)),
            ("end user without one: account default, locked", Role::EndUser, None, none, ok(P1, true)),
            ("end user: header, locked", Role::EndUser, None, header, ok(P2, true)),
            ("lock=true locks", Role::Member, None, ProfileRequest { query_lock: Some(true), ..header }, ok(P2, true)),
            (
                "lock=false cannot unlock a claim",
                Role::Member,
                None,
                ProfileRequest { query_lock: Some(false), ..claim },
                ok(P2, true),
            ),
            (
                "lock=false cannot unlock an end user",
                Role::EndUser,
                None,
                ProfileRequest { query_lock: Some(false), ..none },
                ok(P1, true),
            ),
            ("claim and same header", Role::Member, None, ProfileRequest { header: Some(P2), ..claim }, ok(P2, true)),
            (
                "claim and other header",
                Role::Member,
                None,
                ProfileRequest { header: Some(P1), ..claim },
                Err(SelectionError::LockedElsewhere),
            ),
            (
                "claim and other query",
                Role::Member,
                None,
                ProfileRequest { query_profile: Some("default"), ..claim },
                Err(SelectionError::LockedElsewhere),
            ),
            (
                "header and query disagree",
                Role::Member,
                None,
                ProfileRequest { query_profile: Some("default"), ..header },
                Err(SelectionError::Conflict),
            ),
            (
                "header and query agree",
                Role::Member,
                None,
                ProfileRequest { query_profile: Some("sales"), ..header },
                ok(P2, false),
            ),
            (
                "foreign profile by header",
                Role::Owner,
                None,
                ProfileRequest { header: Some(FOREIGN), ..none },
                Err(SelectionError::Unavailable),
            ),
            (
                "foreign profile by alias",
                Role::Owner,
                None,
                ProfileRequest { query_profile: Some("theirs"), ..none },
                Err(SelectionError::Unavailable),
            ),
            (
                "foreign profile by claim",
                Role::Member,
                None,
                ProfileRequest { claim: Some(FOREIGN), ..none },
                Err(SelectionError::Unavailable),
            ),
            (
                "unknown profile",
                Role::Member,
                None,
                ProfileRequest { header: Some("nope"), ..none },
                Err(SelectionError::Unavailable),
            ),
            (
                "other accountId",
                Role::Member,
                None,
                ProfileRequest { query_account: Some("other"), ..none },
                Err(SelectionError::OtherAccount),
            ),
            ("own accountId", Role::Member, None, ProfileRequest { query_account: Some("acc"), ..none }, ok(P1, false)),
        ];
        for (name, role, member_default, request, expected) in rows {
            assert_eq!(select(role, member_default, request), expected, "{name}");
        }
        let no_default = Account { default_profile: None, ..account(false) };
        assert_eq!(
            select_profile(&no_default, &profiles(), Role::Member, None, &ProfileRequest::default()),
            Err(SelectionError::NoProfile)
        );
    }

    /// Every combination of how the caller got in × how the profile is named × the lock flag: the
    /// role comes from admission, and the selection follows the rules above for that role.
    #[test]
    fn admission_then_selection_matrix() {
        let now = 1_000;
        let caller = Caller { user_id: "u", client_id: "app", email: Some("ada@example.com"), email_verified: true };
        let invitation = Invitation {
            id: "inv".into(),
            account_id: "acc".into(),
            email: "ada@example.com".into(),
            role: Role::Member,
            client_id: "app".into(),
            expires_at: now + 60,
        };
        let membership =
            |role| Membership { account_id: "acc".into(), user_id: "u".into(), role, default_profile: Some(P2.into()) };
        type WayIn<'a> = (&'a str, Account, Option<Membership>, Vec<Invitation>, Result<Role, Refusal>);
        let ways_in: Vec<WayIn> = vec![
            ("owner", account(false), Some(membership(Role::Owner)), vec![], Ok(Role::Owner)),
            ("admin", account(false), Some(membership(Role::Admin)), vec![], Ok(Role::Admin)),
            ("member", account(false), Some(membership(Role::Member)), vec![], Ok(Role::Member)),
            ("public", account(true), None, vec![], Ok(Role::EndUser)),
            ("invited", account(false), None, vec![invitation.clone()], Ok(Role::Member)),
            ("not invited", account(false), None, vec![], Err(Refusal::NotAdmitted)),
        ];
        let namings: [(&str, ProfileRequest); 4] = [
            ("claim", ProfileRequest { claim: Some(P2), ..Default::default() }),
            ("header", ProfileRequest { header: Some(P2), ..Default::default() }),
            ("query", ProfileRequest { query_profile: Some("sales"), ..Default::default() }),
            ("default", ProfileRequest::default()),
        ];
        for (way, account, membership, invitations, expected_role) in &ways_in {
            let admitted = admit(Some(account), membership.as_ref(), invitations, &caller, now);
            assert_eq!(admitted.as_ref().map(Admission::role), expected_role.as_ref().map(|r| *r), "{way}");
            let Ok(admission) = admitted else { continue };
            let role = admission.role();
            let member_default = membership.as_ref().and_then(|m| m.default_profile.as_deref());
            for (naming, request) in &namings {
                for lock in [None, Some(false), Some(true)] {
                    let request = ProfileRequest { query_lock: lock, ..*request };
                    let selection = select_profile(account, &profiles(), role, member_default, &request).unwrap();
                    let expected_profile = if *naming == "default" && member_default.is_none() { P1 } else { P2 };
                    let expected_locked = *naming == "claim" || role == Role::EndUser || lock == Some(true);
                    assert_eq!(
                        selection,
                        Selection { profile_id: expected_profile.into(), locked: expected_locked },
                        "{way} × {naming} × lock {lock:?}"
                    );
                }
            }
        }
    }
}
