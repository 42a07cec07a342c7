//! A real rsyslog receiving syslog on 127.0.0.1 at free high ports over UDP, TCP (octet
//! counting) and TLS (GnuTLS, with a throwaway self-signed certificate for 127.0.0.1), writing
//! each transport's messages to its own file; restarted and stopped by PID.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::process::{stop, wait_until};

pub struct Rsyslog {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub udp: u16,
    pub tcp: u16,
    pub tls: u16,
}

impl Rsyslog {
    pub fn start() -> Rsyslog {
        let bin = Path::new("/usr/sbin/rsyslogd");
        assert!(
            bin.exists(),
            "rsyslog not installed (apt-get install rsyslog rsyslog-gnutls); run the suite with scripts/test"
        );
        let dir = tempfile::Builder::new().prefix("portcullis-rsyslog-").tempdir().expect("temp dir");
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("certificate");
        std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).expect("cert");
        std::fs::write(dir.path().join("key.pem"), cert.key_pair.serialize_pem()).expect("key");
        std::fs::create_dir_all(dir.path().join("work")).expect("work dir");
        let mut r = Rsyslog { child: None, dir, udp: 0, tcp: 0, tls: 0 };
        let mut last = String::new();
        for _ in 0..3 {
            (r.udp, r.tcp, r.tls) = (crate::free_port(), crate::free_port(), crate::free_port());
            if r.spawn() {
                return r;
            }
            last = r.log();
        }
        panic!("rsyslogd did not start; its output:\n{last}");
    }

    /// The receiver's certificate (its own CA), for the sender's trust.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("rsyslogd.out")).unwrap_or_default()
    }

    fn spawn(&mut self) -> bool {
        let d = self.dir.path().display();
        let config = format!(
            r#"global(workDirectory="{d}/work" maxMessageSize="64k"
       defaultNetstreamDriverCAFile="{d}/cert.pem" defaultNetstreamDriverCertFile="{d}/cert.pem"
       defaultNetstreamDriverKeyFile="{d}/key.pem")
module(load="imudp")
module(load="imtcp" maxSessions="200")
template(name="raw" type="string" string="%rawmsg%\n")
ruleset(name="udp") {{ action(type="omfile" file="{d}/udp.log" template="raw" asyncWriting="off" flushOnTXEnd="on") }}
ruleset(name="tcp") {{ action(type="omfile" file="{d}/tcp.log" template="raw" asyncWriting="off" flushOnTXEnd="on") }}
ruleset(name="tls") {{ action(type="omfile" file="{d}/tls.log" template="raw" asyncWriting="off" flushOnTXEnd="on") }}
input(type="imudp" address="127.0.0.1" port="{udp}" ruleset="udp")
input(type="imtcp" address="127.0.0.1" port="{tcp}" ruleset="tcp")
input(type="imtcp" address="127.0.0.1" port="{tls}" ruleset="tls"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
"#,
            udp = self.udp,
            tcp = self.tcp,
            tls = self.tls,
        );
        let conf = self.dir.path().join("rsyslog.conf");
        std::fs::write(&conf, config).expect("config");
        let out = std::fs::File::create(self.dir.path().join("rsyslogd.out")).expect("output file");
        let mut child = Command::new("/usr/sbin/rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(self.dir.path().join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("start rsyslogd");
        let (tcp, tls) = (self.tcp, self.tls);
        let up = wait_until(Duration::from_secs(10), || {
            matches!(child.try_wait(), Ok(None))
                && TcpStream::connect(("127.0.0.1", tcp)).is_ok()
                && TcpStream::connect(("127.0.0.1", tls)).is_ok()
        });
        if !up {
            stop(&mut child, libc::SIGTERM, Duration::from_secs(5));
            return false;
        }
        self.child = Some(child);
        true
    }

    /// Stops the receiver (SIGTERM: it writes out what it received) and starts it again on
    /// the same ports.
    pub fn restart(&mut self) {
        self.stop();
        assert!(self.spawn(), "rsyslogd did not start again: {}", self.log());
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop(&mut c, libc::SIGTERM, Duration::from_secs(10));
        }
    }

    /// The messages received over `transport` (`udp`, `tcp` or `tls`), one per line.
    pub fn received(&self, transport: &str) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join(format!("{transport}.log")))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.stop();
    }
}
