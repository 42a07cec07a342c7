//! Reading an approver's reply to an approval mail (pure): the token in the address it was
//! sent to, the reply's own text (what the approver wrote, not the quoted original), and the
//! decision word that starts it.

/// The line approval mails start with; a reply's own text ends where it is quoted.
pub const MARKER: &str = "-- Reply above this line: APPROVE or DISAPPROVE, then a comment if you like --";

/// The token of a reply address `local+TOKEN@domain`, if `address` is `reply_address` tagged
/// with one. Compared without case (tokens are lower-case base32).
pub fn token_of(address: &str, reply_address: &str) -> Option<String> {
    let address = address.trim().trim_start_matches('<').trim_end_matches('>');
    let (local, domain) = address.rsplit_once('@')?;
    let (base_local, base_domain) = reply_address.rsplit_once('@')?;
    let (base, token) = local.split_once('+')?;
    if !base.eq_ignore_ascii_case(base_local) || !domain.eq_ignore_ascii_case(base_domain) {
        return None;
    }
    let token = token.to_ascii_lowercase();
    (token.len() == TOKEN_CHARS && token.bytes().all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)))
        .then_some(token)
}

pub use portcullis_app::approval_mail::{new_token, token_hash, TOKEN_CHARS};

/// The address a reply goes to for `token`.
pub fn tagged(reply_address: &str, token: &str) -> String {
    match reply_address.rsplit_once('@') {
        Some((local, domain)) => format!("{local}+{token}@{domain}"),
        None => reply_address.to_owned(),
    }
}

/// What the approver wrote: the text before the quoted original (a `>` line, an "On … wrote:"
/// line, an "Original Message" or "From:" header block, the approval mail's marker) or a
/// signature.
pub fn own_text(body: &str) -> String {
    let mut out = Vec::new();
    for line in body.lines() {
        let t = line.trim();
        let quoted = t.starts_with('>')
            || t.contains(MARKER)
            || t.starts_with("-- Reply above this line")
            || t.contains("Original Message")
            || t.starts_with("From:")
            || t.starts_with("________________")
            || t == "--"
            || (t.ends_with("wrote:") || t.ends_with("écrit :") || t.ends_with("schrieb:")) && t.len() > 6;
        if quoted {
            break;
        }
        out.push(line);
    }
    out.join("\n").trim().to_owned()
}

/// Why a reply's text gives no decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unclear {
    /// Nothing written above the quoted mail.
    Empty,
    /// The first word is neither APPROVE nor DISAPPROVE.
    NoWord,
    /// Both words in the approver's own text.
    Both,
}

impl Unclear {
    pub fn explain(&self) -> &'static str {
        match self {
            Unclear::Empty => {
                "the reply has no text of its own above the quoted mail; write APPROVE or DISAPPROVE as its first word"
            }
            Unclear::NoWord => {
                "the reply does not start with APPROVE or DISAPPROVE; write one of them as its first word"
            }
            Unclear::Both => "the reply says both APPROVE and DISAPPROVE; say one of them",
        }
    }
}

const YES: &[&str] = &["APPROVE", "APPROVED"];
const NO: &[&str] = &["DISAPPROVE", "DISAPPROVED", "DENY", "DENIED"];

/// The decision (`true`: approve) and the comment after the word, from the reply's own text.
pub fn decision(own: &str) -> Result<(bool, Option<String>), Unclear> {
    let words: Vec<String> =
        own.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_uppercase).collect();
    let first = words.first().ok_or(Unclear::Empty)?;
    let approve = if YES.contains(&first.as_str()) {
        true
    } else if NO.contains(&first.as_str()) {
        false
    } else {
        return Err(Unclear::NoWord);
    };
    let contrary = if approve { NO } else { YES };
    if words.iter().any(|w| contrary.contains(&w.as_str())) {
        return Err(Unclear::Both);
    }
    // The comment: what follows the word, punctuation before it dropped.
    let start = own.find(|c: char| c.is_alphanumeric()).unwrap_or(0);
    let after = &own[start..];
    let word_end = after.find(|c: char| !c.is_alphanumeric()).unwrap_or(after.len());
    let rest = after[word_end..].trim_start_matches(|c: char| c.is_whitespace() || ".,:;-!".contains(c)).trim();
    let comment: String = rest.split_whitespace().collect::<Vec<_>>().join(" ");
    Ok((approve, (!comment.is_empty()).then_some(comment)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_comes_from_the_tagged_reply_address_only() {
        let t = new_token();
        assert_eq!(t.len(), TOKEN_CHARS);
        let to = tagged("approvals@pam.example", &t);
        assert_eq!(token_of(&to, "approvals@pam.example"), Some(t.clone()));
        assert_eq!(token_of(&format!("<{}>", to.to_uppercase()), "approvals@pam.example"), Some(t.clone()));
        assert_eq!(token_of(&to, "other@pam.example"), None);
        assert_eq!(token_of(&format!("approvals+{t}@evil.example"), "approvals@pam.example"), None);
        assert_eq!(token_of("approvals@pam.example", "approvals@pam.example"), None);
        assert_eq!(token_of("approvals+short@pam.example", "approvals@pam.example"), None);
        assert_ne!(token_hash(&t), t);
        assert_eq!(token_hash(&t), token_hash(&t.to_uppercase()));
    }

    #[test]
    fn the_word_is_taken_from_the_reply_not_the_quoted_mail() {
        let quoted = format!("\n\nOn Mon, 1 Dec 2025, Portcullis wrote:\n> {MARKER}\n> Reply APPROVE or DISAPPROVE\n");
        assert_eq!(decision(&own_text(&format!("APPROVE{quoted}"))), Ok((true, None)));
        assert_eq!(
            decision(&own_text(&format!("disapprove: not during the freeze, please.{quoted}"))),
            Ok((false, Some("not during the freeze, please.".into())))
        );
        assert_eq!(
            decision(&own_text(&format!("Approve.\nGo ahead\n-- \nBob{quoted}"))),
            Ok((true, Some("Go ahead".into())))
        );
        // Only the quoted original says it.
        assert_eq!(decision(&own_text(&format!("Thanks{quoted}"))), Err(Unclear::NoWord));
        assert_eq!(decision(&own_text(&quoted)), Err(Unclear::Empty));
        assert_eq!(decision(&own_text(&format!("> APPROVE\n{quoted}"))), Err(Unclear::Empty));
        // Outlook's header block and our marker end the own text too.
        assert_eq!(decision(&own_text("ok\n-----Original Message-----\nAPPROVE")), Err(Unclear::NoWord));
        assert_eq!(decision(&own_text(&format!("{MARKER}\nAPPROVE"))), Err(Unclear::Empty));
        // Ambiguous.
        assert_eq!(decision("APPROVE or maybe DISAPPROVE"), Err(Unclear::Both));
        assert_eq!(decision("I approve"), Err(Unclear::NoWord));
    }
}
