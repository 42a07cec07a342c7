//! Validation of every user-supplied value, with errors that name the field and the problem.

use std::net::IpAddr;

use data_encoding::BASE64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationError { field: field.into(), message: message.into() }
    }

    /// The same error for a field nested in `parent` (`approval_levels` → `settings.approval_levels`),
    /// so that it names the field as the client sent it.
    pub fn within(self, parent: &str) -> Self {
        ValidationError { field: format!("{parent}.{}", self.field), message: self.message }
    }
}

type Result<T = ()> = std::result::Result<T, ValidationError>;

pub const NAME_MAX: usize = 128;
pub const DESCRIPTION_MAX: usize = 1024;
pub const USERNAME_MAX: usize = 64;
pub const PASSWORD_MAX: usize = 1024;

/// A display name for an object (asset, group, account...): 1 to 128 characters, no control
/// characters, no leading or trailing white space.
pub fn name(field: &str, value: &str) -> Result {
    if value.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if value.chars().count() > NAME_MAX {
        return Err(ValidationError::new(field, format!("must be at most {NAME_MAX} characters")));
    }
    if value.trim() != value {
        return Err(ValidationError::new(field, "must not start or end with white space"));
    }
    if value.chars().any(char::is_control) {
        return Err(ValidationError::new(field, "must not contain control characters"));
    }
    if let Some(c) = value.chars().find(|c| invisible(*c)) {
        return Err(ValidationError::new(
            field,
            format!("must not contain invisible or text-direction characters (found U+{:04X})", u32::from(c)),
        ));
    }
    Ok(())
}

/// Characters that change how text reads without being seen: direction overrides and
/// isolates (a name that displays as another), zero-width characters, the soft hyphen.
fn invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// Free text such as a description: at most 1024 characters, no control characters but
/// newline and tab.
pub fn description(field: &str, value: &str) -> Result {
    if value.chars().count() > DESCRIPTION_MAX {
        return Err(ValidationError::new(field, format!("must be at most {DESCRIPTION_MAX} characters")));
    }
    if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(ValidationError::new(field, "must not contain control characters"));
    }
    // Direction overrides make text display as something else; ordinary right-to-left
    // scripts need none of them.
    if let Some(c) = value.chars().find(|c| matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')) {
        return Err(ValidationError::new(
            field,
            format!("must not contain text-direction override characters (found U+{:04X})", u32::from(c)),
        ));
    }
    Ok(())
}

/// A login name: 1 to 64 of `a-z A-Z 0-9 . _ - @`, starting with a letter or digit.
pub fn username(field: &str, value: &str) -> Result {
    if value.is_empty() || value.len() > USERNAME_MAX {
        return Err(ValidationError::new(field, format!("must be 1 to {USERNAME_MAX} characters")));
    }
    if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(ValidationError::new(field, "must start with a letter or digit"));
    }
    if let Some(bad) = value.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))) {
        return Err(ValidationError::new(
            field,
            format!("must contain only letters, digits and . _ - @ (found {bad:?})"),
        ));
    }
    Ok(())
}

/// An account name on a target: like a username, but also allows `\` and `$` (DOMAIN\user,
/// machine accounts) and spaces inside.
pub fn account_name(field: &str, value: &str) -> Result {
    name(field, value)?;
    if let Some(bad) =
        value.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '\\' | '$' | ' ')))
    {
        return Err(ValidationError::new(
            field,
            format!("must contain only letters, digits, spaces and . _ - @ \\ $ (found {bad:?})"),
        ));
    }
    Ok(())
}

/// A network address: an IPv4 or IPv6 address, or a DNS host name (RFC 1123).
pub fn address(field: &str, value: &str) -> Result {
    if value.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let bad =
        || ValidationError::new(field, format!("'{}' is not an IP address or a valid host name", truncate(value, 64)));
    if value.is_empty() || value.len() > 253 {
        return Err(bad());
    }
    let host = value.strip_suffix('.').unwrap_or(value);
    let labels: Vec<&str> = host.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if !labels.iter().all(label_ok) {
        return Err(bad());
    }
    // A name made only of digits and dots is a mistyped IPv4 address, not a host name.
    if labels.last().is_some_and(|l| l.chars().all(|c| c.is_ascii_digit())) {
        return Err(bad());
    }
    Ok(())
}

/// A TCP port, 1 to 65535.
pub fn port(field: &str, value: i64) -> Result<u16> {
    u16::try_from(value)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| ValidationError::new(field, format!("{value} is not a port (1 to 65535)")))
}

/// An IANA time-zone name such as `Europe/Berlin` (R-POL-4).
pub fn time_zone(field: &str, value: &str) -> Result {
    if value.len() > 64 || jiff::tz::TimeZone::get(value).is_err() {
        return Err(ValidationError::new(
            field,
            format!("'{}' is not an IANA time zone (e.g. Europe/Berlin, UTC)", truncate(value, 64)),
        ));
    }
    Ok(())
}

/// An e-mail address, checked for shape only.
pub fn email(field: &str, value: &str) -> Result {
    let ok = value.len() <= 254
        && value.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !local.contains(char::is_whitespace)
                && address("", domain).is_ok()
                && domain.contains('.')
        });
    if !ok {
        return Err(ValidationError::new(field, "is not an e-mail address"));
    }
    Ok(())
}

/// A new password: at least `min_len` characters, at most 1024, not only white space.
pub fn password(field: &str, value: &str, min_len: usize) -> Result {
    let len = value.chars().count();
    if len < min_len {
        return Err(ValidationError::new(field, format!("must be at least {min_len} characters")));
    }
    if len > PASSWORD_MAX {
        return Err(ValidationError::new(field, format!("must be at most {PASSWORD_MAX} characters")));
    }
    if value.trim().is_empty() {
        return Err(ValidationError::new(field, "must not be only white space"));
    }
    Ok(())
}

const HOST_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// An SSH public key in OpenSSH `authorized_keys` form: `TYPE BASE64 [COMMENT]`, where the
/// base64 blob decodes and begins with the same key type. Returns the key without comment.
pub fn ssh_public_key(field: &str, value: &str) -> Result<String> {
    let bad = |why: &str| ValidationError::new(field, format!("is not an OpenSSH public key: {why}"));
    if value.len() > 16 * 1024 {
        return Err(bad("too long"));
    }
    let mut parts = value.split_whitespace();
    let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else {
        return Err(bad("expected 'TYPE BASE64 [COMMENT]'"));
    };
    if !HOST_KEY_TYPES.contains(&kind) {
        return Err(bad(&format!("unsupported key type '{}'", truncate(kind, 40))));
    }
    let bytes = BASE64.decode(blob.as_bytes()).map_err(|_| bad("the key data is not base64"))?;
    let inner = bytes
        .get(..4)
        .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
        .and_then(|len| bytes.get(4..4 + len))
        .ok_or_else(|| bad("the key data is truncated"))?;
    if inner != kind.as_bytes() {
        return Err(bad("the key data does not match its type"));
    }
    Ok(format!("{kind} {blob}"))
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(name("name", "db1").is_ok());
        assert!(name("name", "").is_err());
        assert!(name("name", " db1").is_err());
        assert!(name("name", "a\u{0}b").is_err());
        assert!(name("name", &"x".repeat(129)).is_err());
        assert_eq!(name("asset.name", "").unwrap_err().to_string(), "asset.name: must not be empty");
    }

    #[test]
    fn usernames() {
        assert!(username("u", "alice.smith@corp").is_ok());
        assert!(username("u", "-alice").is_err());
        assert!(username("u", "al ice").is_err());
        assert!(username("u", &"a".repeat(65)).is_err());
    }

    #[test]
    fn addresses() {
        for ok in ["10.0.0.1", "::1", "fe80::1", "db1", "db1.corp.example", "host-2.example."] {
            assert!(address("a", ok).is_ok(), "{ok}");
        }
        for bad in ["", "300.1.1.1", "1.2.3", "a..b", "-a.b", "a_b.c", "a b", &"a".repeat(64)] {
            assert!(address("a", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ports() {
        assert_eq!(port("p", 22).unwrap(), 22);
        assert!(port("p", 0).is_err());
        assert!(port("p", 65536).is_err());
        assert!(port("p", -1).is_err());
    }

    #[test]
    fn time_zones() {
        assert!(time_zone("tz", "Europe/Berlin").is_ok());
        assert!(time_zone("tz", "UTC").is_ok());
        assert!(time_zone("tz", "Mars/Olympus").is_err());
        assert!(time_zone("tz", "").is_err());
    }

    #[test]
    fn emails() {
        assert!(email("e", "alice@example.com").is_ok());
        assert!(email("e", "alice").is_err());
        assert!(email("e", "@example.com").is_err());
        assert!(email("e", "a@localhost").is_err());
    }

    #[test]
    fn public_keys() {
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
        assert_eq!(ssh_public_key("k", &format!("{key} alice@laptop")).unwrap(), key);
        assert!(ssh_public_key("k", "ssh-ed25519").is_err());
        assert!(ssh_public_key("k", "ssh-dss AAAA").is_err());
        assert!(ssh_public_key("k", "ssh-ed25519 !!!!").is_err());
        // Valid base64, wrong embedded type.
        assert!(ssh_public_key("k", "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl")
            .is_err());
    }

    #[test]
    fn passwords() {
        assert!(password("p", "correct horse", 12).is_ok());
        assert!(password("p", "short", 12).is_err());
        assert!(password("p", &" ".repeat(20), 12).is_err());
    }
}
