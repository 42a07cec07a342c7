//! The pre-authentication gate: how many connections may be between accept and a successful
//! sign-in, in total and from one address. When either limit is reached, the newcomer is let
//! in and the oldest waiting connection (from that address, or overall) is dropped: a client
//! that signs in within a second or two gets through even while silent or stalling
//! connections arrive, and one address flooding the gate only ever drops its own.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// Limits on unauthenticated connections.
#[derive(Debug, Clone, Copy)]
pub struct GateLimits {
    pub total: usize,
    pub per_source: usize,
}

struct Waiting {
    source: IpAddr,
    evict: watch::Sender<bool>,
}

#[derive(Default)]
struct Inner {
    next: u64,
    waiting: BTreeMap<u64, Waiting>,
    per_source: HashMap<IpAddr, usize>,
    warned: Option<Instant>,
}

impl Inner {
    fn remove(&mut self, id: u64) -> Option<Waiting> {
        let w = self.waiting.remove(&id)?;
        if let Some(n) = self.per_source.get_mut(&w.source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&w.source);
            }
        }
        Some(w)
    }
}

pub struct Gate {
    /// What waits here, for the log: `ssh`, `telnet`, `http`.
    name: &'static str,
    limits: GateLimits,
    inner: Mutex<Inner>,
}

/// A connection's place at the gate; leaving (authenticated, or gone) frees it.
pub struct Ticket {
    id: u64,
    gate: Arc<Gate>,
    /// Turns true when the connection was dropped to make room.
    pub evicted: watch::Receiver<bool>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.gate.lock().remove(self.id);
    }
}

impl Gate {
    pub fn new(name: &'static str, limits: GateLimits) -> Arc<Gate> {
        Arc::new(Gate {
            name,
            limits: GateLimits { total: limits.total.max(1), per_source: limits.per_source.max(1) },
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lets a connection from `source` in, dropping the oldest waiting one if a limit is
    /// reached.
    pub fn admit(self: &Arc<Self>, source: IpAddr) -> Ticket {
        let mut inner = self.lock();
        let from_source = inner.per_source.get(&source).copied().unwrap_or(0);
        let victim = if from_source >= self.limits.per_source {
            inner.waiting.iter().find(|(_, w)| w.source == source).map(|(id, _)| *id)
        } else if inner.waiting.len() >= self.limits.total {
            inner.waiting.keys().next().copied()
        } else {
            None
        };
        if let Some(id) = victim {
            if let Some(w) = inner.remove(id) {
                w.evict.send_replace(true);
            }
            if inner.warned.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                inner.warned = Some(Instant::now());
                tracing::warn!(
                    %source,
                    waiting = inner.waiting.len(),
                    gate = self.name,
                    "too many connections waiting to sign in or send a request; dropping the oldest"
                );
            }
        }
        let id = inner.next;
        inner.next += 1;
        let (evict, evicted) = watch::channel(false);
        inner.waiting.insert(id, Waiting { source, evict });
        *inner.per_source.entry(source).or_insert(0) += 1;
        Ticket { id, gate: self.clone(), evicted }
    }

    /// Connections waiting to sign in.
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn the_oldest_waiting_connection_makes_room() {
        let gate = Gate::new("test", GateLimits { total: 3, per_source: 2 });
        let a1 = gate.admit(ip(1));
        let a2 = gate.admit(ip(1));
        // A third from the same address drops that address's oldest, not anyone else's.
        let b1 = gate.admit(ip(2));
        let a3 = gate.admit(ip(1));
        assert!(*a1.evicted.borrow());
        assert!(!*a2.evicted.borrow() && !*b1.evicted.borrow() && !*a3.evicted.borrow());
        assert_eq!(gate.waiting(), 3);
        // Full: a newcomer from elsewhere drops the oldest overall.
        let c1 = gate.admit(ip(3));
        assert!(*a2.evicted.borrow() && !*b1.evicted.borrow());
        // Leaving (signed in, or gone) frees the place.
        drop(b1);
        let d1 = gate.admit(ip(4));
        assert!(!*a3.evicted.borrow() && !*c1.evicted.borrow() && !*d1.evicted.borrow());
        assert_eq!(gate.waiting(), 3);
        drop((a1, a2, a3, c1, d1));
        assert_eq!(gate.waiting(), 0);
    }
}
