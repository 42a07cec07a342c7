//! Creating requests: one request per account, each with its own outcome; the governing
//! policy of every account resolved first, since a detail one policy requires is required for
//! all (R-REQ-1).

use std::collections::HashSet;

use jiff::tz::TimeZone;
use portcullis_core::policy::AccessType;
use portcullis_core::request::{self, Action};
use portcullis_core::schedule::{allowed_until, local_slot};
use portcullis_store::{NewRequest, Policy};

use super::{check_comment, parse_access_type, RequestView, MAX_ASSETS};
use crate::auth::Caller;
use crate::error::{AppError, AppResult};
use crate::policy_cache::{Ask, PolicySnapshot};
use crate::state::App;

/// One account asked for, with its access type (`password`, `ssh_key`, `ssh`, `rdp`, `telnet`).
#[derive(Debug, Clone)]
pub struct AccountChoice {
    pub account_id: String,
    pub access_type: String,
}

/// What the requester asks for.
#[derive(Debug, Clone, Default)]
pub struct NewRequests {
    pub accounts: Vec<AccountChoice>,
    pub emergency: bool,
    /// Now when absent; RFC 3339, or a local date-time in the requester's time zone.
    pub start_at: Option<String>,
    /// The policy's duration when absent.
    pub duration_minutes: Option<i64>,
    pub ticket: Option<String>,
    pub reason_code: Option<String>,
    pub comment: Option<String>,
}

impl NewRequests {
    /// The request as saved in a favorite: the JSON body of `POST /api/v1/requests` (the
    /// start time is not kept: a favorite starts now when submitted).
    pub fn to_json(&self) -> serde_json::Value {
        let accounts: Vec<_> = self
            .accounts
            .iter()
            .map(|a| serde_json::json!({ "account_id": a.account_id, "access_type": a.access_type }))
            .collect();
        let mut v = serde_json::json!({ "accounts": accounts, "emergency": self.emergency });
        for (k, value) in [("ticket", &self.ticket), ("reason_code", &self.reason_code), ("comment", &self.comment)] {
            if let Some(x) = value {
                v[k] = serde_json::json!(x);
            }
        }
        if let Some(d) = self.duration_minutes {
            v["duration_minutes"] = serde_json::json!(d);
        }
        v
    }

    /// A saved request back (the inverse of [`Self::to_json`]); `None` if it is not one.
    pub fn from_json(v: &serde_json::Value) -> Option<NewRequests> {
        let text = |k: &str| v.get(k).and_then(serde_json::Value::as_str).map(str::to_owned);
        let accounts = v
            .get("accounts")?
            .as_array()?
            .iter()
            .map(|a| {
                Some(AccountChoice {
                    account_id: a.get("account_id")?.as_str()?.to_owned(),
                    access_type: a.get("access_type")?.as_str()?.to_owned(),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(NewRequests {
            accounts,
            emergency: v.get("emergency").and_then(serde_json::Value::as_bool).unwrap_or(false),
            start_at: text("start_at"),
            duration_minutes: v.get("duration_minutes").and_then(serde_json::Value::as_i64),
            ticket: text("ticket"),
            reason_code: text("reason_code"),
            comment: text("comment"),
        })
    }
}

/// The outcome for one account.
pub struct AccountOutcome {
    pub account_id: String,
    pub access_type: String,
    pub result: AppResult<RequestView>,
}

pub struct Batch {
    pub batch_id: String,
    /// One per account, in the order asked.
    pub outcomes: Vec<AccountOutcome>,
}

/// A start time: RFC 3339 with an offset, or a local date-time (`2026-12-01T09:00`) in the
/// requester's time zone (R-REQ-1). A local time the clocks skip (spring forward) or show twice
/// (fall back) is refused with the reason, never moved silently.
pub fn parse_local_or_ts(field: &str, text: &str, tz: &TimeZone) -> AppResult<i64> {
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return Ok(t.as_microsecond());
    }
    let dt = text.parse::<jiff::civil::DateTime>().map_err(|_| {
        AppError::invalid(
            field,
            format!("'{text}' is neither an RFC 3339 time nor a local date-time such as 2026-12-01T09:00"),
        )
    })?;
    let zone = tz.iana_name().unwrap_or("your time zone");
    let ambiguous = tz.to_ambiguous_zoned(dt);
    match ambiguous.offset() {
        jiff::tz::AmbiguousOffset::Gap { .. } => Err(AppError::invalid(
            field,
            format!("{text} does not exist in {zone} (the clocks skip it); choose another time, or give an offset"),
        )),
        jiff::tz::AmbiguousOffset::Fold { before, after } => {
            let with = |o: jiff::tz::Offset| {
                let (sign, secs) = if o.seconds() < 0 { ('-', -o.seconds()) } else { ('+', o.seconds()) };
                format!("{}{sign}{:02}:{:02}", dt.strftime("%Y-%m-%dT%H:%M:%S"), secs / 3600, secs % 3600 / 60)
            };
            Err(AppError::invalid(
                field,
                format!(
                    "{text} happens twice in {zone} (the clocks go back); say which: {} or {}",
                    with(before),
                    with(after)
                ),
            ))
        }
        jiff::tz::AmbiguousOffset::Unambiguous { .. } => ambiguous
            .unambiguous()
            .map(|z| z.timestamp().as_microsecond())
            .map_err(|_| AppError::invalid(field, format!("'{text}' is out of range"))),
    }
}

fn validate(req: &NewRequests) -> AppResult<()> {
    if req.accounts.is_empty() {
        return Err(AppError::invalid("accounts", "name at least one account"));
    }
    if req.accounts.len() > 500 {
        return Err(AppError::invalid("accounts", "at most 500 accounts per request"));
    }
    check_comment(req.comment.as_deref())?;
    let mut seen = HashSet::new();
    for (i, a) in req.accounts.iter().enumerate() {
        if !seen.insert((a.account_id.as_str(), a.access_type.as_str())) {
            return Err(AppError::invalid(
                format!("accounts[{i}]"),
                format!("names account {} with {} access a second time; name each once", a.account_id, a.access_type),
            ));
        }
    }
    for (field, v) in [("ticket", &req.ticket), ("reason_code", &req.reason_code)] {
        if let Some(v) = v {
            portcullis_core::validate::name(field, v)?;
        }
    }
    Ok(())
}

fn no_policy(access_type: AccessType, emergency: bool, start: Option<&str>, why: &str, advice: &str) -> AppError {
    let when = match (emergency, start) {
        (true, _) => "as an emergency".to_owned(),
        (false, Some(t)) => format!("starting {t}"),
        (false, None) => "now".to_owned(),
    };
    AppError::refused(
        "no_governing_policy",
        format!("you may not request {} access to this account {when}: {why}; {advice}", access_type.as_str(),),
    )
}

/// Validates and creates one request per account. Every refusal, of the whole request or of
/// one account, is audited with what was asked.
pub async fn create(state: &App, caller: &Caller, req: NewRequests) -> AppResult<Batch> {
    let asked = |a: &AccountChoice| serde_json::json!({ "account_id": a.account_id, "access_type": a.access_type });
    let summary = serde_json::json!({
        "accounts": req.accounts.iter().take(50).map(asked).collect::<Vec<_>>(),
        "emergency": req.emergency,
        "start_at": req.start_at,
        "ticket": req.ticket,
    });
    let actor = caller.actor();
    match create_unaudited(state, caller, req).await {
        Err(e) => {
            crate::audit::refusal(state, &actor, "request.create", "request", "", &e, summary).await;
            Err(e)
        }
        Ok(batch) => {
            for o in &batch.outcomes {
                if let Err(e) = &o.result {
                    let details = serde_json::json!({
                        "account_id": o.account_id, "access_type": o.access_type, "batch_id": batch.batch_id,
                    });
                    crate::audit::refusal(state, &actor, "request.create", "account", &o.account_id, e, details).await;
                }
            }
            Ok(batch)
        }
    }
}

async fn create_unaudited(state: &App, caller: &Caller, req: NewRequests) -> AppResult<Batch> {
    let now = state.now();
    validate(&req)?;
    if let Some(code) = &req.reason_code {
        if !state.store.reason_codes().await?.iter().any(|r| &r.name == code) {
            return Err(AppError::invalid(
                "reason_code",
                format!("'{code}' is not a reason code; see GET /api/v1/reason-codes"),
            ));
        }
    }
    let tz = TimeZone::get(&caller.user.time_zone).unwrap_or(TimeZone::UTC);
    let start = req.start_at.as_deref().map(|t| parse_local_or_ts("start_at", t, &tz)).transpose()?;
    // A minute's grace for clocks and typing; earlier than that is a mistake, not "now".
    if start.is_some_and(|s| s < now - 60_000_000) {
        return Err(AppError::invalid("start_at", "is in the past; leave it out to start now, or give a later time"));
    }
    let access_types = req
        .accounts
        .iter()
        .enumerate()
        .map(|(i, a)| parse_access_type(&format!("accounts[{i}].access_type"), &a.access_type))
        .collect::<AppResult<Vec<_>>>()?;
    let rules = state.policies.get(&state.store).await?;
    let assets: HashSet<&str> = req.accounts.iter().filter_map(|a| rules.asset_of(&a.account_id)).collect();
    if assets.len() > MAX_ASSETS {
        return Err(AppError::invalid(
            "accounts",
            format!("a request may name accounts on at most {MAX_ASSETS} assets (found {})", assets.len()),
        ));
    }
    let sessions_enabled = if access_types.iter().any(|t| t.is_session()) {
        state.store.service_enabled(portcullis_store::SESSION_REQUESTS_SETTING).await?
    } else {
        true
    };

    // Resolve the governing policy of every account first.
    let governing: Vec<AppResult<&Policy>> = req
        .accounts
        .iter()
        .zip(&access_types)
        .map(|(a, &access_type)| {
            let ask = Ask {
                user_id: &caller.user.id,
                account_id: &a.account_id,
                access_type,
                at: start.unwrap_or(now),
                emergency: req.emergency,
            };
            let r = rules.resolve(&ask, &tz)?;
            match r.governing {
                Some(id) => rules.policy(&id).ok_or_else(AppError::internal),
                None => {
                    // The policy that came furthest tells why (a window, an expiry, emergency).
                    let furthest = r.verdicts.iter().filter_map(|v| v.eliminated).max();
                    let (why, advice) = match furthest {
                        Some(portcullis_core::policy::Elimination::ChangedByRequester) => (
                            "you changed the entitlement or policy that would grant it, and no other Security \
                             Policy Administrator has confirmed it since (a change that benefits its author needs a \
                             second administrator)",
                            "ask another Security Policy Administrator to confirm it (`portcullis entitlement \
                             confirm NAME`, `portcullis policy confirm NAME`, or the button on its page)",
                        ),
                        Some(e) => (e.describe(), "ask a Security Policy Administrator, or choose another time"),
                        None => (
                            "no policy covers this account for you",
                            "ask a Security Policy Administrator, or choose another time",
                        ),
                    };
                    Err(no_policy(access_type, req.emergency, req.start_at.as_deref(), why, advice))
                }
            }
        })
        .collect();
    // Which policies (by name) require a detail that is missing; the message names them.
    let needing = |f: fn(&Policy) -> bool| {
        let mut names: Vec<String> =
            governing.iter().flatten().filter(|p| f(p)).map(|p| format!("'{}'", p.name)).collect();
        names.dedup();
        names
    };
    let missing = |what: &str, names: Vec<String>| {
        let s = if names.len() == 1 { "y" } else { "ies" };
        format!("{what} is required by the polic{s} {} governing this request", names.join(", "))
    };
    let ticket = needing(|p| p.settings.ticket_required);
    if !ticket.is_empty() && req.ticket.is_none() {
        return Err(AppError::invalid("ticket", missing("a ticket number", ticket)));
    }
    let reason = needing(|p| p.settings.reason_required);
    if !reason.is_empty() && req.reason_code.is_none() {
        return Err(AppError::invalid("reason_code", missing("a reason code", reason)));
    }
    let comment = needing(|p| p.settings.comment_required);
    if !comment.is_empty() && req.comment.as_deref().is_none_or(str::is_empty) {
        return Err(AppError::invalid("comment", missing("a comment", comment)));
    }

    let batch_id = uuid::Uuid::new_v4().to_string();
    let mut outcomes = Vec::with_capacity(req.accounts.len());
    for (i, choice) in req.accounts.iter().enumerate() {
        let result = async {
            if access_types[i].is_session() && !sessions_enabled {
                return Err(AppError::refused(
                    "service_disabled",
                    "session requests are switched off by an Appliance Administrator; request password access, or ask them to switch sessions on",
                ));
            }
            let policy = *governing[i].as_ref().map_err(Clone::clone)?;
            let one = One { account_id: &choice.account_id, access_type: access_types[i], policy, start };
            create_one(state, caller, &rules, &tz, &req, &batch_id, one, now).await
        }
        .await;
        outcomes.push(AccountOutcome {
            account_id: choice.account_id.clone(),
            access_type: choice.access_type.clone(),
            result,
        });
    }
    Ok(Batch { batch_id, outcomes })
}

struct One<'a> {
    account_id: &'a str,
    access_type: AccessType,
    policy: &'a Policy,
    start: Option<i64>,
}

#[allow(clippy::too_many_arguments)]
async fn create_one(
    state: &App,
    caller: &Caller,
    rules: &PolicySnapshot,
    tz: &TimeZone,
    req: &NewRequests,
    batch_id: &str,
    one: One<'_>,
    now: i64,
) -> AppResult<RequestView> {
    let policy = one.policy;
    let asset_id = rules.asset_of(one.account_id).ok_or_else(|| AppError::not_found("account"))?;
    let s = &policy.settings;
    let (start_at, mut end_at) = request::period(
        now,
        one.start,
        req.duration_minutes,
        s.default_duration_minutes,
        s.max_duration_minutes,
        s.duration_changeable,
    )?;
    // Access is only usable inside the windows' overlap: clip the end (see core::policy).
    let ent_w = rules.entitlement_windows.get(&policy.entitlement_id).cloned().unwrap_or_default();
    if !(ent_w.is_unrestricted() && policy.windows.is_unrestricted()) {
        let from =
            jiff::Timestamp::from_microsecond(start_at).map_err(|_| AppError::invalid("start_at", "out of range"))?;
        let until = jiff::Timestamp::from_microsecond(end_at)
            .map_err(|_| AppError::invalid("duration_minutes", "out of range"))?;
        debug_assert!(ent_w.permits_slot(local_slot(from, tz)));
        end_at = allowed_until(from, until, tz, |slot| ent_w.permits_slot(slot) && policy.windows.permits_slot(slot))
            .as_microsecond();
    }
    let ctx = rules.approval(&policy.id);
    let notify = if req.emergency {
        ctx.approvers_per_level.concat()
    } else {
        ctx.approvers_per_level.first().cloned().unwrap_or_default()
    };
    let new = NewRequest {
        batch_id: batch_id.to_owned(),
        requester_id: caller.user.id.clone(),
        account_id: one.account_id.to_owned(),
        asset_id: asset_id.to_owned(),
        access_type: one.access_type,
        policy_id: policy.id.clone(),
        emergency: req.emergency,
        start_at,
        end_at,
        ticket: req.ticket.clone(),
        reason_code: req.reason_code.clone(),
        comment: req.comment.clone(),
        review_required: s.review_required,
        approved_at_once: s.auto_approve || req.emergency,
        simultaneous_access: s.simultaneous_access,
        notify,
    };
    let created = state.store.create_request(&caller.actor(), now, new).await?;
    // A new request has no approvals yet.
    let pending_approvals = super::pending_count(&created, &ctx, &[]);
    Ok(RequestView { request: created, pending_approvals })
}

/// Submits a revoked or denied request again, with the same account and details, starting
/// now; the requester only. The old request stays as it is.
pub async fn resubmit(state: &App, caller: &Caller, id: &str) -> AppResult<Batch> {
    let (r, rel) = super::relation_to(state, caller, id).await?;
    if !rel.requester {
        return Err(AppError::forbidden("only the requester may resubmit this request"));
    }
    request::check_after(r.state, r.ended_by, Action::Resubmit)
        .map_err(|e| AppError::conflict(portcullis_store::state_code(r.state), e.to_string()))?;
    let minutes = (r.end_at - r.start_at) / 60_000_000;
    let again = NewRequests {
        accounts: vec![AccountChoice {
            account_id: r.account_id.clone(),
            access_type: r.access_type.as_str().to_owned(),
        }],
        emergency: r.emergency,
        start_at: None,
        duration_minutes: Some(minutes.max(1)),
        ticket: r.ticket.clone(),
        reason_code: r.reason_code.clone(),
        comment: r.comment.clone(),
    };
    create(state, caller, again).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_times_the_clocks_skip_or_repeat_are_refused_with_the_reason() {
        let paris = TimeZone::get("Europe/Paris").unwrap();
        // 2026-03-29 02:30 does not exist in Paris; 2026-10-25 02:30 happens twice.
        let gap = parse_local_or_ts("start_at", "2026-03-29T02:30", &paris).unwrap_err();
        assert_eq!(gap.field.as_deref(), Some("start_at"));
        assert!(gap.message.contains("does not exist in Europe/Paris"), "{}", gap.message);
        let fold = parse_local_or_ts("start_at", "2026-10-25T02:30", &paris).unwrap_err();
        assert!(fold.message.contains("happens twice"), "{}", fold.message);
        // Both suggestions parse, and mean the two different instants.
        let suggested: Vec<i64> =
            fold.message.split_whitespace().filter_map(|w| parse_local_or_ts("start_at", w, &paris).ok()).collect();
        assert_eq!(suggested.len(), 2, "{}", fold.message);
        assert_eq!(suggested[1] - suggested[0], 3_600_000_000);
        let ok = parse_local_or_ts("start_at", "2026-10-25T04:30", &paris).unwrap();
        assert_eq!(ok, "2026-10-25T03:30:00Z".parse::<jiff::Timestamp>().unwrap().as_microsecond());
        let explicit = parse_local_or_ts("start_at", "2026-10-25T02:30:00+01:00", &paris).unwrap();
        assert_eq!(explicit, "2026-10-25T01:30:00Z".parse::<jiff::Timestamp>().unwrap().as_microsecond());
        assert!(parse_local_or_ts("start_at", "tomorrow", &paris).is_err());
    }
}
