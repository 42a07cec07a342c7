//! Searching sessions (R-SES-12): the node's index opened under its key, every live session
//! fed into it, sessions the live feed missed indexed from their recordings, and searches
//! answered only with the sessions the caller may replay.
//!
//! The index key is random, sealed by the vault like a recording's data key (setting
//! `search_index_key`, re-wrapped by `vault rotate-key`): the index — which holds what sessions
//! typed and showed — is readable only with the vault's key, like the recordings themselves.

use std::path::Path;

use portcullis_search::{Facts, Hit, Kind, SearchIndex, SearchQuery};
use portcullis_store::{NewEvent, SessionRecord};
use portcullis_vault::{KeyRing, SecretContext};
use serde_json::json;

use crate::auth::Caller;
use crate::error::{AppError, AppResult};
use crate::state::App;

/// The setting holding the sealed index key.
pub const KEY_SETTING: &str = "search_index_key";

fn context() -> SecretContext {
    SecretContext { account_id: "search-index".into(), kind: "search".into(), version: 1 }
}

/// Opens the index in `dir` (created with a new key on first use).
pub async fn open(state: &App, dir: &Path) -> AppResult<SearchIndex> {
    let key = match state.store.setting(KEY_SETTING).await? {
        Some(stored) => {
            let sealed = crate::totp_secret::decode(&stored).ok_or_else(|| {
                tracing::error!("the search index key setting is malformed");
                AppError::internal()
            })?;
            let plain = portcullis_vault::open(&state.vault, &context(), &sealed).map_err(|e| {
                tracing::error!(error = %e, "the search index key cannot be opened");
                AppError::conflict(
                    "vault_key_missing",
                    format!(
                        "the search index key cannot be opened with this server's vault keys ({e}): give this server \
                         the vault key the others of this database use (keys/vault.kek)"
                    ),
                )
            })?;
            let bytes: [u8; 32] = plain.expose().try_into().map_err(|_| AppError::internal())?;
            zeroize::Zeroizing::new(bytes)
        }
        None => {
            let key = portcullis_recording::new_key();
            let sealed = portcullis_vault::seal(&state.vault, &context(), &key[..]);
            state.store.put_internal_setting(KEY_SETTING, &crate::totp_secret::encode(&sealed)).await?;
            key
        }
    };
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || SearchIndex::open(&dir, &key)).await.map_err(|_| AppError::internal())?.map_err(
        |e| {
            tracing::error!(error = %e, "cannot open the search index");
            AppError::internal()
        },
    )
}

/// The sealed index key re-wrapped under the ring's current key (`None`: already is).
pub fn rewrap(ring: &KeyRing, stored: &str) -> Result<Option<String>, portcullis_vault::VaultError> {
    let sealed = crate::totp_secret::decode(stored).ok_or(portcullis_vault::VaultError::Tampered)?;
    if sealed.kek_id == ring.current().id() {
        return Ok(None);
    }
    Ok(Some(crate::totp_secret::encode(&portcullis_vault::rewrap(ring, &context(), &sealed)?)))
}

/// What every entry of a session carries.
pub fn facts(s: &SessionRecord, account: &str, asset: &str) -> Facts {
    Facts {
        session_id: s.id.clone(),
        user: s.username.clone(),
        account: account.to_owned(),
        asset: asset.to_owned(),
        protocol: s.protocol.clone(),
        client: s.client_addr.clone(),
        started_at: s.started_at,
    }
}

pub(crate) async fn facts_of(state: &App, s: &SessionRecord) -> Facts {
    let account = match &s.account_id {
        Some(id) => state.store.account(id).await.map(|a| a.name).unwrap_or_default(),
        None => String::new(),
    };
    let asset = match &s.asset_id {
        Some(id) => state.store.asset(id).await.map(|a| a.name).unwrap_or_default(),
        None => String::new(),
    };
    facts(s, &account, &asset)
}

/// Indexes an ended session from its recording (replacing what the index had of it).
pub async fn reindex(state: &App, index: &SearchIndex, s: SessionRecord) -> AppResult<u64> {
    let facts = facts_of(state, &s).await;
    let crate::sessions::OpenRecording { path, key, session } = crate::sessions::open_recording(state, s).await?;
    let index = index.clone();
    // Reading, decrypting and indexing a whole recording is done on a thread of its own at
    // the indexer's idle priority, so that it never takes CPU time from live sessions.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("search-reindex".into())
        .spawn(move || {
            portcullis_search::yield_to_sessions();
            let indexed = portcullis_recording::Reader::open(&path, &session.id, &key)
                .map_err(|e| AppError::conflict("recording_damaged", e.to_string()))
                .and_then(|reader| {
                    index
                        .reindex(&facts, reader.tolerating_cut())
                        .map_err(|e| AppError::conflict("recording_damaged", e.to_string()))
                });
            let _ = tx.send(indexed);
        })
        .map_err(|_| AppError::internal())?;
    rx.await.map_err(|_| AppError::internal())?
}

/// Keeps the index whole: at start, every ended session not wholly indexed (recorded before
/// the index existed, or cut by a crash) is indexed from its recording; then, every ten
/// seconds, the sessions whose live feed found the index's queue full, once they ended.
pub async fn run(state: App) {
    let Some(index) = state.search.clone() else { return };
    let ix = index.clone();
    let mut done = match tokio::task::spawn_blocking(move || ix.complete_sessions()).await {
        Ok(Ok(done)) => done,
        _ => Default::default(),
    };
    let mut after = String::new();
    let mut indexed = 0u64;
    loop {
        let batch = match state.store.recorded_sessions(&after, 200).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "search index catch-up cannot list sessions");
                break;
            }
        };
        let Some(last) = batch.last() else { break };
        after = last.id.clone();
        for s in batch {
            if done.remove(&s.id) {
                continue;
            }
            let id = s.id.clone();
            match reindex(&state, &index, s).await {
                Ok(_) => indexed += 1,
                Err(e) => tracing::warn!(session = %id, error = %e.message, "session not indexed"),
            }
        }
    }
    if indexed > 0 {
        tracing::info!(sessions = indexed, "indexed recorded sessions for search");
    }
    let mut pending: Vec<String> = Vec::new();
    // Several nodes: the sessions live on the others are indexed here as they run (followed
    // from the shared directory), and those the others end from now on that were not wholly
    // followed are indexed from their recordings (on the shared directory or the archive), so
    // any node finds any session.
    let followed = crate::search_tail::Followed::default();
    if state.store.backend() == portcullis_store::Backend::Postgres {
        tokio::spawn(crate::search_tail::run(state.clone(), index.clone(), followed.clone()));
    }
    let mut elsewhere = state.now();
    // Ended sessions still being read by their follower: looked at again next time.
    let mut deferred: Vec<SessionRecord> = Vec::new();
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(10)).await;
        // Sessions whose live feed overflowed: indexed from their recordings once ended (below).
        pending.extend(index.take_incomplete());
        if state.store.backend() == portcullis_store::Backend::Postgres {
            let mut ended = std::mem::take(&mut deferred);
            for s in state.store.ended_elsewhere(&state.node, elsewhere, 200).await.unwrap_or_default() {
                // Ended a moment ago: give its recorder a second to seal the file.
                if state.now() - s.ended_at.unwrap_or(0) < 2_000_000 {
                    break;
                }
                elsewhere = s.ended_at.unwrap_or(elsewhere);
                ended.push(s);
            }
            for s in ended {
                if followed.is_following(&s.id) {
                    deferred.push(s);
                    continue;
                }
                if followed.take_complete(&s.id) || pending.contains(&s.id) {
                    continue;
                }
                let id = s.id.clone();
                if let Err(e) = reindex(&state, &index, s).await {
                    tracing::debug!(session = %id, error = %e.message, "another node's session not indexed here");
                }
            }
        }
        let mut still = Vec::new();
        for id in pending.drain(..) {
            match state.store.session(&id).await {
                Ok(s) if s.ended_at.is_some() => {
                    if let Err(e) = reindex(&state, &index, s).await {
                        tracing::warn!(session = %id, error = %e.message, "session not indexed");
                    }
                }
                Ok(_) => still.push(id),
                Err(_) => {}
            }
        }
        pending = still;
    }
}

/// A search as a front end asks it.
#[derive(Debug, Clone, Default)]
pub struct Search {
    pub text: String,
    pub user: Option<String>,
    pub account: Option<String>,
    pub asset: Option<String>,
    pub protocol: Option<String>,
    /// `command`, `output`, `file`, `channel`, `content`, `session`.
    pub kinds: Vec<String>,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub limit: usize,
}

/// A hit and its session.
pub struct Found {
    pub hit: Hit,
    pub session: SessionRecord,
    /// Viewing this session needs an approved request the caller does not hold: the hit's
    /// text is withheld (the session and the second are shown, to ask for approval).
    pub withheld: bool,
}

/// Searches the sessions the caller may replay (their content is the recordings'): all of
/// them for Security Policy Administrators and Auditors, else those of requests the caller
/// reviews. Audited as `session.search` (the query, the filters, how many hits).
pub async fn search(state: &App, caller: &Caller, q: Search) -> AppResult<Vec<Found>> {
    let index = state.search.clone().ok_or_else(|| {
        AppError::conflict(
            "search_unavailable",
            "this server does not index sessions (storage.search_index = false in its configuration)",
        )
    })?;
    if !(1..=portcullis_search::MAX_LIMIT).contains(&q.limit) {
        return Err(AppError::invalid("limit", "must be 1 to 1000"));
    }
    if q.text.len() > portcullis_search::MAX_QUERY || q.text.chars().any(char::is_control) {
        return Err(AppError::invalid("q", "at most 500 characters, no control characters"));
    }
    let mut kinds = Vec::new();
    for k in &q.kinds {
        kinds.push(Kind::parse(k).ok_or_else(|| {
            AppError::invalid(
                "kind",
                format!("unknown kind '{k}': use command, output, file, channel, content or session"),
            )
        })?);
    }
    if let (Some(f), Some(t)) = (q.from, q.to) {
        if f >= t {
            return Err(AppError::invalid("from", "must be before `to`"));
        }
    }
    let everything = [portcullis_core::role::Role::SecurityPolicyAdmin, portcullis_core::role::Role::Auditor]
        .iter()
        .any(|r| caller.has(*r));
    let query = SearchQuery {
        text: q.text.clone(),
        user: q.user.clone(),
        account: q.account.clone(),
        asset: q.asset.clone(),
        protocol: q.protocol.clone(),
        kinds,
        from: q.from,
        to: q.to,
        // Others' hits are filtered below: look further.
        limit: if everything { q.limit } else { portcullis_search::MAX_LIMIT },
    };
    let hits = tokio::task::spawn_blocking(move || index.search(&query))
        .await
        .map_err(|_| AppError::internal())?
        .map_err(|e| match e {
            portcullis_search::SearchError::Query(m) => AppError::invalid("q", m),
            e => {
                tracing::error!(error = %e, "search failed");
                AppError::internal()
            }
        })?;
    let mut sessions: std::collections::HashMap<String, Option<(SessionRecord, bool)>> = Default::default();
    let mut out = Vec::new();
    for hit in hits {
        if out.len() >= q.limit {
            break;
        }
        if !sessions.contains_key(&hit.session_id) {
            let s = if everything {
                state.store.session(&hit.session_id).await.ok()
            } else {
                match crate::sessions::visible(state, caller, &hit.session_id).await {
                    Ok((s, rel)) if crate::access::may_replay(&rel).is_ok() => Some(s),
                    _ => None,
                }
            };
            let s = match s {
                Some(s) => {
                    let withheld = crate::recording_views::check(state, caller, &s).await.is_err();
                    Some((s, withheld))
                }
                None => None,
            };
            sessions.insert(hit.session_id.clone(), s);
        }
        if let Some(Some((s, withheld))) = sessions.get(&hit.session_id) {
            let mut hit = hit;
            if *withheld {
                hit.snippet.clear();
                hit.highlights.clear();
            }
            out.push(Found { session: s.clone(), hit, withheld: *withheld });
        }
    }
    let details = json!({
        "q": q.text, "user": q.user, "account": q.account, "asset": q.asset, "protocol": q.protocol,
        "kinds": q.kinds, "from": q.from, "to": q.to, "hits": out.len(),
    });
    state
        .store
        .record(&caller.actor(), state.now(), NewEvent::success("session.search", "session", "*").with_details(details))
        .await?;
    Ok(out)
}

/// A time a search is bounded by: RFC 3339, or how long before `now` (`7d`, `12h`, `30m`).
pub fn parse_when(field: &str, text: &str, now: i64) -> AppResult<i64> {
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return Ok(t.as_microsecond());
    }
    let bad = || {
        AppError::invalid(
            field,
            format!("'{text}' is not a time: use RFC 3339 (2026-11-23T00:00:00Z) or how long ago (7d, 12h, 30m)"),
        )
    };
    let unit = match text.chars().last() {
        Some('d') => 86_400,
        Some('h') => 3_600,
        Some('m') => 60,
        _ => return Err(bad()),
    };
    // The unit is one ASCII byte: what is before it is the number.
    let n: i64 = text[..text.len() - 1].parse().map_err(|_| bad())?;
    if !(0..=36_500 * 86_400 / unit).contains(&n) {
        return Err(bad());
    }
    Ok(now - n * unit * 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::parse_when;

    #[test]
    fn times_absolute_and_relative() {
        let now = 1_000_000_000_000_000;
        assert_eq!(parse_when("from", "7d", now).unwrap(), now - 7 * 86_400_000_000);
        assert_eq!(parse_when("from", "30m", now).unwrap(), now - 1_800_000_000);
        assert_eq!(parse_when("to", "2026-11-23T00:00:00Z", now).unwrap(), 1_795_392_000_000_000);
        for bad in ["", "7", "d", "7w", "-1d", "last week", "99999999d", "\u{80}", "7é", "é"] {
            let e = parse_when("from", bad, now).unwrap_err();
            assert!(e.message.contains("is not a time"), "{bad}: {}", e.message);
        }
    }
}
