//! "What may I request?": the accounts and access types the caller's entitlements cover, each
//! with what its governing policy at the asked time requires (approvals, durations, ticket,
//! reason, comment, review), or why none governs then; searchable by asset or account name.

use std::collections::HashMap;

use jiff::tz::TimeZone;
use portcullis_core::policy::AccessType;
use portcullis_store::Named;

use super::create::parse_local_or_ts;
use super::parse_access_type;
use crate::auth::Caller;
use crate::error::{AppError, AppResult};
use crate::policy_cache::Ask;
use crate::state::App;

/// Narrows the options; names compare without regard to case.
#[derive(Debug, Clone, Default)]
pub struct OptionFilter {
    /// A part of the asset's or the account's name.
    pub search: Option<String>,
    /// The asset: its id or exact name.
    pub asset: Option<String>,
    /// The account: its id, or ACCOUNT@ASSET.
    pub account: Option<String>,
    pub access_type: Option<String>,
    /// When the access would start: RFC 3339 or a local time in the caller's zone; now if absent.
    pub at: Option<String>,
    /// Whether an emergency request would be governed (and by what).
    pub emergency: bool,
    pub limit: i64,
    pub offset: i64,
}

/// What the governing policy asks of a request.
#[derive(Debug, Clone)]
pub struct Terms {
    pub policy_id: String,
    pub policy_name: String,
    pub auto_approve: bool,
    /// Approvals needed over all levels (0 when approved automatically).
    pub approvals_required: u32,
    pub default_duration_minutes: i64,
    pub max_duration_minutes: i64,
    pub duration_changeable: bool,
    pub ticket_required: bool,
    pub reason_required: bool,
    pub comment_required: bool,
    pub review_required: bool,
    pub recorded: bool,
}

/// One account and access type the caller may request.
#[derive(Debug, Clone)]
pub struct RequestOption {
    pub account_id: String,
    pub account_name: String,
    pub asset_id: String,
    pub asset_name: String,
    pub access_type: AccessType,
    /// The governing policy at the asked time; none when no policy governs then.
    pub terms: Option<Terms>,
    /// Why no policy governs at the asked time.
    pub not_now: Option<String>,
    /// Whether a policy would govern an emergency request at the asked time.
    pub emergency_allowed: bool,
    /// Another request holds the account at the asked time (exclusive accounts wait).
    pub in_use: bool,
}

pub struct Options {
    pub at: i64,
    pub time_zone: String,
    /// How many options match the filter in all (the page holds `limit` of them).
    pub total: usize,
    pub items: Vec<RequestOption>,
}

/// The caller's request options, sorted by asset, account and access type.
pub async fn options(state: &App, caller: &Caller, f: OptionFilter) -> AppResult<Options> {
    if !(1..=1000).contains(&f.limit) {
        return Err(AppError::invalid("limit", "must be 1 to 1000"));
    }
    if f.offset < 0 {
        return Err(AppError::invalid("offset", "must be 0 or more"));
    }
    let wanted_type = f.access_type.as_deref().map(|t| parse_access_type("access_type", t)).transpose()?;
    let zone = caller.user.time_zone.clone();
    let tz = TimeZone::get(&zone).unwrap_or(TimeZone::UTC);
    let at = match f.at.as_deref() {
        Some(t) => parse_local_or_ts("at", t, &tz)?,
        None => state.now(),
    };
    let rules = state.policies.get(&state.store).await?;
    let me = &caller.user.id;
    let requestable = rules.requestable(me);
    let ids: Vec<String> = requestable.keys().cloned().collect();
    let accounts = state.store.names_for(Named::Account, &ids).await?;
    let asset_ids: Vec<String> = ids.iter().filter_map(|a| rules.asset_of(a).map(str::to_owned)).collect();
    let assets = state.store.names_for(Named::Asset, &asset_ids).await?;

    let lower = |s: &str| s.to_lowercase();
    let search = f.search.as_deref().map(lower);
    let mut matching: Vec<(String, String, String, String, AccessType)> = Vec::new();
    for (account_id, types) in &requestable {
        let (Some(label), Some(asset_id)) = (accounts.get(account_id), rules.asset_of(account_id)) else { continue };
        let asset_name = assets.get(asset_id).cloned().unwrap_or_default();
        let account_name = label.strip_suffix(&format!("@{asset_name}")).unwrap_or(label).to_owned();
        if let Some(s) = &search {
            if !lower(&account_name).contains(s) && !lower(&asset_name).contains(s) {
                continue;
            }
        }
        if let Some(a) = &f.asset {
            if a != asset_id && lower(a) != lower(&asset_name) {
                continue;
            }
        }
        if let Some(a) = &f.account {
            if a != account_id && lower(a) != lower(label) && lower(a) != lower(&account_name) {
                continue;
            }
        }
        for t in types {
            if wanted_type.is_none_or(|w| w == *t) {
                matching.push((asset_name.clone(), account_name.clone(), asset_id.to_owned(), account_id.clone(), *t));
            }
        }
    }
    matching.sort_by(|a, b| (&a.0, &a.1, a.4.as_str(), &a.3).cmp(&(&b.0, &b.1, b.4.as_str(), &b.3)));
    let total = matching.len();
    let page: Vec<_> = matching.into_iter().skip(f.offset as usize).take(f.limit as usize).collect();

    let sessions_on = state.store.service_enabled(portcullis_store::SESSION_REQUESTS_SETTING).await?;
    let page_accounts: Vec<String> = page.iter().map(|p| p.3.clone()).collect();
    let (_, in_use) = super::accounts_in_use(state, &page_accounts, at).await?;
    let mut items = Vec::with_capacity(page.len());
    let mut terms_of: HashMap<String, Terms> = HashMap::new();
    for (asset_name, account_name, asset_id, account_id, access_type) in page {
        let ask = |emergency| Ask { user_id: me, account_id: &account_id, access_type, at, emergency };
        let r = rules.resolve(&ask(f.emergency), &tz)?;
        let emergency_allowed = f.emergency && r.governing.is_some() || {
            let e = rules.resolve(&ask(true), &tz)?;
            e.governing.is_some()
        };
        let terms = r.governing.as_deref().and_then(|id| {
            if let Some(t) = terms_of.get(id) {
                return Some(t.clone());
            }
            let p = rules.policy(id)?;
            let s = &p.settings;
            let t = Terms {
                policy_id: p.id.clone(),
                policy_name: p.name.clone(),
                auto_approve: s.auto_approve,
                approvals_required: if s.auto_approve { 0 } else { s.approval_levels.iter().map(|l| l.required).sum() },
                default_duration_minutes: s.default_duration_minutes,
                max_duration_minutes: s.max_duration_minutes,
                duration_changeable: s.duration_changeable,
                ticket_required: s.ticket_required,
                reason_required: s.reason_required,
                comment_required: s.comment_required,
                review_required: s.review_required,
                recorded: s.recording,
            };
            terms_of.insert(id.to_owned(), t.clone());
            Some(t)
        });
        let not_now = if terms.is_some() {
            (access_type.is_session() && !sessions_on).then(|| {
                "session requests are switched off by an Appliance Administrator; password and SSH key requests go on"
                    .to_owned()
            })
        } else {
            // The policy that came furthest tells why (a window, an expiry, emergency only).
            let why = r.verdicts.iter().filter_map(|v| v.eliminated).max().map(|e| e.describe());
            Some(why.unwrap_or("no policy covers this account for you").to_owned())
        };
        items.push(RequestOption {
            in_use: in_use.contains(&account_id),
            account_id,
            account_name,
            asset_id,
            asset_name,
            access_type,
            terms,
            not_now,
            emergency_allowed,
        });
    }
    Ok(Options { at, time_zone: zone, total, items })
}
