//! Nested groups: which groups a member is in, directly or through groups that are members of
//! other groups (Active Directory's member-of chains, OpenLDAP's groups of groups). Pure and
//! bounded: cycles end, DNs compare as the directory would (case and spaces after commas
//! ignored).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

pub use portcullis_core::directory::normalize_dn as normalize;

/// The groups' members, as read: group DN → member DNs.
#[derive(Default)]
pub struct Membership {
    /// normalized member DN → normalized DNs of the groups listing it directly.
    parents: BTreeMap<String, BTreeSet<String>>,
    /// normalized group DN → the DN as the directory wrote it.
    spelled: BTreeMap<String, String>,
}

impl Membership {
    pub fn add_group(&mut self, dn: &str, members: impl IntoIterator<Item = impl AsRef<str>>) {
        let group = normalize(dn);
        self.spelled.insert(group.clone(), dn.to_owned());
        for m in members {
            self.parents.entry(normalize(m.as_ref())).or_default().insert(group.clone());
        }
    }

    /// Every group `dn` is in, directly or nested (as the directory spells their DNs).
    pub fn groups_of(&self, dn: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut queue = VecDeque::from([normalize(dn)]);
        while let Some(next) = queue.pop_front() {
            for parent in self.parents.get(&next).into_iter().flatten() {
                if seen.insert(parent.clone()) {
                    queue.push_back(parent.clone());
                }
            }
        }
        seen.into_iter().filter_map(|g| self.spelled.get(&g).cloned()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_groups_and_cycles() {
        let mut m = Membership::default();
        m.add_group("cn=ops,ou=g,dc=x", ["uid=ann,ou=p,dc=x", "cn=dbas,ou=g,dc=x"]);
        m.add_group("cn=dbas,ou=g,dc=x", ["UID=Bob, OU=p, DC=x"]);
        m.add_group("cn=all,ou=g,dc=x", ["cn=ops, ou=g,dc=x"]);
        // A cycle: all → loop → all.
        m.add_group("cn=loop,ou=g,dc=x", ["cn=all,ou=g,dc=x"]);
        m.add_group("cn=all,ou=g,dc=x", ["cn=loop,ou=g,dc=x"]);
        let bob: Vec<_> = m.groups_of("uid=bob,ou=p,dc=x").into_iter().collect();
        assert_eq!(bob, ["cn=all,ou=g,dc=x", "cn=dbas,ou=g,dc=x", "cn=loop,ou=g,dc=x", "cn=ops,ou=g,dc=x"]);
        let ann: Vec<_> = m.groups_of("uid=ann,ou=p,dc=x").into_iter().collect();
        assert_eq!(ann, ["cn=all,ou=g,dc=x", "cn=loop,ou=g,dc=x", "cn=ops,ou=g,dc=x"]);
        assert!(m.groups_of("uid=carl,ou=p,dc=x").is_empty());
    }

    proptest::proptest! {
        #[test]
        fn any_graph_terminates(edges in proptest::collection::vec((0u8..20, 0u8..20), 0..80)) {
            let mut m = Membership::default();
            for (g, member) in &edges {
                m.add_group(&format!("cn=g{g}"), [format!("cn=g{member}")]);
            }
            for n in 0..20u8 {
                let groups = m.groups_of(&format!("cn=g{n}"));
                proptest::prop_assert!(groups.len() <= 20);
            }
        }
    }
}
