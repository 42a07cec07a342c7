//! Pages of requests for the work queues (mine, waiting for my approval, approved by me,
//! waiting for my review, all): filtered, sorted newest first, with the names people read
//! (requester, account, asset, policy) joined in.

use portcullis_core::request::RequestState;

use crate::requests::{Row, COLUMNS};
use crate::sql::{Value, Where};
use crate::{AccessRequest, Result, Store};

/// Which requests, as filters that all apply.
#[derive(Debug, Clone, Default)]
pub struct RequestQuery {
    /// Only these requests.
    pub ids: Option<Vec<String>>,
    pub requester_id: Option<String>,
    /// Leave out this requester's own requests (nobody approves or reviews their own).
    pub not_requester_id: Option<String>,
    /// Any of these states; empty: every state.
    pub states: Vec<RequestState>,
    pub account_id: Option<String>,
    pub asset_id: Option<String>,
    /// By name: the requester's user name, the account's and the asset's names.
    pub requester_name: Option<String>,
    pub account_name: Option<String>,
    pub asset_name: Option<String>,
    /// Only requests governed by one of these policies (`Some(empty)` matches nothing).
    pub policy_ids: Option<Vec<String>>,
    /// Only requests this user approved (at any level).
    pub approved_by: Option<String>,
    /// Leave out requests their requester removed from their list.
    pub hide_removed: bool,
    /// Created at or after / before (microseconds).
    pub created_from: Option<i64>,
    pub created_before: Option<i64>,
    pub limit: i64,
    pub offset: i64,
}

/// The names of what a request refers to (absent when the object is gone).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestNames {
    pub requester: Option<String>,
    pub account: Option<String>,
    pub asset: Option<String>,
    pub policy: Option<String>,
}

#[derive(sqlx::FromRow)]
struct NamedRow {
    #[sqlx(flatten)]
    row: Row,
    requester_name: Option<String>,
    account_name: Option<String>,
    asset_name: Option<String>,
    policy_name: Option<String>,
}

impl Store {
    /// One page of requests matching `q`, newest first, each with its names.
    pub async fn request_page(&self, q: &RequestQuery) -> Result<Vec<(AccessRequest, RequestNames)>> {
        let mut w = Where::default();
        let text = |s: &String| Value::Text(s.clone());
        if let Some(ids) = &q.ids {
            w.and_in("r.id", ids.iter().map(text));
        }
        if let Some(v) = &q.requester_id {
            w.and("r.requester_id =", text(v));
        }
        if let Some(v) = &q.not_requester_id {
            w.and("r.requester_id <>", text(v));
        }
        if !q.states.is_empty() {
            w.and_in("r.state", q.states.iter().map(|s| Value::Text(s.as_str().to_owned())));
        }
        if let Some(v) = &q.account_id {
            w.and("r.account_id =", text(v));
        }
        if let Some(v) = &q.asset_id {
            w.and("r.asset_id =", text(v));
        }
        if let Some(v) = &q.requester_name {
            w.and("u.username =", text(v));
        }
        if let Some(v) = &q.account_name {
            w.and("a.name =", text(v));
        }
        if let Some(v) = &q.asset_name {
            w.and("s.name =", text(v));
        }
        if let Some(ids) = &q.policy_ids {
            w.and_in("r.policy_id", ids.iter().map(text));
        }
        if let Some(v) = &q.approved_by {
            w.and_with(
                "r.id IN (SELECT a.request_id FROM request_approvals a WHERE a.approver_id = ? AND a.decision = 'approve')",
                text(v),
            );
        }
        if q.hide_removed {
            w.sql += " AND r.removed = 0";
        }
        if let Some(t) = q.created_from {
            w.and("r.created_at >=", Value::Int(t));
        }
        if let Some(t) = q.created_before {
            w.and("r.created_at <", Value::Int(t));
        }
        let columns: Vec<String> = COLUMNS.split(',').map(|c| format!("r.{}", c.trim())).collect();
        let sql = format!(
            "SELECT {}, u.username AS requester_name, a.name AS account_name, s.name AS asset_name, p.name AS policy_name \
             FROM access_requests r \
             LEFT JOIN users u ON u.id = r.requester_id \
             LEFT JOIN accounts a ON a.id = r.account_id \
             LEFT JOIN assets s ON s.id = r.asset_id \
             LEFT JOIN policies p ON p.id = r.policy_id \
             WHERE 1 = 1{} ORDER BY r.created_at DESC, r.id LIMIT {} OFFSET {}",
            columns.join(", "),
            w.sql,
            q.limit.clamp(1, 1000),
            q.offset.max(0),
        );
        let rows: Vec<NamedRow> = w.bind(sqlx::query_as(&sql)).fetch_all(&self.read).await?;
        rows.into_iter()
            .map(|n| {
                let names = RequestNames {
                    requester: n.requester_name,
                    account: n.account_name,
                    asset: n.asset_name,
                    policy: n.policy_name,
                };
                Ok((AccessRequest::try_from(n.row)?, names))
            })
            .collect()
    }
}
