//! The tokens approval mails carry. Each approver's mail for a request waiting at a level gets
//! two: a reply token (in the address a reply goes to: answering by mail, once) and a link
//! token (the web UI's approval page, for that approver, signed in; opening it decides
//! nothing). Random, 160 bits, lower-case base32; only their SHA-256 is stored.

use portcullis_store::MailToken;

use crate::auth::Caller;
use crate::error::{AppError, AppResult};
use crate::state::App;

/// A token's length in characters.
pub const TOKEN_CHARS: usize = 32;

/// A new random token.
pub fn new_token() -> String {
    let mut bytes = [0u8; 20];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    data_encoding::BASE32_NOPAD.encode(&bytes).to_ascii_lowercase()
}

/// The stored form of a token.
pub fn token_hash(token: &str) -> String {
    use sha2::Digest;
    data_encoding::HEXLOWER.encode(&sha2::Sha256::digest(token.to_ascii_lowercase().as_bytes()))
}

/// The two tokens of one approver's mail.
pub struct MailTokens {
    pub reply: String,
    pub link: String,
}

/// Issues `user_id`'s tokens for `request_id` at `level`, valid for `hours`.
pub async fn issue(state: &App, request_id: &str, level: i64, user_id: &str, hours: i64) -> AppResult<MailTokens> {
    let now = state.now();
    let until = now + hours * 3_600_000_000;
    let t = MailTokens { reply: new_token(), link: new_token() };
    let (reply, link) = (token_hash(&t.reply), token_hash(&t.link));
    state
        .store
        .issue_mail_tokens(&[("reply", &reply), ("link", &link)], request_id, level, user_id, now, until)
        .await?;
    Ok(t)
}

/// The request an approval link opens, for the approver it was sent to.
pub async fn open_link(state: &App, caller: &Caller, token: &str) -> AppResult<String> {
    let unknown = || {
        AppError::new(
            crate::error::ErrorKind::NotFound,
            "link_invalid",
            "this approval link is not valid; the requests waiting for you are under Approvals",
        )
    };
    if token.len() != TOKEN_CHARS {
        return Err(unknown());
    }
    let t: MailToken = state.store.mail_token(&token_hash(token)).await?.ok_or_else(unknown)?;
    if t.kind != "link" {
        return Err(unknown());
    }
    if t.user_id != caller.user.id {
        return Err(AppError::refused(
            "link_other_user",
            format!(
                "this approval link was sent to another approver; you are signed in as {} — sign out and in as them, \
                 or find your own requests under Approvals",
                caller.user.username
            ),
        ));
    }
    if t.expires_at <= state.now() {
        return Err(AppError::new(
            crate::error::ErrorKind::Conflict,
            "link_expired",
            "this approval link has expired; the request, if it still waits for you, is under Approvals",
        ));
    }
    Ok(t.request_id)
}
