//! Searching sessions: what was typed, shown, transferred and opened, and who connected where
//! and when; each hit opens the recording at its second (or the live session).

use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::session::Viewer;
use crate::view::{page, when};
use crate::Web;

#[derive(Deserialize, Default)]
pub struct SearchForm {
    q: Option<String>,
    user: Option<String>,
    account: Option<String>,
    asset: Option<String>,
    protocol: Option<String>,
    kind: Option<String>,
    since: Option<String>,
}

/// The snippet cut into plain and matched pieces (escaped by the template).
fn pieces(snippet: &str, highlights: &[(usize, usize)]) -> Vec<Value> {
    let mut out = Vec::new();
    let mut at = 0;
    for &(a, b) in highlights {
        if a < at || b > snippet.len() || !snippet.is_char_boundary(a) || !snippet.is_char_boundary(b) {
            continue;
        }
        if a > at {
            out.push(json!({ "text": &snippet[at..a], "mark": false }));
        }
        out.push(json!({ "text": &snippet[a..b], "mark": true }));
        at = b;
    }
    if at < snippet.len() {
        out.push(json!({ "text": &snippet[at..], "mark": false }));
    }
    out
}

pub async fn search(State(web): State<Web>, v: Viewer, Query(f): Query<SearchForm>) -> Response {
    let nonempty = |s: &Option<String>| s.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    let asked =
        [&f.q, &f.user, &f.account, &f.asset, &f.protocol, &f.kind, &f.since].iter().any(|s| nonempty(s).is_some());
    let mut ctx = json!({
        "title": "Search sessions",
        "q": { "q": f.q, "user": f.user, "account": f.account, "asset": f.asset, "protocol": f.protocol,
               "kind": f.kind, "since": f.since },
        "asked": asked,
    });
    if asked {
        let since = match nonempty(&f.since) {
            Some(s) => portcullis_app::search::parse_when("since", &s, web.now()).map(Some),
            None => Ok(None),
        };
        let found = match since {
            Ok(from) => {
                let q = portcullis_app::search::Search {
                    text: f.q.clone().unwrap_or_default(),
                    user: nonempty(&f.user),
                    account: nonempty(&f.account),
                    asset: nonempty(&f.asset),
                    protocol: nonempty(&f.protocol),
                    kinds: nonempty(&f.kind).into_iter().collect(),
                    from,
                    to: None,
                    limit: 100,
                };
                portcullis_app::search::search(&web, &v.caller, q).await
            }
            Err(e) => Err(e),
        };
        match found {
            Ok(found) => {
                let mut names = std::collections::HashMap::new();
                let mut rows = Vec::new();
                for f in found {
                    let s = &f.session;
                    let mut target = String::new();
                    for (kind, id) in [("account", &s.account_id), ("asset", &s.asset_id)] {
                        let Some(id) = id else { continue };
                        if !names.contains_key(id) {
                            let name = match kind {
                                "account" => web.store.account(id).await.map(|a| a.name).unwrap_or_default(),
                                _ => web.store.asset(id).await.map(|a| a.name).unwrap_or_default(),
                            };
                            names.insert(id.clone(), name);
                        }
                        if !target.is_empty() {
                            target.push('@');
                        }
                        target.push_str(names.get(id).map(String::as_str).unwrap_or("?"));
                    }
                    let secs = f.hit.at / 1_000_000;
                    let at = (f.hit.at / 1000) as f64 / 1000.0;
                    let live = s.ended_at.is_none();
                    let link = match (&s.request_id, live) {
                        (_, true) => Some(format!("/sessions/{}/watch", s.id)),
                        (Some(r), false) => Some(format!("/requests/{r}?session={}&at={at}#session-{}", s.id, s.id)),
                        (None, false) => None,
                    };
                    rows.push(json!({
                        "when": when(&v.zone, f.hit.time), "user": s.username, "target": target,
                        "protocol": s.protocol, "kind": f.hit.kind, "live": live, "link": link,
                        "at": format!("{}:{:02}", secs / 60, secs % 60),
                        "pieces": pieces(&f.hit.snippet, &f.hit.highlights), "withheld": f.withheld,
                    }));
                }
                ctx["rows"] = Value::Array(rows);
            }
            Err(e) => ctx["problem"] = json!(e.message),
        }
    }
    page(&web, &v, "search.html", ctx)
}

#[cfg(test)]
mod tests {
    use super::pieces;

    #[test]
    fn snippets_are_cut_at_their_marks() {
        let p = pieces("sudo systemctl stop nginx", &[(5, 14), (15, 19)]);
        let text: Vec<(&str, bool)> =
            p.iter().map(|v| (v["text"].as_str().unwrap(), v["mark"].as_bool().unwrap())).collect();
        assert_eq!(text, [("sudo ", false), ("systemctl", true), (" ", false), ("stop", true), (" nginx", false)]);
        // Ranges out of order or outside the text are ignored.
        assert_eq!(pieces("abc", &[(2, 9), (1, 2), (0, 1)]).len(), 3);
    }
}
