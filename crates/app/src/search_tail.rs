//! Several nodes: the sessions live on the other nodes, indexed here as they run. Each is
//! followed from its recording on the directory the nodes share, as it is written (a chunk a
//! second while the session is busy), and its events are fed to this node's index like those
//! of its own sessions — so a search through any node finds what a session on another typed a
//! moment ago, without asking the other nodes (a node that is down takes nothing from search).
//! A session not on a shared directory is left to the indexing of ended sessions.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_search::SearchIndex;
use portcullis_store::SessionRecord;

use crate::error::{AppError, AppResult};
use crate::state::App;

/// How often the other nodes' new sessions are looked for.
const LOOK: Duration = Duration::from_secs(2);
/// How often a followed recording is read for new chunks.
const POLL: Duration = Duration::from_secs(1);
/// Sessions are looked for again this far back (a row committed after a later one).
const MARGIN: i64 = 60_000_000;

/// The sessions followed here, and those wholly indexed by following (not indexed again from
/// their recordings when they end).
#[derive(Clone, Default)]
pub struct Followed {
    now: Arc<Mutex<HashSet<String>>>,
    complete: Arc<Mutex<HashSet<String>>>,
}

impl Followed {
    /// Whether the session was wholly indexed as it ran (asked once, when it has ended).
    pub fn take_complete(&self, id: &str) -> bool {
        self.complete.lock().unwrap_or_else(|p| p.into_inner()).remove(id)
    }

    /// Whether the session's recording is being read now.
    pub fn is_following(&self, id: &str) -> bool {
        self.now.lock().unwrap_or_else(|p| p.into_inner()).contains(id)
    }

    fn start(&self, id: &str) -> bool {
        self.now.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_owned())
    }

    fn stop(&self, id: &str, complete: bool) {
        self.now.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        if complete {
            self.complete.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_owned());
        }
    }

    /// How many sessions are followed now.
    pub fn len(&self) -> usize {
        self.now.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Looks for the sessions other nodes start, and follows each (see the module's note).
pub async fn run(state: App, index: SearchIndex, followed: Followed) {
    let mut since = 0i64;
    loop {
        let (mut cursor, mut newest) = (since, since);
        loop {
            let batch = match state.store.live_elsewhere(&state.node, cursor, 500).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot list the other nodes' live sessions");
                    break;
                }
            };
            let full = batch.len() == 500;
            for s in batch {
                newest = newest.max(s.started_at);
                cursor = s.started_at;
                let Some(file) = s.recording.clone() else { continue };
                if followed.is_following(&s.id)
                    || !tokio::fs::try_exists(state.recordings.join(&file)).await.unwrap_or(false)
                {
                    continue;
                }
                if followed.start(&s.id) {
                    tokio::spawn(follow(state.clone(), index.clone(), s, followed.clone()));
                }
            }
            if !full {
                break;
            }
        }
        since = newest.saturating_sub(MARGIN).max(since);
        tokio::time::sleep(LOOK).await;
    }
}

async fn follow(state: App, index: SearchIndex, s: SessionRecord, followed: Followed) {
    let id = s.id.clone();
    let complete = match follow_one(&state, index, s).await {
        Ok(complete) => complete,
        Err(e) => {
            tracing::debug!(session = %id, error = %e.message, "another node's live session not followed for search");
            false
        }
    };
    followed.stop(&id, complete);
}

/// Feeds the session's recording into the index as it grows; `true` when it was read to its
/// end (sealed), `false` when the session ended without (its node lost).
async fn follow_one(state: &App, index: SearchIndex, s: SessionRecord) -> AppResult<bool> {
    let facts = crate::search::facts_of(state, &s).await;
    let open = crate::sessions::open_recording(state, s).await?;
    // Read from the start: whatever an earlier run of this node indexed of it goes first.
    index.delete_session(&open.session.id).map_err(|_| AppError::internal())?;
    let mut feed = index.live(facts);
    let end = crate::follow::follow_recording(state, &open, POLL, move |events| {
        for e in events {
            feed.event(e);
        }
        if !events.is_empty() {
            feed.quiet();
        }
        true
    })
    .await?;
    Ok(matches!(end, crate::follow::FollowEnd::Sealed))
}
