//! `[archive]`: the S3-compatible object storage ended sessions' recordings are copied to
//! (R-SES-13). Environment overrides: `PORTCULLIS_ARCHIVE_URL`, `…_BUCKET`, `…_ACCESS_KEY_ID`,
//! `…_SECRET_ACCESS_KEY`, ….

use std::time::Duration;

use serde::Deserialize;
use zeroize::Zeroizing;

use super::{key_error, Config, ConfigError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveConfig {
    /// The S3 endpoint (`https://s3.eu-central-1.amazonaws.com`, `http://127.0.0.1:9000`);
    /// empty: no archive.
    pub url: String,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// A file holding the secret access key (instead of `secret_access_key`).
    pub secret_access_key_file: String,
    /// Prepended to object names.
    pub prefix: String,
    /// Remove a recording from this node's disk once its archived copy is verified.
    pub remove_local: bool,
    /// Allow a plain-HTTP endpoint (recordings are encrypted either way; the request
    /// signatures do not reveal the secret key).
    pub allow_http: bool,
    pub timeout_seconds: u64,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            url: String::new(),
            bucket: String::new(),
            region: "us-east-1".into(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            secret_access_key_file: String::new(),
            prefix: "recordings/".into(),
            remove_local: false,
            allow_http: false,
            timeout_seconds: 30,
        }
    }
}

impl Config {
    /// The archive's settings (`None`: not configured). Errors name the key.
    pub fn archive(&self) -> Result<Option<portcullis_app::archive::ArchiveSettings>, ConfigError> {
        let a = &self.archive;
        if a.url.is_empty() {
            return Ok(None);
        }
        if !(a.url.starts_with("https://") || a.url.starts_with("http://")) {
            return Err(key_error("archive.url", "must start with https:// (or http:// with allow_http)"));
        }
        if a.url.starts_with("http://") && !a.allow_http {
            return Err(key_error("archive.url", "is plain HTTP: use https://, or set archive.allow_http = true"));
        }
        if a.bucket.is_empty() {
            return Err(key_error("archive.bucket", "name the bucket recordings are copied to"));
        }
        if a.access_key_id.is_empty() {
            return Err(key_error("archive.access_key_id", "must not be empty when archive.url is set"));
        }
        let secret = match (a.secret_access_key.is_empty(), a.secret_access_key_file.is_empty()) {
            (false, true) => Zeroizing::new(a.secret_access_key.clone()),
            (true, false) => {
                let text = std::fs::read_to_string(&a.secret_access_key_file).map_err(|e| {
                    key_error("archive.secret_access_key_file", format!("{}: {e}", a.secret_access_key_file))
                })?;
                Zeroizing::new(text.trim().to_owned())
            }
            _ => {
                return Err(key_error(
                    "archive.secret_access_key",
                    "give either secret_access_key or secret_access_key_file",
                ))
            }
        };
        if !(1..=600).contains(&a.timeout_seconds) {
            return Err(key_error("archive.timeout_seconds", "must be 1 to 600"));
        }
        Ok(Some(portcullis_app::archive::ArchiveSettings {
            url: a.url.clone(),
            bucket: a.bucket.clone(),
            region: a.region.clone(),
            access_key_id: a.access_key_id.clone(),
            secret_access_key: secret,
            prefix: a.prefix.clone(),
            remove_local: a.remove_local,
            allow_http: a.allow_http,
            timeout: Duration::from_secs(a.timeout_seconds),
            cache_dir: self.data_dir().join("archive-cache"),
        }))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn load(env: &[(&str, &str)]) -> Result<Config, String> {
        Config::load(None, env.iter().map(|(k, v)| (k.to_string(), v.to_string()))).map_err(|e| e.to_string())
    }

    #[test]
    fn archive_settings_and_their_errors() {
        assert!(load(&[]).unwrap().archive().unwrap().is_none());
        let base = [
            ("PORTCULLIS_ARCHIVE_URL", "http://127.0.0.1:9000"),
            ("PORTCULLIS_ARCHIVE_BUCKET", "pam-recordings"),
            ("PORTCULLIS_ARCHIVE_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("PORTCULLIS_ARCHIVE_SECRET_ACCESS_KEY", "secret"),
        ];
        let e = load(&base).unwrap().archive().err().unwrap().to_string();
        assert!(e.contains("archive.url") && e.contains("allow_http"), "{e}");
        let mut ok = base.to_vec();
        ok.push(("PORTCULLIS_ARCHIVE_ALLOW_HTTP", "true"));
        let s = load(&ok).unwrap().archive().unwrap().unwrap();
        assert_eq!((s.bucket.as_str(), s.prefix.as_str(), s.remove_local), ("pam-recordings", "recordings/", false));
        let mut no_bucket = ok.clone();
        no_bucket.retain(|(k, _)| *k != "PORTCULLIS_ARCHIVE_BUCKET");
        let e = load(&no_bucket).unwrap().archive().err().unwrap().to_string();
        assert!(e.contains("archive.bucket"), "{e}");
        let mut both = ok.clone();
        both.push(("PORTCULLIS_ARCHIVE_SECRET_ACCESS_KEY_FILE", "/nonexistent"));
        let e = load(&both).unwrap().archive().err().unwrap().to_string();
        assert!(e.contains("either"), "{e}");
    }
}
