//! Sign-in throttling kept in memory (per node): failed sign-ins per source address in a
//! sliding minute, and the failures and locks of usernames that do not exist, so that an
//! unknown name answers exactly like a known one (no account enumeration through lockout).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

/// Failed sign-ins one source address may make in a minute before it must wait.
pub const SOURCE_FAILURES_PER_MINUTE: usize = 30;
/// How many sources and unknown names are remembered at most (the oldest are forgotten).
const REMEMBERED: usize = 10_000;
const MINUTE: i64 = 60_000_000;

#[derive(Default)]
struct Inner {
    /// Failure times (µs) per source address, the last minute's.
    sources: HashMap<IpAddr, VecDeque<i64>>,
    /// Unknown usernames (lowercased): failures since the last lock, and the lock's end.
    phantoms: HashMap<String, (i64, i64)>,
}

#[derive(Default)]
pub struct Throttle {
    inner: Mutex<Inner>,
}

/// The address of a source as the API (`1.2.3.4`) or a proxy (`1.2.3.4:5678`) names it.
fn address(source: &str) -> Option<IpAddr> {
    source.parse::<SocketAddr>().map(|s| s.ip()).or_else(|_| source.parse::<IpAddr>()).ok()
}

impl Throttle {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// May `source` try to sign in now? No: it failed too often in the last minute; the
    /// answer is then how many seconds until it may.
    pub fn source_wait(&self, source: &str, now: i64) -> Option<i64> {
        let ip = address(source)?;
        let mut inner = self.lock();
        let times = inner.sources.get_mut(&ip)?;
        while times.front().is_some_and(|t| *t <= now - MINUTE) {
            times.pop_front();
        }
        if times.len() < SOURCE_FAILURES_PER_MINUTE {
            return None;
        }
        let oldest = times.front().copied().unwrap_or(now);
        Some(((oldest + MINUTE - now) / 1_000_000).max(1))
    }

    /// Counts a failed sign-in from `source`.
    pub fn source_failed(&self, source: &str, now: i64) {
        let Some(ip) = address(source) else { return };
        let mut inner = self.lock();
        if inner.sources.len() >= REMEMBERED && !inner.sources.contains_key(&ip) {
            inner.sources.retain(|_, t| t.back().is_some_and(|last| *last > now - MINUTE));
            if inner.sources.len() >= REMEMBERED {
                inner.sources.clear();
            }
        }
        let times = inner.sources.entry(ip).or_default();
        times.push_back(now);
        if times.len() > SOURCE_FAILURES_PER_MINUTE {
            times.pop_front();
        }
    }

    /// Is the unknown `username` "locked" (as a known user would be after as many failures)?
    pub fn phantom_locked(&self, username: &str, now: i64) -> bool {
        self.lock().phantoms.get(&username.to_lowercase()).is_some_and(|(_, until)| *until > now)
    }

    /// Counts a failure for the unknown `username`; true when it now "locks", as
    /// `Store::record_login_failure` does for a known user.
    pub fn phantom_failed(&self, username: &str, now: i64, threshold: i64, lock_until: i64) -> bool {
        let mut inner = self.lock();
        let key = username.to_lowercase();
        if inner.phantoms.len() >= REMEMBERED && !inner.phantoms.contains_key(&key) {
            inner.phantoms.retain(|_, (failures, until)| *until > now || *failures > 0);
            if inner.phantoms.len() >= REMEMBERED {
                inner.phantoms.clear();
            }
        }
        let entry = inner.phantoms.entry(key).or_insert((0, 0));
        if entry.1 > now {
            return false;
        }
        entry.0 += 1;
        if entry.0 >= threshold {
            *entry = (0, lock_until);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_waits_after_too_many_failures_within_a_minute() {
        let t = Throttle::default();
        let s = "192.0.2.7:40022";
        for i in 0..SOURCE_FAILURES_PER_MINUTE as i64 {
            assert_eq!(t.source_wait(s, i * 1_000_000), None);
            t.source_failed(s, i * 1_000_000);
        }
        // The same address from another port, and as the API names it.
        assert_eq!(t.source_wait("192.0.2.7:1", 30_000_000), Some(30));
        assert_eq!(t.source_wait("192.0.2.7", 59_000_000), Some(1));
        assert_eq!(t.source_wait("192.0.2.8", 30_000_000), None, "other addresses are not affected");
        // A minute after the first failure, one more try.
        assert_eq!(t.source_wait(s, 60_000_001), None);
    }

    #[test]
    fn unknown_names_lock_like_known_ones_and_the_lock_does_not_move() {
        let t = Throttle::default();
        for i in 0..4 {
            assert!(!t.phantom_failed("Ghost", i, 5, 100));
        }
        assert!(t.phantom_failed("ghost", 4, 5, 100), "the fifth failure locks");
        assert!(t.phantom_locked("GHOST", 50));
        // Failures while locked neither count nor extend the lock.
        assert!(!t.phantom_failed("ghost", 60, 5, 160));
        assert!(!t.phantom_locked("ghost", 100));
        assert!(!t.phantom_failed("ghost", 101, 5, 201), "after the lock, counting starts afresh");
    }
}
