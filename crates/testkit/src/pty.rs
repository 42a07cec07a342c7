//! A program run on a pseudo-terminal, as a person would run it, with what it shows collected
//! for the test to wait on (`expect`) and keystrokes sent (`send`). Stopped by PID on drop.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::process::stop;

pub struct Pty {
    child: Child,
    master: std::fs::File,
    screen: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Pty {
    /// Starts `cmd` on a new pseudo-terminal of 80x24 as its controlling terminal.
    pub fn spawn(mut cmd: Command) -> Pty {
        let mut master: libc::c_int = -1;
        let mut slave: libc::c_int = -1;
        let size = libc::winsize { ws_row: 24, ws_col: 80, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: openpty writes two descriptors into the given ints; the other pointers may be
        // null or point to valid structures.
        let r = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), &size) };
        assert_eq!(r, 0, "openpty failed: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors were just opened and are owned here.
        let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let slave_fd = slave.as_raw_fd();
        cmd.stdin(Stdio::from(slave.try_clone().expect("dup")))
            .stdout(Stdio::from(slave.try_clone().expect("dup")))
            .stderr(Stdio::from(slave));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::ioctl(slave_fd, libc::TIOCSCTTY, 0) < 0 {
                    // stdin is the slave too; fine when the descriptor number moved.
                    libc::ioctl(0, libc::TIOCSCTTY, 0);
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn on a pty");
        drop(cmd);
        let master = std::fs::File::from(master);
        let screen = Arc::new(Mutex::new(Vec::new()));
        let mut reading = master.try_clone().expect("dup master");
        let sink = screen.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reading.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Pty { child, master, screen, reader: Some(reader) }
    }

    /// Types `text`.
    pub fn send(&mut self, text: &str) {
        self.master.write_all(text.as_bytes()).expect("write to the pty");
        self.master.flush().expect("flush the pty");
    }

    /// Everything shown so far, as text.
    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned()
    }

    /// Waits until the screen contains `needle` (after `from` bytes); returns the screen.
    /// Panics with the screen after `limit`.
    pub fn expect(&self, needle: &str, limit: Duration) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if s.contains(needle) {
                return s;
            }
            if start.elapsed() > limit {
                panic!("waited {limit:?} for {needle:?}; the terminal shows:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the program to exit (at most `limit`); its exit code, if it exited.
    pub fn wait(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        stop(&mut self.child, libc::SIGTERM, Duration::from_secs(3));
        // The reader ends once the master's last users are gone.
        drop(self.reader.take());
    }
}
