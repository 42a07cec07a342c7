//! A real OpenLDAP `slapd` on 127.0.0.1 at free high ports, with its own configuration and
//! database in a temporary directory: plain LDAP (StartTLS offered) and LDAPS, with a
//! certificate for `127.0.0.1`/`localhost` issued by a throwaway test CA. Seeded with the base
//! `dc=example,dc=test`, `ou=people`, `ou=groups`, `ou=services` and a service account that
//! may read the directory; tests add and change entries with `ldapmodify`. Stopped by PID.

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::process::{stop, wait_until};

pub const BASE: &str = "dc=example,dc=test";
pub const PEOPLE: &str = "ou=people,dc=example,dc=test";
pub const GROUPS: &str = "ou=groups,dc=example,dc=test";
pub const SERVICES: &str = "ou=services,dc=example,dc=test";
pub const SERVICE_DN: &str = "cn=portcullis,ou=services,dc=example,dc=test";
pub const SERVICE_PASSWORD: &str = "service bind secret 7731";
const ROOT_DN: &str = "cn=admin,dc=example,dc=test";
const ROOT_PASSWORD: &str = "root secret 5512";

pub struct Slapd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// Plain LDAP (StartTLS available).
    pub port: u16,
    /// LDAPS.
    pub tls_port: u16,
}

/// The DN of user `uid` under `ou=people`.
pub fn user_dn(uid: &str) -> String {
    format!("uid={uid},{PEOPLE}")
}

/// The DN of group `cn` under `ou=groups`.
pub fn group_dn(cn: &str) -> String {
    format!("cn={cn},{GROUPS}")
}

impl Slapd {
    pub fn start() -> Slapd {
        let bin = Path::new("/usr/sbin/slapd");
        assert!(
            bin.exists(),
            "slapd not installed (apt-get install slapd ldap-utils); run the suite with scripts/test"
        );
        let dir = tempfile::Builder::new().prefix("portcullis-slapd-").tempdir().expect("temp dir");
        crate::tls::write_ca_and_server(dir.path());
        std::fs::create_dir_all(dir.path().join("db")).expect("db dir");
        std::fs::write(dir.path().join("slapd.conf"), config(dir.path())).expect("slapd.conf");
        std::fs::write(dir.path().join("seed.ldif"), seed()).expect("seed");
        let out = Command::new("/usr/sbin/slapadd")
            .arg("-f")
            .arg(dir.path().join("slapd.conf"))
            .arg("-l")
            .arg(dir.path().join("seed.ldif"))
            .output()
            .expect("run slapadd");
        assert!(out.status.success(), "slapadd failed: {}", String::from_utf8_lossy(&out.stderr));
        let mut s = Slapd { child: None, dir, port: 0, tls_port: 0 };
        for _ in 0..3 {
            (s.port, s.tls_port) = (crate::free_port(), crate::free_port());
            if s.spawn() {
                return s;
            }
        }
        panic!("slapd did not start; its output:\n{}", s.log());
    }

    /// `ldap://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// `ldaps://127.0.0.1:PORT`
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.tls_port)
    }

    /// The test CA that issued the server's certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Another CA, which did not issue the server's certificate.
    pub fn other_ca(&self) -> PathBuf {
        self.dir.path().join("other-ca.pem")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("slapd.out")).unwrap_or_default()
    }

    fn spawn(&mut self) -> bool {
        let log = std::fs::File::create(self.dir.path().join("slapd.out")).expect("log");
        let mut child = Command::new("/usr/sbin/slapd")
            .arg("-f")
            .arg(self.dir.path().join("slapd.conf"))
            .arg("-h")
            .arg(format!("ldap://127.0.0.1:{}/ ldaps://127.0.0.1:{}/", self.port, self.tls_port))
            // Debug level 0 keeps slapd in the foreground (its PID is the child's).
            .args(["-d", "0"])
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start slapd");
        let up = wait_until(Duration::from_secs(15), || {
            matches!(child.try_wait(), Ok(None))
                && TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && TcpStream::connect(("127.0.0.1", self.tls_port)).is_ok()
        });
        if !up {
            stop(&mut child, libc::SIGTERM, Duration::from_secs(5));
            return false;
        }
        self.child = Some(child);
        true
    }

    /// Stops the server (the directory is down until `resume`).
    pub fn pause(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop(&mut c, libc::SIGTERM, Duration::from_secs(10));
        }
    }

    /// Starts it again on the same ports.
    pub fn resume(&mut self) {
        assert!(self.spawn(), "slapd did not start again:\n{}", self.log());
    }

    /// Applies LDIF change records as the directory's root (`ldapmodify`).
    pub fn modify(&self, ldif: &str) {
        let mut child = Command::new("ldapmodify")
            .args(["-x", "-H", &self.url(), "-D", ROOT_DN, "-w", ROOT_PASSWORD])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ldapmodify (apt-get install ldap-utils)");
        child.stdin.take().expect("stdin").write_all(ldif.as_bytes()).expect("write ldif");
        let out = child.wait_with_output().expect("ldapmodify");
        assert!(out.status.success(), "ldapmodify failed: {}\n{ldif}", String::from_utf8_lossy(&out.stderr));
    }

    /// Adds a person `uid` with a password (cleartext in the test directory).
    pub fn add_user(&self, uid: &str, name: &str, mail: &str, password: &str) {
        self.modify(&format!(
            "dn: {}\nchangetype: add\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {name}\nsn: {name}\n\
             displayName: {name}\nmail: {mail}\nuserPassword: {password}\n",
            user_dn(uid)
        ));
    }

    /// Adds a directory account `uid` under `ou=services` (not a person: not synchronised as a
    /// user), with a password.
    pub fn add_account(&self, uid: &str, password: &str) {
        self.modify(&format!(
            "dn: uid={uid},{SERVICES}\nchangetype: add\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\n\
             userPassword: {password}\n"
        ));
    }

    /// Adds a group whose members are the given DNs (people or other groups).
    pub fn add_group(&self, cn: &str, members: &[String]) {
        let members: String = members.iter().map(|m| format!("member: {m}\n")).collect();
        self.modify(&format!("dn: {}\nchangetype: add\nobjectClass: groupOfNames\ncn: {cn}\n{members}", group_dn(cn)));
    }

    /// Sets an attribute of an entry (replacing its values).
    pub fn replace(&self, dn: &str, attribute: &str, value: &str) {
        self.modify(&format!("dn: {dn}\nchangetype: modify\nreplace: {attribute}\n{attribute}: {value}\n"));
    }

    /// Deletes an entry.
    pub fn delete(&self, dn: &str) {
        self.modify(&format!("dn: {dn}\nchangetype: delete\n"));
    }

    /// Whether `dn` can bind with `password` (`ldapwhoami` over LDAPS with the test CA).
    pub fn binds(&self, dn: &str, password: &str) -> bool {
        Command::new("ldapwhoami")
            .args(["-x", "-H", &self.ldaps_url(), "-D", dn, "-w", password])
            .env("LDAPTLS_CACERT", self.ca())
            .env("LDAPTLS_REQCERT", "demand")
            .output()
            .expect("run ldapwhoami")
            .status
            .success()
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.pause();
    }
}

fn config(dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {d}/slapd.pid
argsfile {d}/slapd.args
TLSCACertificateFile {d}/ca.pem
TLSCertificateFile {d}/server.pem
TLSCertificateKeyFile {d}/server.key
database mdb
maxsize 67108864
suffix "{BASE}"
rootdn "{ROOT_DN}"
rootpw "{ROOT_PASSWORD}"
directory {d}/db
index objectClass,uid,cn,member eq
access to attrs=userPassword
  by self write
  by anonymous auth
  by * none
access to *
  by dn.exact="{SERVICE_DN}" read
  by self read
  by * none
"#
    )
}

fn seed() -> String {
    format!(
        "dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n\
         dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n\n\
         dn: ou=services,{BASE}\nobjectClass: organizationalUnit\nou: services\n\n\
         dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: portcullis\n\
         userPassword: {SERVICE_PASSWORD}\n"
    )
}
