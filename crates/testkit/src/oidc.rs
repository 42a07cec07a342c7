//! A real OpenID provider: `oidc-provider` (from the npm registry, installed by scripts/test
//! into `.oidc-provider/`) run with the machine's Node.js on 127.0.0.1, with the sign-in page of
//! `oidc/provider.mjs`. Stopped by PID.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::process::{stop, wait_until};

pub struct OidcProvider {
    child: Child,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// Where scripts/test installs `oidc-provider`.
fn install_dir() -> PathBuf {
    std::env::var_os("PORTCULLIS_OIDC_PROVIDER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.oidc-provider"))
}

impl OidcProvider {
    /// Starts the provider on `port` for one client whose answers go to `redirect_uri`.
    /// `users`: `{"login": {"password": "…", "claims": {…}}}`.
    pub fn start(port: u16, client_id: &str, client_secret: &str, redirect_uri: &str, users: &str) -> OidcProvider {
        let install = install_dir();
        assert!(
            install.join("node_modules/oidc-provider").exists(),
            "oidc-provider is not installed in {} (run the suite with scripts/test)",
            install.display()
        );
        // ES modules resolve packages from the script's own directory upwards.
        let script = install.join(format!("provider-{}.mjs", crate::random_suffix()));
        std::fs::write(&script, include_str!("../oidc/provider.mjs")).expect("write the provider script");
        let dir = tempfile::Builder::new().prefix("portcullis-oidc-").tempdir().expect("temp dir");
        let log = dir.path().join("provider.out");
        let out = std::fs::File::create(&log).expect("log");
        let mut child = Command::new("node")
            .arg(&script)
            .env("PORT", port.to_string())
            .env("CLIENT_ID", client_id)
            .env("CLIENT_SECRET", client_secret)
            .env("REDIRECT_URI", redirect_uri)
            .env("OIDC_USERS", users)
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("run node (apt-get install nodejs npm)");
        let up = wait_until(Duration::from_secs(20), || {
            matches!(child.try_wait(), Ok(None)) && TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        let _ = std::fs::remove_file(&script);
        if !up {
            stop(&mut child, libc::SIGTERM, Duration::from_secs(5));
            panic!("the OpenID provider did not start: {}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        OidcProvider { child, port, log, _dir: dir }
    }

    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        stop(&mut self.child, libc::SIGTERM, Duration::from_secs(5));
    }
}
