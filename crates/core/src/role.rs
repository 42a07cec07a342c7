//! Administrative roles (R-ROLE). Ordinary users hold none of them; they act as requester,
//! approver or reviewer only where a policy names them.

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Services and appliance-wide settings; grants and removes administrative roles.
    ApplianceAdmin,
    /// Entitlements and access request policies; may revoke any live session.
    SecurityPolicyAdmin,
    /// Users, groups, time-zone rules.
    UserAdmin,
    /// Assets, accounts and their credentials.
    AssetAdmin,
    /// Read-only audit, search and playback.
    Auditor,
}

impl Role {
    pub const ALL: [Role; 5] =
        [Role::ApplianceAdmin, Role::SecurityPolicyAdmin, Role::UserAdmin, Role::AssetAdmin, Role::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::ApplianceAdmin => "appliance_admin",
            Role::SecurityPolicyAdmin => "security_policy_admin",
            Role::UserAdmin => "user_admin",
            Role::AssetAdmin => "asset_admin",
            Role::Auditor => "auditor",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "unknown role '{0}' (expected one of appliance_admin, security_policy_admin, user_admin, asset_admin, auditor)"
)]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// Encodes a role set as the comma-separated text the store keeps.
pub fn encode_roles(roles: &[Role]) -> String {
    let mut sorted: Vec<Role> = roles.to_vec();
    sorted.sort();
    sorted.dedup();
    sorted.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",")
}

/// Decodes the store's comma-separated role text; unknown names are an error, never ignored.
pub fn decode_roles(text: &str) -> Result<Vec<Role>, UnknownRole> {
    text.split(',').filter(|s| !s.is_empty()).map(Role::from_str).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_sorted_and_deduplicated() {
        let text = encode_roles(&[Role::Auditor, Role::UserAdmin, Role::Auditor]);
        assert_eq!(text, "user_admin,auditor");
        assert_eq!(decode_roles(&text).unwrap(), vec![Role::UserAdmin, Role::Auditor]);
        assert_eq!(decode_roles("").unwrap(), vec![]);
        assert!(decode_roles("root").is_err());
    }
}
