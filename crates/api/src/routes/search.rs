//! Searching sessions (R-SES-12): what was typed, shown, transferred and opened, and who
//! connected where and when, in live and past sessions, with the second of each hit in the
//! recording. Only sessions the caller may replay are searched; every search is audited.

use axum::extract::State;
use axum::Json;
use portcullis_app::search as uc;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AnyUser, Authed};
use crate::dto::ts;
use crate::error::ApiResult;
use crate::extract::ApiQuery;
use crate::labels::Labels;
use crate::state::AppState;
use portcullis_store::Named;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(search_recordings))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// Words and "quoted phrases", all in one entry (case does not matter; a word with
    /// punctuation such as /etc/shadow must appear as written). Empty: the sessions matching
    /// the filters.
    q: Option<String>,
    /// The Portcullis user who ran the session (name).
    user: Option<String>,
    /// The target account's name.
    account: Option<String>,
    /// The asset's name.
    asset: Option<String>,
    /// ssh, telnet or rdp.
    protocol: Option<String>,
    /// Comma-separated: command, output, file, channel, content, session.
    kind: Option<String>,
    /// From this time: RFC 3339 (2026-11-23T00:00:00Z) or how long ago (7d, 12h, 30m).
    from: Option<String>,
    /// Before this time (same forms).
    to: Option<String>,
    /// 1 to 1000 (default 50).
    limit: Option<usize>,
}

/// One place the search matched.
#[derive(Serialize, ToSchema)]
pub struct SearchHitDto {
    session_id: String,
    /// command, output, file, channel, content or session.
    kind: String,
    /// Seconds into the recording (play it from here: `recording play ID --at SECONDS`).
    at_seconds: f64,
    /// When (RFC 3339).
    time: String,
    /// The matching text around the match.
    snippet: String,
    /// Byte ranges [start, end) of the matched words in `snippet`.
    highlights: Vec<[usize; 2]>,
    username: String,
    account_name: Option<String>,
    asset_name: Option<String>,
    protocol: String,
    client: String,
    /// The session is still running.
    live: bool,
    /// Viewing this session needs an approved request you do not hold: `snippet` is empty;
    /// ask with POST /api/v1/sessions/{id}/view-requests.
    view_approval_required: bool,
    request_id: Option<String>,
}

/// Searches the content and facts of the sessions you may replay (reviewers, Security Policy
/// Administrators, Auditors), newest first. Live sessions are searchable within a second or so.
#[utoipa::path(get, path = "/api/v1/recordings/search", tag = "sessions", operation_id = "search_recordings",
    params(SearchParams), responses((status = 200, description = "Hits, newest first", body = [SearchHitDto])))]
async fn search_recordings(
    State(state): State<AppState>,
    caller: Authed<AnyUser>,
    ApiQuery(p): ApiQuery<SearchParams>,
) -> ApiResult<Json<Vec<SearchHitDto>>> {
    let now = state.now();
    let when = |field: &str, v: &Option<String>| -> ApiResult<Option<i64>> {
        match v.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            Some(t) => Ok(Some(uc::parse_when(field, t, now)?)),
            None => Ok(None),
        }
    };
    let q = uc::Search {
        text: p.q.unwrap_or_default(),
        user: p.user.filter(|s| !s.is_empty()),
        account: p.account.filter(|s| !s.is_empty()),
        asset: p.asset.filter(|s| !s.is_empty()),
        protocol: p.protocol.filter(|s| !s.is_empty()),
        kinds: p
            .kind
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        from: when("from", &p.from)?,
        to: when("to", &p.to)?,
        limit: p.limit.unwrap_or(50),
    };
    let found = uc::search(&state, &caller, q).await?;
    let accounts: Vec<String> = found.iter().filter_map(|f| f.session.account_id.clone()).collect();
    let assets: Vec<String> = found.iter().filter_map(|f| f.session.asset_id.clone()).collect();
    let labels = Labels::load(&state, [(Named::Account, accounts), (Named::Asset, assets)]).await?;
    Ok(Json(
        found
            .into_iter()
            .map(|f| {
                let s = f.session;
                let account = s.account_id.as_deref().and_then(|a| labels.name(Named::Account, a));
                SearchHitDto {
                    session_id: s.id,
                    kind: f.hit.kind,
                    at_seconds: (f.hit.at / 1000) as f64 / 1000.0,
                    time: ts(f.hit.time),
                    snippet: f.hit.snippet,
                    highlights: f.hit.highlights.into_iter().map(|(a, b)| [a, b]).collect(),
                    username: s.username,
                    account_name: account.map(|n| n.rsplit_once('@').map_or(n.clone(), |(a, _)| a.to_owned())),
                    asset_name: s.asset_id.as_deref().and_then(|a| labels.name(Named::Asset, a)),
                    protocol: s.protocol,
                    client: s.client_addr,
                    live: s.ended_at.is_none(),
                    view_approval_required: f.withheld,
                    request_id: s.request_id,
                }
            })
            .collect(),
    ))
}
