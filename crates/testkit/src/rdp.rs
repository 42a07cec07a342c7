//! A real RDP target and a real RDP client for tests: Debian's `xrdp` (with its `xrdp-sesman`
//! starting an Xorg session through xorgxrdp for a throwaway Unix user), `Xvfb` as the client's
//! display (its framebuffer in a file, for screenshots), and FreeRDP's `xfreerdp`.
//!
//! xrdp reads the session manager's port from `/etc/xrdp/sesman.ini` (3350 on Debian), not
//! from its own configuration: one xrdp at a time can run per machine, so [`Xrdp`] holds a
//! lock file for its life (tests wait for each other). Both listen on the loopback only.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::process::{stop, wait_until};
use crate::sshd::UnixUser;

/// The session manager's port xrdp reads from `/etc/xrdp/sesman.ini`.
const SESMAN_PORT: u16 = 3350;

/// A display for X clients: `Xvfb` with its framebuffer in a file.
pub struct Xvfb {
    child: Child,
    pub display: String,
    dir: tempfile::TempDir,
}

impl Xvfb {
    pub fn start() -> Xvfb {
        assert!(Path::new("/usr/bin/Xvfb").exists(), "Xvfb is not installed (apt-get install xvfb); run scripts/test");
        let dir = tempfile::Builder::new().prefix("portcullis-xvfb-").tempdir().expect("temp dir");
        for _ in 0..20 {
            let n = 200 + u32::from_str_radix(&crate::random_suffix()[..4], 16).unwrap_or(0) % 700;
            if Path::new(&format!("/tmp/.X{n}-lock")).exists() {
                continue;
            }
            let mut child = Command::new("/usr/bin/Xvfb")
                .arg(format!(":{n}"))
                .args(["-screen", "0", "1024x768x24", "-nolisten", "tcp", "-fbdir"])
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start Xvfb");
            let socket = PathBuf::from(format!("/tmp/.X11-unix/X{n}"));
            if wait_until(Duration::from_secs(10), || {
                matches!(child.try_wait(), Ok(None)) && socket.exists() && dir.path().join("Xvfb_screen0").exists()
            }) {
                return Xvfb { child, display: format!(":{n}"), dir };
            }
            stop(&mut child, libc::SIGTERM, Duration::from_secs(2));
        }
        panic!("Xvfb did not start");
    }

    /// The screen now: (width, height, RGB pixels).
    pub fn screenshot(&self) -> Screen {
        Screen::from_xwd(&std::fs::read(self.dir.path().join("Xvfb_screen0")).expect("read the framebuffer"))
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        stop(&mut self.child, libc::SIGTERM, Duration::from_secs(5));
    }
}

/// A screenshot.
#[derive(Clone)]
pub struct Screen {
    pub width: usize,
    pub height: usize,
    /// RGB, row by row.
    pub pixels: Vec<u8>,
}

impl Screen {
    /// From an XWD image (what Xvfb's `-fbdir` keeps: 24-bit depth in 32-bit pixels).
    pub fn from_xwd(d: &[u8]) -> Screen {
        let field = |i: usize| u32::from_be_bytes([d[i * 4], d[i * 4 + 1], d[i * 4 + 2], d[i * 4 + 3]]) as usize;
        let (header, width, height, bytes_per_line, ncolors) = (field(0), field(4), field(5), field(12), field(19));
        let offset = header + ncolors * 12;
        let mut pixels = Vec::with_capacity(width * height * 3);
        for y in 0..height {
            let row = &d[offset + y * bytes_per_line..];
            for x in 0..width {
                // Little-endian BGRX.
                pixels.extend_from_slice(&[row[x * 4 + 2], row[x * 4 + 1], row[x * 4]]);
            }
        }
        Screen { width, height, pixels }
    }

    /// The share of pixels in the top-left `w`×`h` that equal `other`'s.
    pub fn same_share(&self, other: &Screen, w: usize, h: usize) -> f64 {
        let mut same = 0;
        for y in 0..h.min(self.height).min(other.height) {
            for x in 0..w.min(self.width).min(other.width) {
                let a = (y * self.width + x) * 3;
                let b = (y * other.width + x) * 3;
                same += usize::from(self.pixels[a..a + 3] == other.pixels[b..b + 3]);
            }
        }
        same as f64 / (w * h) as f64
    }

    /// How many different colors the top-left `w`×`h` holds (a blank screen has one).
    pub fn colors(&self, w: usize, h: usize) -> usize {
        let mut seen = std::collections::HashSet::new();
        for y in 0..h.min(self.height) {
            for x in 0..w.min(self.width) {
                let a = (y * self.width + x) * 3;
                seen.insert([self.pixels[a], self.pixels[a + 1], self.pixels[a + 2]]);
            }
        }
        seen.len()
    }
}

/// xrdp and its session manager, for one throwaway user whose X session shows a window with
/// `text` (xmessage).
pub struct Xrdp {
    xrdp: Child,
    sesman: Child,
    port: u16,
    dir: tempfile::TempDir,
    _lock: std::fs::File,
}

impl Xrdp {
    pub fn start() -> Xrdp {
        for program in ["/usr/sbin/xrdp", "/usr/sbin/xrdp-sesman", "/usr/lib/xorg/Xorg"] {
            assert!(
                Path::new(program).exists(),
                "{program} is not installed (apt-get install xrdp xorgxrdp); run the suite with scripts/test"
            );
        }
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/tmp/portcullis-xrdp.lock")
            .expect("the xrdp lock file");
        // SAFETY: flock on an open descriptor has no memory-safety preconditions.
        assert_eq!(unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) }, 0, "lock xrdp");
        clear_dead_displays();
        let dir = tempfile::Builder::new().prefix("portcullis-xrdp-").tempdir().expect("temp dir");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert =
            rcgen::CertificateParams::new(vec!["localhost".into()]).expect("params").self_signed(&key).expect("cert");
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).expect("write cert");
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).expect("write key");
        let sesman_ini = std::fs::read_to_string("/etc/xrdp/sesman.ini").expect("/etc/xrdp/sesman.ini");
        let sesman_ini: String = sesman_ini
            .lines()
            .map(|l| match l.split_once('=') {
                Some(("ListenAddress", _)) => "ListenAddress=127.0.0.1".to_owned(),
                Some(("ListenPort", _)) => format!("ListenPort={SESMAN_PORT}"),
                Some(("LogFile", _)) => format!("LogFile={}", dir.path().join("sesman.log").display()),
                Some(("EnableSyslog", _)) => "EnableSyslog=false".to_owned(),
                Some(("KillDisconnected", _)) => "KillDisconnected=true".to_owned(),
                _ => l.to_owned(),
            })
            .map(|l| l + "\n")
            .collect();
        std::fs::write(dir.path().join("sesman.ini"), sesman_ini).expect("write sesman.ini");
        let log = |name: &str| std::fs::File::create(dir.path().join(name)).expect("log file");
        let mut sesman = Command::new("/usr/sbin/xrdp-sesman")
            .arg("-n")
            .arg("-c")
            .arg(dir.path().join("sesman.ini"))
            .stdout(log("sesman.out"))
            .stderr(log("sesman.err"))
            .stdin(Stdio::null())
            .spawn()
            .expect("start xrdp-sesman");
        let listening =
            |port: u16| TcpStream::connect(("127.0.0.1", port)).is_ok() || TcpStream::connect(("::1", port)).is_ok();
        if !wait_until(Duration::from_secs(15), || matches!(sesman.try_wait(), Ok(None)) && listening(SESMAN_PORT)) {
            stop(&mut sesman, libc::SIGTERM, Duration::from_secs(5));
            panic!(
                "xrdp-sesman did not start: {}",
                std::fs::read_to_string(dir.path().join("sesman.log")).unwrap_or_default()
            );
        }
        let mut last = String::new();
        for _ in 0..3 {
            let port = crate::free_port();
            std::fs::write(dir.path().join("xrdp.ini"), xrdp_ini(dir.path(), port)).expect("write xrdp.ini");
            let mut xrdp = Command::new("/usr/sbin/xrdp")
                .arg("-n")
                .arg("-c")
                .arg(dir.path().join("xrdp.ini"))
                .stdout(log("xrdp.out"))
                .stderr(log("xrdp.err"))
                .stdin(Stdio::null())
                .spawn()
                .expect("start xrdp");
            if wait_until(Duration::from_secs(15), || matches!(xrdp.try_wait(), Ok(None)) && listening(port)) {
                return Xrdp { xrdp, sesman, port, dir, _lock: lock };
            }
            stop(&mut xrdp, libc::SIGTERM, Duration::from_secs(5));
            last = std::fs::read_to_string(dir.path().join("xrdp.log")).unwrap_or_default();
        }
        stop(&mut sesman, libc::SIGTERM, Duration::from_secs(5));
        panic!("xrdp did not start; its log:\n{last}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// xrdp's and the session manager's logs.
    pub fn log(&self) -> String {
        ["xrdp.log", "sesman.log"]
            .iter()
            .map(|f| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The certificate xrdp presents (PEM).
    pub fn certificate_pem(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("cert.pem")).expect("cert")
    }
}

impl Drop for Xrdp {
    fn drop(&mut self) {
        stop(&mut self.xrdp, libc::SIGTERM, Duration::from_secs(5));
        stop(&mut self.sesman, libc::SIGTERM, Duration::from_secs(5));
    }
}

/// Removes the lock files and sockets of X displays whose server is gone: the sessions of
/// earlier tests' throwaway users end by SIGKILL, which leaves them, and sesman then picks
/// ever higher displays until the session's channel server no longer starts.
fn clear_dead_displays() {
    for n in 10..1000 {
        let lock = PathBuf::from(format!("/tmp/.X{n}-lock"));
        let Ok(text) = std::fs::read_to_string(&lock) else { continue };
        let alive = text.trim().parse::<u32>().is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            let _ = std::fs::remove_file(&lock);
            let _ = std::fs::remove_file(format!("/tmp/.X11-unix/X{n}"));
        }
    }
}

fn xrdp_ini(dir: &Path, port: u16) -> String {
    let d = dir.display();
    format!(
        "[Globals]\nini_version=1\nfork=false\nport=tcp://127.0.0.1:{port}\ntcp_nodelay=true\nsecurity_layer=tls\n\
         crypt_level=high\ncertificate={d}/cert.pem\nkey_file={d}/key.pem\nssl_protocols=TLSv1.2, TLSv1.3\n\
         autorun=Xorg\nallow_channels=true\nbitmap_cache=true\nbitmap_compression=true\nbulk_compression=true\n\
         max_bpp=24\nnew_cursors=true\nuse_fastpath=both\n\
         [Logging]\nLogFile={d}/xrdp.log\nLogLevel=INFO\nEnableSyslog=false\n\
         [Channels]\nrdpdr=true\nrdpsnd=true\ndrdynvc=true\ncliprdr=true\nrail=false\n\
         [Xorg]\nname=Xorg\nlib=libxup.so\nusername=ask\npassword=ask\nip=127.0.0.1\nport=-1\ncode=20\n"
    )
}

/// Gives `user` an X session that shows one window with `text` (xmessage), so the desktop is
/// the same every time.
pub fn desktop(user: &UnixUser, text: &str) {
    let script = user.home.join(".xsession");
    std::fs::write(&script, format!("#!/bin/sh\nexec xmessage -bg \"#3366cc\" -fg yellow -center \"{text}\"\n"))
        .expect("write .xsession");
    let _ = Command::new("chown").arg(format!("{}:", user.name)).arg(&script).status();
    let _ = Command::new("chmod").arg("755").arg(&script).status();
}

/// FreeRDP's `xfreerdp` on `display`, to 127.0.0.1:`port` as `user` with `password`, TLS
/// only, 800×600, trusting any certificate; `extra` arguments after. Its output goes to
/// `log`.
pub fn xfreerdp(display: &str, port: u16, user: &str, password: &str, extra: &[&str], log: &Path) -> Child {
    assert!(Path::new("/usr/bin/xfreerdp").exists(), "xfreerdp is not installed (apt-get install freerdp2-x11)");
    let out = std::fs::File::create(log).expect("xfreerdp log");
    Command::new("/usr/bin/xfreerdp")
        .arg(format!("/v:127.0.0.1:{port}"))
        .arg(format!("/u:{user}"))
        .arg(format!("/p:{password}"))
        .args(["/cert:ignore", "/size:800x600", "-wallpaper", "+clipboard", "/log-level:INFO"])
        .args((!extra.iter().any(|a| a.starts_with("/sec:"))).then_some("/sec:tls"))
        .args(extra)
        .env("DISPLAY", display)
        .env("HOME", log.parent().unwrap_or(Path::new("/tmp")))
        .stdout(out.try_clone().expect("log"))
        .stderr(out)
        .stdin(Stdio::null())
        .spawn()
        .expect("start xfreerdp")
}

/// FreeRDP's shadow server sharing its own Xvfb display: an RDP target that requires NLA
/// (CredSSP/NTLM against its SAM file of one user), on a 127.0.0.1 high port. An `xmessage`
/// with `text` shows on its screen.
pub struct Shadow {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    window: Child,
    _screen: Xvfb,
}

impl Shadow {
    pub fn start(user: &str, password: &str, text: &str) -> Shadow {
        let bin = Path::new("/usr/bin/freerdp-shadow-cli");
        assert!(bin.exists(), "freerdp-shadow-cli is not installed (apt-get install freerdp2-shadow-x11 winpr-utils)");
        let screen = Xvfb::start();
        let window = Command::new("/usr/bin/xmessage")
            .args(["-bg", "#cc6633", "-fg", "white", "-center", text])
            .env("DISPLAY", &screen.display)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start xmessage");
        let dir = tempfile::Builder::new().prefix("portcullis-shadow-").tempdir().expect("temp dir");
        let hash = Command::new("/usr/bin/winpr-hash").args(["-u", user, "-p", password, "-f", "1"]).output();
        let hash =
            String::from_utf8_lossy(&hash.expect("winpr-hash (apt-get install winpr-utils)").stdout).into_owned();
        let nt = hash.lines().last().unwrap_or_default().trim().to_owned();
        assert_eq!(nt.len(), 32, "winpr-hash gave no NT hash: {hash}");
        let sam = dir.path().join("sam");
        std::fs::write(&sam, format!("{user}:::{nt}:::\n")).expect("write the SAM file");
        let port = crate::free_port();
        let log = std::fs::File::create(dir.path().join("shadow.log")).expect("log");
        let child = Command::new(bin)
            .arg(format!("/port:{port}"))
            .arg("/bind-address:127.0.0.1")
            .arg(format!("/sam-file:{}", sam.display()))
            .args(["/sec:nla", "-may-interact"])
            .env("DISPLAY", &screen.display)
            .env("HOME", dir.path())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start freerdp-shadow-cli");
        let up = wait_until(Duration::from_secs(15), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        let shadow = Shadow { child, port, dir, window, _screen: screen };
        assert!(up, "freerdp-shadow-cli did not listen: {}", shadow.log());
        shadow
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("shadow.log")).unwrap_or_default()
    }
}

impl Drop for Shadow {
    fn drop(&mut self) {
        stop(&mut self.child, libc::SIGTERM, Duration::from_secs(5));
        stop(&mut self.window, libc::SIGTERM, Duration::from_secs(2));
    }
}
