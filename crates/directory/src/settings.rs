//! One directory connection's settings, checked before first use.

use std::path::PathBuf;
use std::time::Duration;

use zeroize::Zeroizing;

/// The directory's flavour: decides the defaults of the filters and attributes and how
/// passwords are changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// OpenLDAP and other RFC directories: `uid`, `groupOfNames`, Password Modify (RFC 3062).
    Ldap,
    /// Active Directory: `sAMAccountName` (or `userPrincipalName`), `group`, disabled accounts
    /// by `userAccountControl`, passwords through `unicodePwd`.
    ActiveDirectory,
}

/// Which attribute holds what.
#[derive(Clone, Debug)]
pub struct Attributes {
    /// The Portcullis user name.
    pub username: String,
    /// The attributes a sign-in name is looked up in (e.g. `sAMAccountName` and
    /// `userPrincipalName`).
    pub login: Vec<String>,
    pub display_name: String,
    pub email: String,
    pub time_zone: Option<String>,
    /// A group's Portcullis name.
    pub group_name: String,
    /// A group's members (DNs).
    pub member: String,
}

impl Attributes {
    pub fn defaults(kind: Kind) -> Attributes {
        match kind {
            Kind::Ldap => Attributes {
                username: "uid".into(),
                login: vec!["uid".into()],
                display_name: "displayName".into(),
                email: "mail".into(),
                time_zone: None,
                group_name: "cn".into(),
                member: "member".into(),
            },
            Kind::ActiveDirectory => Attributes {
                username: "sAMAccountName".into(),
                login: vec!["sAMAccountName".into(), "userPrincipalName".into()],
                display_name: "displayName".into(),
                email: "mail".into(),
                time_zone: None,
                group_name: "cn".into(),
                member: "member".into(),
            },
        }
    }
}

impl Kind {
    /// Default user filter per kind.
    pub fn default_user_filter(self) -> &'static str {
        match self {
            Kind::Ldap => "(objectClass=inetOrgPerson)",
            Kind::ActiveDirectory => "(&(objectCategory=person)(objectClass=user))",
        }
    }

    /// Default group filter per kind.
    pub fn default_group_filter(self) -> &'static str {
        match self {
            Kind::Ldap => "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))",
            Kind::ActiveDirectory => "(objectClass=group)",
        }
    }

    /// Default filter of disabled users per kind (none for plain LDAP: the directory's own
    /// convention goes into `disabled_filter`).
    pub fn default_disabled_filter(self) -> Option<&'static str> {
        match self {
            Kind::Ldap => None,
            // ACCOUNTDISABLE (0x2) in userAccountControl, with AD's bitwise-AND matching rule.
            Kind::ActiveDirectory => Some("(userAccountControl:1.2.840.113556.1.4.803:=2)"),
        }
    }
}

/// A directory connection.
#[derive(Clone)]
pub struct Settings {
    /// The connection's name (`[directories.NAME]`), which Portcullis shows with its users.
    pub name: String,
    pub kind: Kind,
    /// `ldaps://host:port` or `ldap://host:port`.
    pub url: String,
    /// StartTLS on an `ldap://` URL.
    pub starttls: bool,
    /// Allows `ldap://` without StartTLS (passwords in clear on the network).
    pub allow_plain: bool,
    /// PEM file of the CA certificates that may issue the directory's certificate (else the
    /// system's).
    pub ca_file: Option<PathBuf>,
    pub bind_dn: String,
    pub bind_password: Zeroizing<String>,
    pub user_base: String,
    /// Where directory accounts (service and administrator accounts Portcullis vaults) are
    /// looked up by name.
    pub account_base: String,
    pub user_filter: String,
    pub group_base: String,
    pub group_filter: String,
    pub disabled_filter: Option<String>,
    pub attributes: Attributes,
    /// Every network step (connect, bind, each search page) is bounded by this.
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("directory {name}: {field}: {message}")]
pub struct SettingsError {
    pub name: String,
    pub field: &'static str,
    pub message: String,
}

impl Settings {
    /// Checks what can be checked without the network.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let err = |field: &'static str, message: String| SettingsError { name: self.name.clone(), field, message };
        let (scheme, _) = self
            .url
            .split_once("://")
            .ok_or_else(|| err("url", "must be ldaps://HOST:PORT or ldap://HOST:PORT".into()))?;
        match scheme {
            "ldaps" if self.starttls => {
                return Err(err("starttls", "StartTLS is for ldap:// URLs; ldaps:// is TLS already".into()))
            }
            "ldaps" => {}
            "ldap" if self.starttls || self.allow_plain => {}
            "ldap" => {
                return Err(err(
                    "url",
                    "ldap:// sends passwords in clear: use ldaps://, or starttls = true, or allow_plain = true".into(),
                ))
            }
            other => return Err(err("url", format!("scheme {other:?} is not ldaps or ldap"))),
        }
        for (field, filter) in [("user_filter", &self.user_filter), ("group_filter", &self.group_filter)]
            .into_iter()
            .chain(self.disabled_filter.as_ref().map(|f| ("disabled_filter", f)))
        {
            if !(filter.starts_with('(') && filter.ends_with(')')) {
                return Err(err(field, format!("{filter:?} must be an LDAP filter in parentheses")));
            }
        }
        for (field, value) in [
            ("bind_dn", &self.bind_dn),
            ("user_base", &self.user_base),
            ("account_base", &self.account_base),
            ("group_base", &self.group_base),
            ("attributes.username", &self.attributes.username),
        ] {
            if value.trim().is_empty() {
                return Err(err(field, "must not be empty".into()));
            }
        }
        if self.bind_password.is_empty() {
            return Err(err("bind_password", "must not be empty (an empty password is an anonymous bind)".into()));
        }
        if self.attributes.login.is_empty() {
            return Err(err("attributes.login", "must name at least one attribute".into()));
        }
        if self.timeout.is_zero() {
            return Err(err("timeout_seconds", "must be at least 1".into()));
        }
        Ok(())
    }
}
