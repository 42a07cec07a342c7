//! Connections to one directory and the operations Portcullis makes on it.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::exop::PasswordModify;
use ldap3::{ldap_escape, Ldap, LdapConnAsync, LdapConnSettings, LdapError, Mod, Scope, SearchEntry};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::nesting::{normalize, Membership};
use crate::{DirectoryError, Group, Kind, Login, Person, Result, Settings, Snapshot};

/// LDAP result code of a bind with a wrong password (or an unknown DN).
const INVALID_CREDENTIALS: u32 = 49;
/// Most groups a sign-in follows upwards (nested levels), and most entries per level.
const NESTING_LEVELS: usize = 16;
const PAGE: i32 = 500;

/// One configured directory. Cheap to clone; each operation opens its own connection.
#[derive(Clone)]
pub struct Directory {
    settings: Arc<Settings>,
    tls: Arc<rustls::ClientConfig>,
}

impl Directory {
    pub fn new(settings: Settings) -> Result<Directory> {
        settings.validate().map_err(|e| DirectoryError::Invalid(e.to_string()))?;
        let mut roots = rustls::RootCertStore::empty();
        match &settings.ca_file {
            Some(path) => {
                let bad = |reason: String| {
                    DirectoryError::Invalid(format!(
                        "directory {}: ca_file {}: {reason}",
                        settings.name,
                        path.display()
                    ))
                };
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                    .map_err(|e| bad(e.to_string()))?
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|e| bad(e.to_string()))?;
                if certs.is_empty() {
                    return Err(bad("it holds no certificate".into()));
                }
                for c in certs {
                    roots.add(c).map_err(|e| bad(e.to_string()))?;
                }
            }
            None => {
                let native = rustls_native_roots();
                roots.add_parsable_certificates(native);
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| DirectoryError::Invalid(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Directory { settings: Arc::new(settings), tls: Arc::new(tls) })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// Runs one network step within the timeout.
    async fn bounded<T>(&self, step: impl Future<Output = std::result::Result<T, LdapError>>) -> Result<T> {
        match tokio::time::timeout(self.settings.timeout, step).await {
            Ok(r) => r.map_err(|e| self.ldap_error(e)),
            Err(_) => Err(DirectoryError::Timeout {
                url: self.settings.url.clone(),
                seconds: self.settings.timeout.as_secs(),
            }),
        }
    }

    fn ldap_error(&self, e: LdapError) -> DirectoryError {
        let url = self.settings.url.clone();
        if let LdapError::Timeout { .. } = e {
            return DirectoryError::Timeout { url, seconds: self.settings.timeout.as_secs() };
        }
        let reason = e.to_string();
        let lower = reason.to_lowercase();
        if lower.contains("certificate") || lower.contains("tls") && lower.contains("invalid") {
            DirectoryError::Certificate { url, reason }
        } else {
            DirectoryError::Unreachable { url, reason }
        }
    }

    async fn connect(&self) -> Result<Ldap> {
        let s = &self.settings;
        let conn =
            LdapConnSettings::new().set_conn_timeout(s.timeout).set_starttls(s.starttls).set_config(self.tls.clone());
        let (conn, ldap) = self.bounded(LdapConnAsync::with_settings(conn, &s.url)).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(error = %e, "directory connection ended");
            }
        });
        Ok(ldap)
    }

    /// A connection bound as the service account.
    async fn service(&self) -> Result<Ldap> {
        let mut ldap = self.connect().await?;
        let s = &self.settings;
        let res = self.bounded(ldap.simple_bind(&s.bind_dn, &s.bind_password)).await?;
        if res.rc != 0 {
            return Err(DirectoryError::ServiceBind { dn: s.bind_dn.clone(), reason: describe(res.rc, &res.text) });
        }
        Ok(ldap)
    }

    /// Binds as `dn` with `password` on a new connection: `Ok(true)` bound, `Ok(false)` the
    /// directory refused the credentials.
    async fn binds(&self, dn: &str, password: &str) -> Result<(bool, Option<Ldap>)> {
        if password.is_empty() {
            // An empty password is an unauthenticated bind, which succeeds without proving anything.
            return Ok((false, None));
        }
        let mut ldap = self.connect().await?;
        let res = self.bounded(ldap.simple_bind(dn, password)).await?;
        match res.rc {
            0 => Ok((true, Some(ldap))),
            INVALID_CREDENTIALS => {
                let _ = ldap.unbind().await;
                Ok((false, None))
            }
            rc => Err(DirectoryError::Refused { what: "check a password".into(), reason: describe(rc, &res.text) }),
        }
    }

    fn user_attributes(&self) -> Vec<String> {
        let a = &self.settings.attributes;
        let mut attrs = vec![a.username.clone(), a.display_name.clone(), a.email.clone()];
        attrs.extend(a.time_zone.clone());
        attrs
    }

    /// Searches `base` for `filter`, every page, returning the entries.
    async fn search(&self, ldap: &mut Ldap, base: &str, filter: &str, attrs: Vec<String>) -> Result<Vec<SearchEntry>> {
        let adapters: Vec<Box<dyn Adapter<String, Vec<String>>>> =
            vec![Box::new(EntriesOnly::new()), Box::new(PagedResults::new(PAGE))];
        let mut stream =
            self.bounded(ldap.streaming_search_with(adapters, base, Scope::Subtree, filter, attrs)).await?;
        let mut out = Vec::new();
        while let Some(entry) = self.bounded(stream.next()).await? {
            out.push(SearchEntry::construct(entry));
        }
        let res = self.bounded(async { Ok(stream.finish().await) }).await?;
        if res.rc != 0 {
            return Err(DirectoryError::Refused {
                what: format!("search {base}"),
                reason: describe(res.rc, &res.text),
            });
        }
        Ok(out)
    }

    /// The DNs under the user base matching `(&user_filter disabled_filter)`.
    async fn disabled(&self, ldap: &mut Ldap, extra: &str) -> Result<BTreeSet<String>> {
        let s = &self.settings;
        let Some(disabled) = &s.disabled_filter else { return Ok(BTreeSet::new()) };
        let filter = format!("(&{}{disabled}{extra})", s.user_filter);
        let found = self.search(ldap, &s.user_base, &filter, vec!["1.1".into()]).await?;
        Ok(found.into_iter().map(|e| normalize(&e.dn)).collect())
    }

    fn person(&self, e: &SearchEntry, disabled: bool) -> Option<Person> {
        let a = &self.settings.attributes;
        let username = first(e, &a.username)?;
        Some(Person {
            dn: e.dn.clone(),
            display_name: first(e, &a.display_name).unwrap_or_else(|| username.clone()),
            username,
            email: first(e, &a.email),
            time_zone: a.time_zone.as_deref().and_then(|t| first(e, t)),
            disabled,
            groups: BTreeSet::new(),
        })
    }

    /// The sign-in of `username` with `password`: found with the service account, then a bind
    /// as the entry. On success, also the groups the person is in (nested).
    pub async fn authenticate(&self, username: &str, password: &str) -> Result<Login> {
        let s = &self.settings;
        let mut ldap = self.service().await?;
        let value = ldap_escape(username);
        let any: String = s.attributes.login.iter().map(|attr| format!("({attr}={value})")).collect();
        let filter = format!("(&{}(|{any}))", s.user_filter);
        let found = self.search(&mut ldap, &s.user_base, &filter, self.user_attributes()).await?;
        let entry = match found.as_slice() {
            [] => return Ok(Login::Unknown),
            [one] => one,
            many => {
                return Err(DirectoryError::Refused {
                    what: format!("name one user by {username:?}"),
                    reason: format!("{} entries match; make the login attributes unique", many.len()),
                })
            }
        };
        let dn_filter = format!(
            "({}={})",
            s.attributes.username,
            ldap_escape(first(entry, &s.attributes.username).unwrap_or_default())
        );
        let disabled = self.disabled(&mut ldap, &dn_filter).await?.contains(&normalize(&entry.dn));
        let Some(mut person) = self.person(entry, disabled) else {
            return Err(DirectoryError::Refused {
                what: format!("read user {username:?}"),
                reason: format!("the entry has no {} attribute", s.attributes.username),
            });
        };
        if disabled {
            return Ok(Login::Disabled { person: Box::new(person) });
        }
        let (bound, user_conn) = self.binds(&entry.dn, password).await?;
        if let Some(mut c) = user_conn {
            let _ = c.unbind().await;
        }
        if !bound {
            let _ = ldap.unbind().await;
            return Ok(Login::WrongPassword { dn: entry.dn.clone() });
        }
        let groups = self.groups_of(&mut ldap, &entry.dn).await?;
        let _ = ldap.unbind().await;
        person.groups = groups.iter().map(|g| g.dn.clone()).collect();
        Ok(Login::Ok { person: Box::new(person), groups })
    }

    /// The groups `dn` is in, level by level upwards through nested groups.
    async fn groups_of(&self, ldap: &mut Ldap, dn: &str) -> Result<Vec<Group>> {
        let s = &self.settings;
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        let mut level = vec![dn.to_owned()];
        for _ in 0..NESTING_LEVELS {
            if level.is_empty() {
                break;
            }
            let any: String =
                level.iter().map(|m| format!("({}={})", s.attributes.member, ldap_escape(m.as_str()))).collect();
            let filter = format!("(&{}(|{any}))", s.group_filter);
            let found = self.search(ldap, &s.group_base, &filter, vec![s.attributes.group_name.clone()]).await?;
            level = Vec::new();
            for e in found {
                if seen.insert(normalize(&e.dn)) {
                    if let Some(name) = first(&e, &s.attributes.group_name) {
                        out.push(Group { dn: e.dn.clone(), name });
                    }
                    level.push(e.dn);
                }
            }
        }
        Ok(out)
    }

    /// Reads every user and group for a synchronisation: all or an error, never part.
    pub async fn snapshot(&self) -> Result<Snapshot> {
        let s = &self.settings;
        let a = &s.attributes;
        let mut ldap = self.service().await?;
        let disabled = self.disabled(&mut ldap, "").await?;
        let users = self.search(&mut ldap, &s.user_base, &s.user_filter, self.user_attributes()).await?;
        let groups = self
            .search(&mut ldap, &s.group_base, &s.group_filter, vec![a.group_name.clone(), a.member.clone()])
            .await?;
        let _ = ldap.unbind().await;

        let mut snapshot = Snapshot::default();
        let mut membership = Membership::default();
        let mut names = HashMap::new();
        for g in &groups {
            membership.add_group(&g.dn, values(g, &a.member));
            match first(g, &a.group_name) {
                Some(name) if names.insert(name.to_lowercase(), g.dn.clone()).is_none() => {
                    snapshot.groups.push(Group { dn: g.dn.clone(), name })
                }
                Some(name) => {
                    snapshot.skipped.push(format!("group {}: the name {name:?} is taken by another group", g.dn))
                }
                None => snapshot.skipped.push(format!("group {}: no {} attribute", g.dn, a.group_name)),
            }
        }
        let mut usernames = HashMap::new();
        for e in &users {
            let Some(mut person) = self.person(e, disabled.contains(&normalize(&e.dn))) else {
                snapshot.skipped.push(format!("user {}: no {} attribute", e.dn, a.username));
                continue;
            };
            if usernames.insert(person.username.to_lowercase(), ()).is_some() {
                snapshot
                    .skipped
                    .push(format!("user {}: the name {:?} is taken by another entry", e.dn, person.username));
                continue;
            }
            person.groups = membership.groups_of(&e.dn);
            snapshot.users.push(person);
        }
        Ok(snapshot)
    }

    /// The DN of the entry named `username` (a directory account).
    async fn find(&self, ldap: &mut Ldap, username: &str) -> Result<String> {
        let s = &self.settings;
        let value = ldap_escape(username);
        let any: String = s.attributes.login.iter().map(|attr| format!("({attr}={value})")).collect();
        let filter = format!("(|{any})");
        let found = self.search(ldap, &s.account_base, &filter, vec!["1.1".into()]).await?;
        match found.as_slice() {
            [one] => Ok(one.dn.clone()),
            [] => Err(DirectoryError::Refused {
                what: format!("find account {username:?}"),
                reason: format!("no entry under {} has that name", s.account_base),
            }),
            many => Err(DirectoryError::Refused {
                what: format!("find account {username:?}"),
                reason: format!("{} entries have that name", many.len()),
            }),
        }
    }

    /// Whether the account `username` binds with `password`.
    pub async fn check_password(&self, username: &str, password: &str) -> Result<bool> {
        let mut ldap = self.service().await?;
        let dn = self.find(&mut ldap, username).await?;
        let _ = ldap.unbind().await;
        let (ok, conn) = self.binds(&dn, password).await?;
        if let Some(mut c) = conn {
            let _ = c.unbind().await;
        }
        Ok(ok)
    }

    /// Changes the password of the account `username` as the account itself (it proves the
    /// current password), then verifies the new one by a bind. `Ok(())` only when the new
    /// password binds.
    pub async fn change_password(&self, username: &str, current: &str, new: &str) -> Result<()> {
        let mut ldap = self.service().await?;
        let dn = self.find(&mut ldap, username).await?;
        let _ = ldap.unbind().await;
        let (bound, conn) = self.binds(&dn, current).await?;
        let Some(mut conn) = conn.filter(|_| bound) else {
            return Err(DirectoryError::WrongPassword { account: username.to_owned() });
        };
        let res = match self.settings.kind {
            Kind::Ldap => {
                let exop = PasswordModify { user_id: None, old_pass: Some(current), new_pass: Some(new) };
                self.bounded(conn.extended(exop)).await?.1
            }
            Kind::ActiveDirectory => {
                // AD takes a user's own change as a delete of the old and an add of the new
                // value of unicodePwd: the password in double quotes, UTF-16LE.
                let quoted =
                    |p: &str| format!("\"{p}\"").encode_utf16().flat_map(u16::to_le_bytes).collect::<Vec<u8>>();
                let attr = b"unicodePwd".to_vec();
                let mods = vec![
                    Mod::Delete(attr.clone(), [quoted(current)].into_iter().collect()),
                    Mod::Add(attr, [quoted(new)].into_iter().collect()),
                ];
                self.bounded(conn.modify(&dn, mods)).await?
            }
        };
        let _ = conn.unbind().await;
        if res.rc != 0 {
            return Err(DirectoryError::Refused {
                what: format!("change the password of {username}"),
                reason: describe(res.rc, &res.text),
            });
        }
        let (ok, conn) = self.binds(&dn, new).await?;
        if let Some(mut c) = conn {
            let _ = c.unbind().await;
        }
        if !ok {
            return Err(DirectoryError::NotVerified {
                account: username.to_owned(),
                reason: "a bind with it was refused after the change".into(),
            });
        }
        Ok(())
    }
}

/// An attribute's values (attribute names compared without case).
fn values<'a>(e: &'a SearchEntry, name: &str) -> Vec<&'a String> {
    e.attrs.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).flat_map(|(_, v)| v).collect()
}

fn first(e: &SearchEntry, name: &str) -> Option<String> {
    values(e, name).into_iter().find(|v| !v.trim().is_empty()).cloned()
}

fn describe(rc: u32, text: &str) -> String {
    let name = match rc {
        INVALID_CREDENTIALS => "invalid credentials",
        19 => "constraint violation",
        32 => "no such object",
        50 => "insufficient access rights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwilling to perform",
        _ => "error",
    };
    if text.is_empty() {
        format!("LDAP result {rc}: {name}")
    } else {
        format!("LDAP result {rc}: {name}: {text}")
    }
}

fn rustls_native_roots() -> Vec<CertificateDer<'static>> {
    // The system's CA bundle (Debian's ca-certificates), when present.
    ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"]
        .iter()
        .find_map(|p| CertificateDer::pem_file_iter(p).ok())
        .map(|it| it.filter_map(|c| c.ok()).collect())
        .unwrap_or_default()
}
