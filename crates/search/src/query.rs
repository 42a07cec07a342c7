//! Searching: the query a user types (words and "quoted phrases", all required) with filters on
//! who, where, what kind and when; hits newest first with their second in the recording.

use std::ops::Bound;

use tantivy::collector::TopDocs;
use tantivy::query::{AllQuery, BooleanQuery, Occur, PhraseQuery, Query, RangeQuery, TermQuery};
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::snippet::SnippetGenerator;
use tantivy::{Order, TantivyDocument, Term};

use crate::{Kind, SearchError, SearchIndex, COMPLETE};

/// At most this many hits per search.
pub const MAX_LIMIT: usize = 1000;
/// The longest query accepted.
pub const MAX_QUERY: usize = 500;

/// What to look for.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    /// Words and "quoted phrases", all of which must appear (case does not matter); a word
    /// with punctuation (`/etc/shadow`, `10.0.0.5`) must appear as written. Empty: sessions
    /// matching the filters.
    pub text: String,
    pub user: Option<String>,
    pub account: Option<String>,
    pub asset: Option<String>,
    pub protocol: Option<String>,
    pub kinds: Vec<Kind>,
    /// Entries at or after (µs since the epoch).
    pub from: Option<i64>,
    /// Entries before (µs since the epoch).
    pub to: Option<i64>,
    pub limit: usize,
}

/// One place a search matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub session_id: String,
    pub kind: String,
    /// Microseconds into the recording.
    pub at: u64,
    /// When (µs since the epoch).
    pub time: i64,
    /// The matching text around the match (at most about 200 characters).
    pub snippet: String,
    /// Byte ranges of the matched words in `snippet`.
    pub highlights: Vec<(usize, usize)>,
}

/// The query's words and phrases, each a list of tokens as the index tokenized them.
fn pieces(index: &tantivy::Index, field: tantivy::schema::Field, text: &str) -> Result<Vec<Vec<String>>, SearchError> {
    let mut tokenizer =
        index.tokenizer_for_field(field).map_err(|e| SearchError::Query(format!("search index tokenizer: {e}")))?;
    let mut out = Vec::new();
    let mut parts: Vec<String> = Vec::new();
    for (i, quoted) in text.split('"').enumerate() {
        if i % 2 == 1 {
            parts.push(quoted.to_owned());
        } else {
            parts.extend(quoted.split_whitespace().map(str::to_owned));
        }
    }
    if text.matches('"').count() % 2 == 1 {
        return Err(SearchError::Query("the query has an unclosed quote (\")".into()));
    }
    for p in parts {
        let mut tokens = Vec::new();
        let mut stream = tokenizer.token_stream(&p);
        while let Some(t) = stream.next() {
            tokens.push(t.text.clone());
        }
        if !tokens.is_empty() {
            out.push(tokens);
        }
    }
    Ok(out)
}

impl SearchIndex {
    /// Runs a search. Errors name what to fix in the query.
    pub fn search(&self, q: &SearchQuery) -> Result<Vec<Hit>, SearchError> {
        if q.text.len() > MAX_QUERY {
            return Err(SearchError::Query(format!("the query is longer than {MAX_QUERY} characters")));
        }
        let limit = q.limit.clamp(1, MAX_LIMIT);
        let f = &self.fields;
        let mut must: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        let words = pieces(&self.index, f.text, &q.text)?;
        if words.len() > 32 {
            return Err(SearchError::Query("the query has more than 32 words or phrases".into()));
        }
        for tokens in &words {
            let terms: Vec<Term> = tokens.iter().map(|t| Term::from_field_text(f.text, t)).collect();
            let sub: Box<dyn Query> = if terms.len() == 1 {
                Box::new(TermQuery::new(terms[0].clone(), IndexRecordOption::WithFreqs))
            } else {
                Box::new(PhraseQuery::new(terms))
            };
            must.push((Occur::Must, sub));
        }
        if words.is_empty() {
            if !q.text.trim().is_empty() {
                return Err(SearchError::Query("the query has no words to look for".into()));
            }
            // No words: the sessions matching the filters.
            if q.kinds.is_empty() {
                must.push((Occur::Must, term(f.kind, Kind::Session.as_str())));
            }
            must.push((Occur::Must, Box::new(AllQuery)));
        }
        must.push((Occur::MustNot, term(f.kind, COMPLETE)));
        for (field, value) in
            [(f.user, &q.user), (f.account, &q.account), (f.asset, &q.asset), (f.protocol, &q.protocol)]
        {
            if let Some(v) = value {
                must.push((Occur::Must, term(field, &v.to_lowercase())));
            }
        }
        if !q.kinds.is_empty() {
            let any: Vec<(Occur, Box<dyn Query>)> =
                q.kinds.iter().map(|k| (Occur::Should, term(f.kind, k.as_str()))).collect();
            must.push((Occur::Must, Box::new(BooleanQuery::new(any))));
        }
        if q.from.is_some() || q.to.is_some() {
            let lo = q.from.map_or(Bound::Unbounded, |v| Bound::Included(Term::from_field_i64(f.time, v)));
            let hi = q.to.map_or(Bound::Unbounded, |v| Bound::Excluded(Term::from_field_i64(f.time, v)));
            must.push((Occur::Must, Box::new(RangeQuery::new(lo, hi))));
        }
        let query = BooleanQuery::new(must);
        let searcher = self.reader.searcher();
        let top = newest_first(&searcher, &query, limit)?;
        let mut snippets = SnippetGenerator::create(&searcher, &query, f.text)?;
        snippets.set_max_num_chars(200);
        let mut hits = Vec::with_capacity(top.len());
        for (_, addr) in top {
            let d: TantivyDocument = searcher.doc(addr)?;
            let text = d.get_first(f.text).and_then(|v| v.as_str()).unwrap_or("");
            let (snippet, highlights) = if words.is_empty() {
                (text.chars().take(200).collect(), Vec::new())
            } else {
                let s = snippets.snippet(text);
                let hl = s.highlighted().iter().map(|r| (r.start, r.end)).collect();
                (s.fragment().to_owned(), hl)
            };
            hits.push(Hit {
                session_id: d.get_first(f.session).and_then(|v| v.as_str()).unwrap_or("").to_owned(),
                kind: d.get_first(f.kind).and_then(|v| v.as_str()).unwrap_or("").to_owned(),
                at: d.get_first(f.at).and_then(|v| v.as_u64()).unwrap_or(0),
                time: d.get_first(f.time).and_then(|v| v.as_i64()).unwrap_or(0),
                snippet,
                highlights,
            });
        }
        Ok(hits)
    }
}

/// The `limit` newest matches. Segments are searched newest first (by their latest entry), and
/// the search stops when the next segment's latest entry is older than the `limit`-th match so
/// far: entries arrive in time order, so a common word costs the recent segments, not the index.
fn newest_first(
    searcher: &tantivy::Searcher,
    query: &dyn Query,
    limit: usize,
) -> Result<Vec<(Option<i64>, tantivy::DocAddress)>, SearchError> {
    use tantivy::collector::Collector;
    use tantivy::query::EnableScoring;
    let collector = TopDocs::with_limit(limit).order_by_fast_field::<i64>("time", Order::Desc);
    let weight = query.weight(EnableScoring::disabled_from_searcher(searcher))?;
    let mut segments = Vec::new();
    for (ord, reader) in searcher.segment_readers().iter().enumerate() {
        segments.push((reader.fast_fields().i64("time")?.max_value(), ord));
    }
    segments.sort_by(|a, b| b.cmp(a));
    let mut best: Vec<(Option<i64>, tantivy::DocAddress)> = Vec::new();
    for (latest, ord) in segments {
        if best.len() >= limit && best[limit - 1].0 >= Some(latest) {
            break;
        }
        let fruit = collector.collect_segment(weight.as_ref(), ord as u32, &searcher.segment_readers()[ord])?;
        best.extend(collector.merge_fruits(vec![fruit])?);
        best.sort_by_key(|b| std::cmp::Reverse(b.0));
        best.truncate(limit);
    }
    Ok(best)
}

fn term(field: tantivy::schema::Field, value: &str) -> Box<dyn Query> {
    Box::new(TermQuery::new(Term::from_field_text(field, value), IndexRecordOption::Basic))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Facts;
    use portcullis_recording::{Event, EventKind};

    fn facts(id: &str, user: &str, asset: &str, started: i64) -> Facts {
        Facts {
            session_id: id.into(),
            user: user.into(),
            account: "root".into(),
            asset: asset.into(),
            protocol: "ssh".into(),
            client: "127.0.0.1".into(),
            started_at: started,
        }
    }

    fn session(ix: &SearchIndex, f: &Facts, typed: &[(u64, &str)], shown: &[(u64, &str)]) {
        let mut live = ix.live(f.clone());
        live.event(&Event::new(0, EventKind::Meta, 0, b"{}".to_vec()));
        live.event(&Event::new(1, EventKind::Shell, 1, Vec::new()));
        let mut all: Vec<Event> = typed
            .iter()
            .map(|(t, s)| Event::new(*t, EventKind::Input, 1, format!("{s}\r").into_bytes()))
            .chain(shown.iter().map(|(t, s)| Event::new(*t, EventKind::Output, 1, format!("{s}\r\n").into_bytes())))
            .collect();
        all.sort_by_key(|e| e.at);
        for e in &all {
            live.event(e);
        }
        live.event(&Event::new(60_000_000, EventKind::End, 0, b"done".to_vec()));
    }

    #[test]
    fn finds_commands_phrases_and_filters_newest_first() {
        let tmp = tempfile::tempdir().unwrap();
        let key = zeroize::Zeroizing::new([7u8; 32]);
        let ix = SearchIndex::open(tmp.path(), &key).unwrap();
        let day = 86_400_000_000i64;
        let a = facts("s-a", "alice", "db1", 10 * day);
        let b = facts("s-b", "bob", "db1", 11 * day);
        let c = facts("s-c", "alice", "web1", 12 * day);
        session(&ix, &a, &[(5_000_000, "sudo systemctl stop postgresql")], &[(6_000_000, "Stopping PostgreSQL")]);
        session(&ix, &b, &[(7_000_000, "systemctl status postgresql")], &[(8_000_000, "stop requested by cron")]);
        session(&ix, &c, &[(9_000_000, "cat /etc/shadow")], &[]);
        ix.flush().unwrap();
        let q = |text: &str| SearchQuery { text: text.into(), limit: 10, ..SearchQuery::default() };

        let hits = ix.search(&q("\"systemctl stop\"")).unwrap();
        assert_eq!(hits.len(), 1, "{hits:?}");
        assert_eq!((hits[0].session_id.as_str(), hits[0].kind.as_str(), hits[0].at), ("s-a", "command", 5_000_000));
        assert_eq!(hits[0].time, 10 * day + 5_000_000);
        let (s, e) = hits[0].highlights[0];
        assert_eq!(&hits[0].snippet[s..e], "systemctl");

        // Words (not a phrase) must all be in one entry: the words in two entries of s-b do
        // not match it.
        let ids: Vec<String> = ix.search(&q("systemctl stop")).unwrap().into_iter().map(|h| h.session_id).collect();
        assert_eq!(ids, ["s-a"]);
        // Newest first.
        let ids: Vec<String> =
            ix.search(&q("systemctl postgresql")).unwrap().into_iter().map(|h| h.session_id).collect();
        assert_eq!(ids, ["s-b", "s-a"]);

        // Filters and kinds.
        let mut only = q("systemctl");
        only.user = Some("ALICE".into());
        assert!(ix.search(&only).unwrap().iter().all(|h| h.session_id == "s-a"));
        let mut cmds = q("stop");
        cmds.kinds = vec![Kind::Output];
        assert!(ix.search(&cmds).unwrap().iter().all(|h| h.kind == "output"));
        let mut window = q("systemctl");
        window.from = Some(11 * day);
        window.to = Some(12 * day);
        let w = ix.search(&window).unwrap();
        assert!(!w.is_empty() && w.iter().all(|h| h.session_id == "s-b"), "{w:?}");

        // A path as written; punctuation is not query syntax.
        assert_eq!(ix.search(&q("/etc/shadow")).unwrap()[0].session_id, "s-c");
        assert!(ix.search(&q("rm -rf /")).unwrap().is_empty());
        // No words: the sessions of the filter.
        let mut on_db1 = q("");
        on_db1.asset = Some("db1".into());
        let sessions = ix.search(&on_db1).unwrap();
        assert!(sessions.iter().all(|h| h.kind == "session") && sessions.len() >= 2, "{sessions:?}");
        assert!(matches!(ix.search(&q("\"open")), Err(SearchError::Query(_))));

        // Completeness markers; a session deleted is gone.
        assert_eq!(ix.complete_sessions().unwrap().len(), 3);
        ix.delete_session("s-c").unwrap();
        ix.flush().unwrap();
        assert!(ix.search(&q("/etc/shadow")).unwrap().is_empty());

        // Reopened from disk (encrypted) with the same key: still there.
        drop(ix);
        let again = SearchIndex::open(tmp.path(), &key).unwrap();
        assert_eq!(again.search(&q("\"systemctl stop\"")).unwrap().len(), 1);

        // Closed cleanly, then reopened: kept.
        again.close(tmp.path()).unwrap();
        drop(again);
        assert!(!tmp.path().join("open-since-boot").exists());
        let again = SearchIndex::open(tmp.path(), &key).unwrap();
        assert_eq!(again.search(&q("\"systemctl stop\"")).unwrap().len(), 1);
        drop(again);
        std::thread::sleep(std::time::Duration::from_millis(200));

        // Left open by a machine that stopped (another boot): it may be torn, so it starts
        // afresh (the server indexes the recordings again).
        std::fs::write(tmp.path().join("open-since-boot"), "another-boot").unwrap();
        let fresh = SearchIndex::open(tmp.path(), &key).unwrap();
        assert_eq!(fresh.entries(), 0);
        session(&fresh, &a, &[(5_000_000, "sudo systemctl stop postgresql")], &[]);
        fresh.flush().unwrap();
        drop(fresh);
        std::thread::sleep(std::time::Duration::from_millis(200));

        // An index that cannot be opened (here: its metadata replaced) starts afresh too.
        std::fs::write(tmp.path().join("meta.json"), b"not an index").unwrap();
        let fresh = SearchIndex::open(tmp.path(), &key).unwrap();
        assert_eq!(fresh.entries(), 0);
    }
}
