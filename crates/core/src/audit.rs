//! The audit log's hash chain (R-AUD-1).
//!
//! Every event is linked to the one before by an HMAC-SHA256 over the previous link and the
//! event's own fields. The key lives outside the database, so someone who can write the
//! database but not read the key can neither alter an event nor forge a consistent chain.
//! The chain head (last sequence number and link) is kept separately, so removing events
//! from the end is detected too.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub type Link = [u8; 32];

/// The link that precedes the first event.
pub const GENESIS: Link = [0u8; 32];

/// The fields of one audit event that the chain protects.
#[derive(Debug, Clone, Copy)]
pub struct AuditFields<'a> {
    pub seq: i64,
    pub at_micros: i64,
    pub actor_id: &'a str,
    pub actor_name: &'a str,
    pub action: &'a str,
    pub object_type: &'a str,
    pub object_id: &'a str,
    pub source: &'a str,
    pub outcome: &'a str,
    pub details: &'a str,
}

/// Computes the link of `event` given the link before it.
pub fn link(key: &[u8], prev: &Link, event: &AuditFields<'_>) -> Link {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("hmac accepts any key length");
    mac.update(b"portcullis-audit-v1");
    mac.update(prev);
    mac.update(&event.seq.to_be_bytes());
    mac.update(&event.at_micros.to_be_bytes());
    for field in [
        event.actor_id,
        event.actor_name,
        event.action,
        event.object_type,
        event.object_id,
        event.source,
        event.outcome,
        event.details,
    ] {
        mac.update(&(field.len() as u64).to_be_bytes());
        mac.update(field.as_bytes());
    }
    mac.finalize().into_bytes().into()
}

/// Why the chain is broken, at the first event where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenLink {
    /// The sequence number where the break was found (for a truncated tail: the first missing).
    pub seq: i64,
    pub reason: BreakReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakReason {
    /// An event is missing before this one, or events were reordered.
    SequenceGap,
    /// The stored back-link does not match the previous event's link.
    PreviousLinkMismatch,
    /// The event's content does not match its link: it was modified.
    ContentModified,
    /// Events were removed from the end of the log.
    TailRemoved,
    /// A stored link is not a 64-character hex string.
    MalformedLink,
    /// An anchor kept outside the database records an event the log no longer has (or has
    /// with another link): events were removed from the end and the head rolled back.
    AnchorMismatch,
}

impl BreakReason {
    pub fn describe(self) -> &'static str {
        match self {
            BreakReason::SequenceGap => "an event is missing before this one, or events were reordered",
            BreakReason::PreviousLinkMismatch => "the back-link does not match the previous event",
            BreakReason::ContentModified => "the event was modified after it was written",
            BreakReason::TailRemoved => "events were removed from the end of the log",
            BreakReason::MalformedLink => "the stored link is malformed",
            BreakReason::AnchorMismatch => {
                "the anchor kept outside the database records this event, which the log no longer holds as it \
                 was: events were removed from the end"
            }
        }
    }
}

/// Checks events one by one, in sequence order.
pub struct ChainVerifier<'k> {
    key: &'k [u8],
    expected_seq: i64,
    prev: Link,
    checked: u64,
}

impl<'k> ChainVerifier<'k> {
    pub fn new(key: &'k [u8]) -> Self {
        ChainVerifier { key, expected_seq: 1, prev: GENESIS, checked: 0 }
    }

    /// Feeds the next stored event with its stored back-link and link (hex).
    pub fn push(&mut self, event: &AuditFields<'_>, stored_prev: &str, stored_link: &str) -> Result<(), BrokenLink> {
        let broken = |reason| BrokenLink { seq: event.seq, reason };
        if event.seq != self.expected_seq {
            return Err(BrokenLink { seq: self.expected_seq.min(event.seq), reason: BreakReason::SequenceGap });
        }
        let prev = parse_link(stored_prev).ok_or(broken(BreakReason::MalformedLink))?;
        let stored = parse_link(stored_link).ok_or(broken(BreakReason::MalformedLink))?;
        if !bool::from(prev.ct_eq(&self.prev)) {
            return Err(broken(BreakReason::PreviousLinkMismatch));
        }
        let computed = link(self.key, &self.prev, event);
        if !bool::from(computed.ct_eq(&stored)) {
            return Err(broken(BreakReason::ContentModified));
        }
        self.prev = computed;
        self.expected_seq += 1;
        self.checked += 1;
        Ok(())
    }

    /// Compares the end of the chain with the separately stored head.
    pub fn finish(self, head_seq: i64, head_link: &str) -> Result<u64, BrokenLink> {
        let last = self.expected_seq - 1;
        if last < head_seq {
            return Err(BrokenLink { seq: last + 1, reason: BreakReason::TailRemoved });
        }
        let head = parse_link(head_link).ok_or(BrokenLink { seq: head_seq, reason: BreakReason::MalformedLink })?;
        if last > head_seq || !bool::from(head.ct_eq(&self.prev)) {
            return Err(BrokenLink { seq: head_seq.max(1), reason: BreakReason::PreviousLinkMismatch });
        }
        Ok(self.checked)
    }
}

pub fn link_hex(link: &Link) -> String {
    data_encoding::HEXLOWER.encode(link)
}

/// Whether one stored event's link was made with `key` from its stored back-link (the event
/// alone, not its place in the chain): tells a wrong key from the right one.
pub fn signed_with(key: &[u8], event: &AuditFields<'_>, stored_prev: &str, stored_link: &str) -> bool {
    match (parse_link(stored_prev), parse_link(stored_link)) {
        (Some(prev), Some(stored)) => bool::from(link(key, &prev, event).ct_eq(&stored)),
        _ => false,
    }
}

fn parse_link(hex: &str) -> Option<Link> {
    let bytes = data_encoding::HEXLOWER_PERMISSIVE.decode(hex.as_bytes()).ok()?;
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Stored {
        seq: i64,
        action: String,
        prev: String,
        link: String,
    }

    fn fields(s: &Stored) -> AuditFields<'_> {
        AuditFields {
            seq: s.seq,
            at_micros: 1_700_000_000_000_000 + s.seq,
            actor_id: "u1",
            actor_name: "alice",
            action: &s.action,
            object_type: "asset",
            object_id: "a1",
            source: "127.0.0.1",
            outcome: "success",
            details: "{}",
        }
    }

    fn chain(key: &[u8], n: i64) -> Vec<Stored> {
        let mut prev = GENESIS;
        (1..=n)
            .map(|seq| {
                let mut s = Stored { seq, action: format!("action{seq}"), prev: link_hex(&prev), link: String::new() };
                let l = link(key, &prev, &fields(&s));
                s.link = link_hex(&l);
                prev = l;
                s
            })
            .collect()
    }

    fn verify(key: &[u8], events: &[Stored], head_seq: i64, head: &str) -> Result<u64, BrokenLink> {
        let mut v = ChainVerifier::new(key);
        for e in events {
            v.push(&fields(e), &e.prev, &e.link)?;
        }
        v.finish(head_seq, head)
    }

    #[test]
    fn intact_chain_verifies() {
        let c = chain(b"k", 5);
        assert_eq!(verify(b"k", &c, 5, &c[4].link), Ok(5));
        assert_eq!(verify(b"k", &[], 0, &link_hex(&GENESIS)), Ok(0));
    }

    #[test]
    fn wrong_key_is_detected() {
        let c = chain(b"k", 3);
        assert_eq!(verify(b"other", &c, 3, &c[2].link).unwrap_err().reason, BreakReason::ContentModified);
    }

    #[test]
    fn modification_is_detected_at_the_event() {
        let mut c = chain(b"k", 5);
        c[2].action = "forged".into();
        let head = c[4].link.clone();
        assert_eq!(verify(b"k", &c, 5, &head), Err(BrokenLink { seq: 3, reason: BreakReason::ContentModified }));
    }

    #[test]
    fn deletion_is_detected() {
        let mut c = chain(b"k", 5);
        c.remove(1);
        let head = c[3].link.clone();
        assert_eq!(verify(b"k", &c, 5, &head), Err(BrokenLink { seq: 2, reason: BreakReason::SequenceGap }));
    }

    #[test]
    fn reordering_is_detected() {
        let mut c = chain(b"k", 5);
        c.swap(1, 2);
        let head = c[4].link.clone();
        assert_eq!(verify(b"k", &c, 5, &head).unwrap_err().seq, 2);
        // Swapping contents but keeping sequence numbers also breaks.
        let mut c = chain(b"k", 5);
        let (a, b) = (c[1].action.clone(), c[2].action.clone());
        c[1].action = b;
        c[2].action = a;
        let head = c[4].link.clone();
        assert_eq!(verify(b"k", &c, 5, &head), Err(BrokenLink { seq: 2, reason: BreakReason::ContentModified }));
    }

    #[test]
    fn tail_truncation_is_detected() {
        let c = chain(b"k", 5);
        let head = c[4].link.clone();
        assert_eq!(verify(b"k", &c[..3], 5, &head), Err(BrokenLink { seq: 4, reason: BreakReason::TailRemoved }));
    }
}
