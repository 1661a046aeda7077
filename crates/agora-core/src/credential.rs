//! Which stored credential a hub call uses for a third-party service (wire contract, "Locked
//! profile"): a locked profile resolves only credentials assigned to it; an unlocked one resolves
//! any of the user's, and the organization's shared ones; the user's own wins.

/// What resolution needs to know of a stored credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialFacts {
    pub id: String,
    /// `None`: the organization's, shared with its members.
    pub owner: Option<String>,
    /// Profiles it is assigned to.
    pub profiles: Vec<String>,
    pub updated_at: crate::UnixTime,
}

/// The credential a call by `user` through `profile` uses, if any: own before shared, then the
/// most recently updated.
pub fn resolve<'c>(
    candidates: &'c [CredentialFacts],
    user: &str,
    profile: &str,
    locked: bool,
) -> Option<&'c CredentialFacts> {
    candidates
        .iter()
        .filter(|c| c.owner.as_deref().is_none_or(|owner| owner == user))
        .filter(|c| !locked || c.profiles.iter().any(|p| p == profile))
        .max_by_key(|c| (c.owner.is_some(), c.updated_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(id: &str, owner: Option<&str>, profiles: &[&str], updated_at: i64) -> CredentialFacts {
        CredentialFacts {
            id: id.into(),
            owner: owner.map(str::to_owned),
            profiles: profiles.iter().map(|p| (*p).to_owned()).collect(),
            updated_at,
        }
    }

    #[test]
    fn resolution_table() {
        let mine_unassigned = facts("mine", Some("ann"), &[], 10);
        let mine_on_sales = facts("mine-sales", Some("ann"), &["sales"], 5);
        let theirs = facts("theirs", Some("bob"), &["sales"], 20);
        let shared = facts("shared", None, &[], 30);
        let shared_on_sales = facts("shared-sales", None, &["sales"], 1);
        type Row<'a> = (&'a str, Vec<CredentialFacts>, &'a str, bool, Option<&'a str>);
        let rows: Vec<Row> = vec![
            ("nothing stored", vec![], "sales", false, None),
            (
                "unlocked: own, newest",
                vec![mine_unassigned.clone(), mine_on_sales.clone()],
                "main",
                false,
                Some("mine"),
            ),
            (
                "unlocked: own beats a newer shared one",
                vec![shared.clone(), mine_on_sales.clone()],
                "main",
                false,
                Some("mine-sales"),
            ),
            (
                "unlocked: shared when none of one's own",
                vec![shared.clone(), theirs.clone()],
                "main",
                false,
                Some("shared"),
            ),
            ("another user's never", vec![theirs.clone()], "sales", false, None),
            ("locked: only what is assigned", vec![mine_unassigned.clone()], "sales", true, None),
            (
                "locked: the assigned own one",
                vec![mine_unassigned.clone(), mine_on_sales.clone()],
                "sales",
                true,
                Some("mine-sales"),
            ),
            (
                "locked: an assigned shared one",
                vec![shared.clone(), shared_on_sales.clone()],
                "sales",
                true,
                Some("shared-sales"),
            ),
            ("locked: assigned elsewhere does not count", vec![mine_on_sales.clone()], "main", true, None),
        ];
        for (case, candidates, profile, locked, expected) in rows {
            assert_eq!(resolve(&candidates, "ann", profile, locked).map(|c| c.id.as_str()), expected, "{case}");
        }
    }
}
