//! A cheap necessary condition for rules the literal prefilter cannot help: "every match holds a
//! run of at least `len` bytes, each from `set`" (a card number needs 13 digits in a row, a
//! token 20 characters of its alphabet). Texts without such a run are skipped without running
//! the regular expression; the search looks at every `len`-th byte only.

use regex_syntax::hir::{Class, Hir, HirKind};

/// Shorter runs skip too little to pay for the search.
const MIN_LEN: usize = 6;
/// Sets with more ASCII members than this are found in nearly any text.
const MAX_ASCII: usize = 64;

#[derive(Debug, Clone)]
pub(super) struct Run {
    set: [bool; 256],
    len: usize,
}

impl Run {
    /// The longest run every match of `pattern` must hold, if it is worth searching for.
    pub(super) fn of(pattern: &str) -> Option<Run> {
        let hir = regex_syntax::ParserBuilder::new().multi_line(true).crlf(true).build().parse(pattern).ok()?;
        let best = best_window(&hir)?;
        let ascii = best.set[..128].iter().filter(|&&b| b).count();
        (best.len >= MIN_LEN && ascii <= MAX_ASCII).then_some(best)
    }

    /// Does `text` hold `len` bytes of the set in a row? Looks at every `len`-th byte: a run
    /// that long cannot fall between two of them.
    pub(super) fn in_text(&self, text: &[u8]) -> bool {
        let (set, k, n) = (&self.set, self.len, text.len());
        let mut i = k - 1;
        while i < n {
            if !set[text[i] as usize] {
                i += k;
                continue;
            }
            let mut start = i;
            while start > 0 && set[text[start - 1] as usize] {
                start -= 1;
            }
            let mut end = i + 1;
            while end < n && end - start < k && set[text[end] as usize] {
                end += 1;
            }
            if end - start >= k {
                return true;
            }
            // `end` is outside the set: the next run starts after it.
            i = end + k;
        }
        false
    }
}

/// The longest stretch of consecutive parts of the pattern's top-level sequence that are runs.
fn best_window(hir: &Hir) -> Option<Run> {
    let parts: Vec<&Hir> = match hir.kind() {
        HirKind::Concat(parts) => parts.iter().collect(),
        HirKind::Capture(c) => return best_window(&c.sub),
        _ => vec![hir],
    };
    let mut best: Option<Run> = None;
    for start in 0..parts.len() {
        let mut acc = Run { set: [false; 256], len: 0 };
        for part in &parts[start..] {
            let Some(r) = run_of(part) else { break };
            if r.len == 0 && !zero_width(part) {
                // Optional: it may take bytes outside the run's set.
                break;
            }
            acc.len += r.len;
            for (a, b) in acc.set.iter_mut().zip(r.set) {
                *a |= b;
            }
            if best.as_ref().is_none_or(|b| acc.len > b.len) {
                best = Some(acc.clone());
            }
        }
    }
    best
}

fn zero_width(hir: &Hir) -> bool {
    matches!(hir.kind(), HirKind::Look(_) | HirKind::Empty)
}

/// When every match of `hir` consists only of bytes of one set: that set and the fewest
/// bytes a match takes.
fn run_of(hir: &Hir) -> Option<Run> {
    let mut set = [false; 256];
    let len = match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => 0,
        HirKind::Literal(lit) => {
            for &b in lit.0.iter() {
                set[b as usize] = true;
            }
            lit.0.len()
        }
        HirKind::Class(Class::Bytes(c)) => {
            for r in c.ranges() {
                for b in r.start()..=r.end() {
                    set[b as usize] = true;
                }
            }
            1
        }
        HirKind::Class(Class::Unicode(c)) => {
            for r in c.ranges() {
                for b in (r.start() as u32)..=(r.end() as u32).min(0x7f) {
                    set[b as usize] = true;
                }
                if r.end() as u32 > 0x7f {
                    // Any other character is encoded in bytes 0x80 and above only, at least one.
                    set[0x80..].fill(true);
                }
            }
            1
        }
        HirKind::Repetition(rep) => {
            let sub = run_of(&rep.sub)?;
            set = sub.set;
            sub.len.checked_mul(rep.min as usize)?
        }
        HirKind::Capture(c) => return run_of(&c.sub),
        HirKind::Concat(parts) => {
            let mut len = 0usize;
            for p in parts {
                let r = run_of(p)?;
                len = len.checked_add(r.len)?;
                for (a, b) in set.iter_mut().zip(r.set) {
                    *a |= b;
                }
            }
            len
        }
        HirKind::Alternation(parts) => {
            let mut len = usize::MAX;
            for p in parts {
                let r = run_of(p)?;
                len = len.min(r.len);
                for (a, b) in set.iter_mut().zip(r.set) {
                    *a |= b;
                }
            }
            len
        }
    };
    Some(Run { set, len })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(text: &[u8], run: &Run) -> bool {
        text.split(|&b| !run.set[b as usize]).any(|s| s.len() >= run.len)
    }

    #[test]
    fn runs_are_found_where_the_patterns_need_them() {
        let card = Run::of(r"\b4[0-9]{12}(?:[0-9]{3})?\b").expect("a digit run");
        assert_eq!(card.len, 13);
        assert!(card.set[b'4' as usize] && card.set[b'0' as usize] && !card.set[b'a' as usize]);
        let ssn = Run::of(r"[0-9]{3}-[0-9]{2}-[0-9]{4}").expect("digits and dashes");
        assert_eq!(ssn.len, 11);
        let tail = Run::of(r".*secret").expect("the literal after .*");
        assert_eq!(tail.len, 6);
        assert_eq!(Run::of(r"(?i)[a-z]{8}x").map(|r| r.len), Some(9), "case folding adds non-ASCII letters");
        assert!(Run::of(r"[0-9]{3}").is_none(), "too short to pay");
        assert!(Run::of(r".{40}").is_none(), "a set found in any text");
        assert!(Run::of(r"ab[0-9]?cdef").is_none(), "an optional part breaks the run: 'ab', 'cdef'");
        assert_eq!(Run::of(r"(?:abc|defgh)[0-9]{4}").map(|r| r.len), Some(7), "the shorter branch counts");
    }

    #[test]
    fn the_strided_search_agrees_with_a_plain_one() {
        // Texts of digits and letters in every mix (a fixed pseudo-random sequence).
        let mut seed = 0x2545_f491u32;
        for len in [6usize, 7, 13, 16] {
            let run = Run { set: core::array::from_fn(|b| (b as u8).is_ascii_digit()), len };
            for _ in 0..2000 {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let size = (seed % 80) as usize;
                let text: Vec<u8> = (0..size)
                    .map(|i| {
                        let bit = (seed.rotate_left(i as u32) ^ (i as u32).wrapping_mul(0x9e37)) % 7;
                        if bit == 0 {
                            b'x'
                        } else {
                            b'0' + (i % 10) as u8
                        }
                    })
                    .collect();
                assert_eq!(
                    run.in_text(&text),
                    naive(&text, &run),
                    "len {len}, text {:?}",
                    String::from_utf8_lossy(&text)
                );
            }
        }
    }

    #[test]
    fn a_text_the_rule_matches_always_holds_the_run() {
        let patterns =
            [r"\b4[0-9]{12}(?:[0-9]{3})?\b", r"[0-9]{3}-[0-9]{2}-[0-9]{4}", r"ghp_[0-9A-Za-z]{36}", r".*secret"];
        let texts = [
            "card 4111111111111111 ok",
            "4111111111111",
            "ssn 123-45-6789\n",
            "token ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "the secret is out",
            "é4111111111111é",
        ];
        for p in patterns {
            let Some(run) = Run::of(p) else { continue };
            let re = regex::bytes::Regex::new(p).unwrap();
            for t in texts {
                if re.is_match(t.as_bytes()) {
                    assert!(run.in_text(t.as_bytes()), "{p} matches {t:?} but its run was not found");
                }
            }
        }
    }
}
