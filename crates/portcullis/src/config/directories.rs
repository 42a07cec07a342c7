//! `[directories.NAME]`: LDAP / Active Directory connections (file only, like AA plugins: the
//! server binds with the service password, and nobody chooses its directory through the API).

use std::path::PathBuf;
use std::time::Duration;

use portcullis_directory::{Attributes, Kind, Settings};
use serde::Deserialize;
use zeroize::Zeroizing;

use super::{key_error, Config, ConfigError};

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DirectorySettings {
    /// `ldap` (OpenLDAP and other RFC directories) or `active_directory`.
    pub kind: String,
    /// `ldaps://HOST:636`, or `ldap://HOST:389` with `starttls = true`.
    pub url: String,
    pub starttls: bool,
    /// Allows `ldap://` without StartTLS: passwords cross the network in clear.
    pub allow_plain: bool,
    /// PEM file of the CA certificates that issue the directory's certificate; empty: the
    /// system's CA bundle.
    pub ca_file: String,
    /// The service account that searches the directory.
    pub bind_dn: String,
    pub bind_password: String,
    /// A file holding the service account's password (instead of `bind_password`).
    pub bind_password_file: String,
    pub user_base: String,
    /// Where directory accounts are looked up by name; default: `user_base`.
    pub account_base: String,
    /// Default: `(objectClass=inetOrgPerson)`; AD `(&(objectCategory=person)(objectClass=user))`.
    pub user_filter: String,
    pub group_base: String,
    /// Default: groupOfNames or groupOfUniqueNames; AD `(objectClass=group)`.
    pub group_filter: String,
    /// Users matching it are disabled. Default: none; AD `userAccountControl` bit 2.
    pub disabled_filter: String,
    pub attributes: AttributeSettings,
    /// Every network step is bounded by this.
    pub timeout_seconds: u64,
    /// How often the whole directory is read; 0: only at sign-in and on demand.
    pub sync_interval_seconds: u64,
}

impl Default for DirectorySettings {
    fn default() -> Self {
        DirectorySettings {
            kind: "ldap".into(),
            url: String::new(),
            starttls: false,
            allow_plain: false,
            ca_file: String::new(),
            bind_dn: String::new(),
            bind_password: String::new(),
            bind_password_file: String::new(),
            user_base: String::new(),
            account_base: String::new(),
            user_filter: String::new(),
            group_base: String::new(),
            group_filter: String::new(),
            disabled_filter: String::new(),
            attributes: AttributeSettings::default(),
            timeout_seconds: 10,
            sync_interval_seconds: 900,
        }
    }
}

impl std::fmt::Debug for DirectorySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectorySettings")
            .field("kind", &self.kind)
            .field("url", &self.url)
            .field("bind_dn", &self.bind_dn)
            .field("bind_password", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// Attribute names; empty ones take the kind's defaults.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttributeSettings {
    /// The Portcullis user name (`uid`; AD `sAMAccountName`).
    pub username: String,
    /// What a sign-in name is looked up in (`[uid]`; AD `[sAMAccountName, userPrincipalName]`).
    pub login: Vec<String>,
    pub display_name: String,
    pub email: String,
    /// An attribute holding an IANA time zone name, if the directory has one.
    pub time_zone: String,
    pub group_name: String,
    pub member: String,
}

impl Config {
    /// The configured directories, checked.
    pub fn directories(&self) -> Result<Vec<(Settings, Duration)>, ConfigError> {
        let mut out = Vec::new();
        for (name, d) in &self.directories {
            let key = |k: &str| format!("directories.{name}.{k}");
            portcullis_core::validate::username("directories", name)
                .map_err(|e| key_error(&format!("directories.{name}"), e.message))?;
            let kind = match d.kind.as_str() {
                "ldap" => Kind::Ldap,
                "active_directory" => Kind::ActiveDirectory,
                other => return Err(key_error(&key("kind"), format!("{other:?} is not ldap or active_directory"))),
            };
            let password = match (d.bind_password.is_empty(), d.bind_password_file.is_empty()) {
                (false, true) => Zeroizing::new(d.bind_password.clone()),
                (true, false) => {
                    let text = std::fs::read_to_string(&d.bind_password_file)
                        .map_err(|e| key_error(&key("bind_password_file"), format!("{}: {e}", d.bind_password_file)))?;
                    Zeroizing::new(text.trim_end_matches(['\r', '\n']).to_owned())
                }
                _ => return Err(key_error(&key("bind_password"), "give either bind_password or bind_password_file")),
            };
            if !(1..=300).contains(&d.timeout_seconds) {
                return Err(key_error(&key("timeout_seconds"), "must be 1 to 300"));
            }
            if d.sync_interval_seconds != 0 && d.sync_interval_seconds < 5 {
                return Err(key_error(&key("sync_interval_seconds"), "must be 0 (no schedule) or at least 5"));
            }
            let or = |v: &str, default: &str| if v.is_empty() { default.to_owned() } else { v.to_owned() };
            let defaults = Attributes::defaults(kind);
            let a = &d.attributes;
            let attributes = Attributes {
                username: or(&a.username, &defaults.username),
                login: if a.login.is_empty() {
                    if a.username.is_empty() {
                        defaults.login
                    } else {
                        vec![a.username.clone()]
                    }
                } else {
                    a.login.clone()
                },
                display_name: or(&a.display_name, &defaults.display_name),
                email: or(&a.email, &defaults.email),
                time_zone: (!a.time_zone.is_empty()).then(|| a.time_zone.clone()),
                group_name: or(&a.group_name, &defaults.group_name),
                member: or(&a.member, &defaults.member),
            };
            let settings = Settings {
                name: name.clone(),
                kind,
                url: d.url.clone(),
                starttls: d.starttls,
                allow_plain: d.allow_plain,
                ca_file: (!d.ca_file.is_empty()).then(|| PathBuf::from(&d.ca_file)),
                bind_dn: d.bind_dn.clone(),
                bind_password: password,
                user_base: d.user_base.clone(),
                account_base: or(&d.account_base, &d.user_base),
                user_filter: or(&d.user_filter, kind.default_user_filter()),
                group_base: or(&d.group_base, &d.user_base),
                group_filter: or(&d.group_filter, kind.default_group_filter()),
                disabled_filter: if d.disabled_filter.is_empty() {
                    kind.default_disabled_filter().map(str::to_owned)
                } else {
                    Some(d.disabled_filter.clone())
                },
                attributes,
                timeout: Duration::from_secs(d.timeout_seconds),
            };
            settings.validate().map_err(|e| key_error(&key(e.field), e.message))?;
            out.push((settings, Duration::from_secs(d.sync_interval_seconds)));
        }
        Ok(out)
    }
}

/// `[oidc]`: sign-in with an OpenID provider (web UI and CLI). Off while `issuer` is empty.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OidcConfig {
    /// The provider's issuer URL (its discovery document is ISSUER/.well-known/openid-configuration).
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// A file holding the client secret (instead of `client_secret`).
    pub client_secret_file: String,
    /// Portcullis's URL as browsers reach it (e.g. https://pam.example.com); the provider sends
    /// them back to PUBLIC_URL/auth/oidc/callback, which must be registered with it.
    pub public_url: String,
    /// What the sign-in button says: "Sign in with NAME".
    pub display_name: String,
    pub scopes: Vec<String>,
    /// The claim holding the Portcullis user name.
    pub username_claim: String,
    /// The claim holding the user's groups (mirrored as Portcullis groups of the same names).
    pub groups_claim: String,
    /// Users the provider vouches for get a Portcullis account at their first sign-in.
    pub create_users: bool,
    /// A Portcullis (or directory) user of the same name may sign in through the provider.
    pub link_existing: bool,
    /// `amr` values that count as multi-factor: such sign-ins are not asked for a one-time
    /// code again. Empty: always asked (of users enrolled).
    pub mfa_amr: Vec<String>,
    /// PEM CA bundle for the provider's certificate; empty: the built-in web PKI roots.
    pub ca_file: String,
    pub timeout_seconds: u64,
}

impl Default for OidcConfig {
    fn default() -> Self {
        OidcConfig {
            issuer: String::new(),
            client_id: String::new(),
            client_secret: String::new(),
            client_secret_file: String::new(),
            public_url: String::new(),
            display_name: "single sign-on".into(),
            scopes: vec!["openid".into(), "profile".into(), "email".into(), "groups".into()],
            username_claim: "preferred_username".into(),
            groups_claim: "groups".into(),
            create_users: true,
            link_existing: false,
            mfa_amr: vec!["mfa".into(), "otp".into(), "hwk".into()],
            ca_file: String::new(),
            timeout_seconds: 10,
        }
    }
}

impl std::fmt::Debug for OidcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcConfig")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .finish_non_exhaustive()
    }
}

impl Config {
    /// The single sign-on provider, if configured.
    pub fn sso(&self) -> Result<Option<portcullis_app::sso::Sso>, ConfigError> {
        let o = &self.oidc;
        if o.issuer.is_empty() {
            return Ok(None);
        }
        let secret = match (o.client_secret.is_empty(), o.client_secret_file.is_empty()) {
            (false, true) => Zeroizing::new(o.client_secret.clone()),
            (true, false) => {
                let text = std::fs::read_to_string(&o.client_secret_file)
                    .map_err(|e| key_error("oidc.client_secret_file", format!("{}: {e}", o.client_secret_file)))?;
                Zeroizing::new(text.trim_end_matches(['\r', '\n']).to_owned())
            }
            _ => return Err(key_error("oidc.client_secret", "give either client_secret or client_secret_file")),
        };
        if o.client_id.is_empty() {
            return Err(key_error("oidc.client_id", "must not be empty"));
        }
        let public = o.public_url.trim_end_matches('/');
        if !(public.starts_with("https://")
            || public.starts_with("http://127.0.0.1")
            || public.starts_with("http://localhost"))
        {
            return Err(key_error("oidc.public_url", "must be Portcullis's https:// URL as browsers reach it"));
        }
        if !(o.issuer.starts_with("https://")
            || o.issuer.starts_with("http://127.0.0.1")
            || o.issuer.starts_with("http://localhost"))
        {
            return Err(key_error("oidc.issuer", "must be an https:// URL (plain http only on this machine)"));
        }
        if !(1..=120).contains(&o.timeout_seconds) {
            return Err(key_error("oidc.timeout_seconds", "must be 1 to 120"));
        }
        let settings = portcullis_directory::oidc::OidcSettings {
            issuer: o.issuer.clone(),
            client_id: o.client_id.clone(),
            client_secret: secret,
            redirect_url: format!("{public}/auth/oidc/callback"),
            scopes: o.scopes.clone(),
            ca_file: (!o.ca_file.is_empty()).then(|| PathBuf::from(&o.ca_file)),
            timeout: Duration::from_secs(o.timeout_seconds),
        };
        let oidc = portcullis_directory::oidc::Oidc::new(settings).map_err(|e| key_error("oidc", e.to_string()))?;
        Ok(Some(portcullis_app::sso::Sso {
            oidc,
            display_name: o.display_name.clone(),
            username_claim: o.username_claim.clone(),
            groups_claim: o.groups_claim.clone(),
            create_users: o.create_users,
            link_existing: o.link_existing,
            mfa_amr: o.mfa_amr.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    fn load(toml: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, toml).unwrap();
        Config::load(Some(&p), Vec::<(String, String)>::new()).map_err(|e| e.to_string())
    }

    const BASE: &str = "[directories.corp]\nbind_dn = \"cn=x\"\nbind_password = \"pw\"\nuser_base = \"ou=p\"\n";

    #[test]
    fn directory_settings_are_checked_with_the_key_named() {
        let ok = load(&format!("{BASE}url = \"ldaps://ldap.example:636\"\n")).unwrap();
        let d = ok.directories().unwrap();
        assert_eq!(d[0].0.group_base, "ou=p", "group_base defaults to user_base");
        assert_eq!(d[0].0.attributes.login, ["uid"]);
        let e = load(&format!("{BASE}url = \"ldap://ldap.example:389\"\n")).unwrap_err();
        assert!(e.contains("directories.corp.url") && e.contains("allow_plain"), "{e}");
        let e = load(&format!("{BASE}url = \"ldaps://h:636\"\nkind = \"novell\"\n")).unwrap_err();
        assert!(e.contains("directories.corp.kind"), "{e}");
        let e = load(&format!("{BASE}url = \"ldaps://h:636\"\nbind_password_file = \"/x\"\n")).unwrap_err();
        assert!(e.contains("directories.corp.bind_password") && e.contains("either"), "{e}");
        let e = load(&format!("{BASE}url = \"ldaps://h:636\"\nuser_filter = \"objectClass=person\"\n")).unwrap_err();
        assert!(e.contains("directories.corp.user_filter") && e.contains("parentheses"), "{e}");
        let ad = load(&format!("{BASE}url = \"ldaps://h:636\"\nkind = \"active_directory\"\n")).unwrap();
        let d = ad.directories().unwrap();
        assert_eq!(d[0].0.attributes.login, ["sAMAccountName", "userPrincipalName"]);
        assert!(d[0].0.disabled_filter.as_deref().unwrap().contains("userAccountControl"));
        // The bind password never shows in the configuration's debug output.
        assert!(!format!("{ok:?}").contains("\"pw\""));
    }

    #[test]
    fn oidc_settings_are_checked() {
        let oidc = "[oidc]\nissuer = \"https://idp.example\"\nclient_id = \"pcl\"\nclient_secret = \"s3cret\"\n";
        let e = load(&format!("{oidc}public_url = \"http://pam.example\"\n")).unwrap_err();
        assert!(e.contains("oidc.public_url"), "{e}");
        let c = load(&format!("{oidc}public_url = \"https://pam.example/\"\n")).unwrap();
        let sso = c.sso().unwrap().unwrap();
        assert_eq!(sso.oidc.settings().redirect_url, "https://pam.example/auth/oidc/callback");
        assert!(!format!("{c:?}").contains("s3cret"));
        assert!(load("[oidc]\nissuer = \"\"\n").unwrap().sso().unwrap().is_none());
    }
}
