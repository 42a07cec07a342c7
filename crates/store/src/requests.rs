//! Access requests: creation, approvals, transitions, the scheduler's due transitions, the
//! request history and the notification outbox (R-REQ-1..8). Every transition is a
//! compare-and-set on the request's state (`UPDATE … WHERE state = …`), so racing actions
//! (approve vs. revoke, two approvers) cannot both win, and every one writes its history
//! row, outbox rows and audit event in the same transaction.

use portcullis_core::policy::AccessType;
use portcullis_core::request::{self, Action, ApprovalOutcome, EndCause, RequestState};
use serde_json::json;
use sqlx::AnyConnection;

use crate::audit::{append, push_event, reserve, NewEvent};
use crate::sql::Batch;
use crate::transitions::{create_request_in, decide_request_in, Decide};
use crate::{new_id, Actor, Result, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRequest {
    pub id: String,
    pub batch_id: String,
    pub requester_id: String,
    pub account_id: String,
    pub asset_id: String,
    pub access_type: AccessType,
    pub policy_id: String,
    pub state: RequestState,
    pub emergency: bool,
    pub start_at: i64,
    pub end_at: i64,
    pub ticket: Option<String>,
    pub reason_code: Option<String>,
    pub comment: Option<String>,
    pub current_level: i64,
    pub review_required: bool,
    pub removed: bool,
    pub created_at: i64,
    pub updated_at: i64,
    /// How access ended (kept through review).
    pub ended_by: Option<EndCause>,
}

pub(crate) const REQUEST_COLUMNS: &str = COLUMNS;

pub(crate) const COLUMNS: &str =
    "id, batch_id, requester_id, account_id, asset_id, access_type, policy_id, state, emergency, start_at, end_at, \
     ticket, reason_code, comment, current_level, review_required, removed, created_at, updated_at, ended_by";

#[derive(sqlx::FromRow)]
pub(crate) struct Row {
    id: String,
    batch_id: String,
    requester_id: String,
    account_id: String,
    asset_id: String,
    access_type: String,
    policy_id: String,
    state: String,
    emergency: i64,
    start_at: i64,
    end_at: i64,
    ticket: Option<String>,
    reason_code: Option<String>,
    comment: Option<String>,
    current_level: i64,
    review_required: i64,
    removed: i64,
    created_at: i64,
    updated_at: i64,
    ended_by: Option<String>,
}

impl TryFrom<Row> for AccessRequest {
    type Error = StoreError;
    fn try_from(r: Row) -> Result<Self> {
        Ok(AccessRequest {
            access_type: AccessType::parse(&r.access_type)
                .ok_or_else(|| StoreError::Corrupt(format!("access type '{}'", r.access_type)))?,
            state: RequestState::parse(&r.state)
                .ok_or_else(|| StoreError::Corrupt(format!("request state '{}'", r.state)))?,
            emergency: r.emergency != 0,
            review_required: r.review_required != 0,
            removed: r.removed != 0,
            id: r.id,
            batch_id: r.batch_id,
            requester_id: r.requester_id,
            account_id: r.account_id,
            asset_id: r.asset_id,
            policy_id: r.policy_id,
            start_at: r.start_at,
            end_at: r.end_at,
            ticket: r.ticket,
            reason_code: r.reason_code,
            comment: r.comment,
            current_level: r.current_level,
            created_at: r.created_at,
            updated_at: r.updated_at,
            ended_by: r.ended_by.as_deref().and_then(EndCause::parse),
        })
    }
}

/// A request to create; the API has resolved the policy and validated the details.
#[derive(Debug, Clone)]
pub struct NewRequest {
    pub batch_id: String,
    pub requester_id: String,
    pub account_id: String,
    pub asset_id: String,
    pub access_type: AccessType,
    pub policy_id: String,
    pub emergency: bool,
    pub start_at: i64,
    pub end_at: i64,
    pub ticket: Option<String>,
    pub reason_code: Option<String>,
    pub comment: Option<String>,
    pub review_required: bool,
    /// Skips approval (auto-approve policy or emergency).
    pub approved_at_once: bool,
    pub simultaneous_access: bool,
    /// Who is told: the first level's approvers (or, for an emergency, every approver).
    pub notify: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct HistoryEntry {
    pub at: i64,
    pub actor_id: String,
    pub actor_name: String,
    pub action: String,
    pub from_state: Option<String>,
    pub to_state: String,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub approver_id: String,
    pub level: i64,
    pub decision: String,
    pub comment: Option<String>,
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    pub id: String,
    pub event: String,
    pub request_id: String,
    pub recipients: Vec<String>,
    pub created_at: i64,
}

/// A state change the scheduler or an action made, for subscribers (the session proxy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub request_id: String,
    pub from: RequestState,
    pub to: RequestState,
    /// Set when access ended: how.
    pub ended_by: Option<EndCause>,
}

/// What an approver sees to decide: approvers per level (user ids, groups expanded).
#[derive(Debug, Clone)]
pub struct ApprovalContext {
    pub required_per_level: Vec<u32>,
    pub approvers_per_level: Vec<Vec<String>>,
}

pub fn state_code(s: RequestState) -> &'static str {
    match s {
        RequestState::PendingApproval => "request_pending_approval",
        RequestState::Approved => "request_approved",
        RequestState::Available => "request_available",
        RequestState::Complete => "request_complete",
        RequestState::PendingReview => "request_pending_review",
        RequestState::Reviewed => "request_reviewed",
        RequestState::Revoked => "request_revoked",
        RequestState::Expired => "request_expired",
        RequestState::Denied => "request_denied",
        RequestState::Canceled => "request_canceled",
    }
}

pub(crate) fn wrong_state(state: RequestState, action: Action) -> StoreError {
    let e = request::NotAllowed { state, action };
    StoreError::WrongState { code: state_code(state), message: e.to_string() }
}

pub(crate) async fn load(conn: &mut AnyConnection, id: &str) -> Result<AccessRequest> {
    let row: Option<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM access_requests WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    row.ok_or(StoreError::NotFound("request"))?.try_into()
}

/// One row of a request's history.
pub(crate) struct Step<'a> {
    pub(crate) action: &'a str,
    pub(crate) from: Option<RequestState>,
    pub(crate) to: RequestState,
    pub(crate) comment: Option<&'a str>,
}

pub(crate) fn push_history(batch: &mut Batch, req: &str, now: i64, actor: &Actor, step: Step<'_>) {
    batch.push(
        "INSERT INTO request_history (request_id, n, at, actor_id, actor_name, action, from_state, to_state, comment) \
         SELECT $1, COALESCE(MAX(n), 0) + 1, $2, $3, $4, $5, $6, $7, $8 FROM request_history WHERE request_id = $1",
        vec![
            req.into(),
            now.into(),
            (&actor.id).into(),
            (&actor.name).into(),
            step.action.into(),
            step.from.map(|s| s.as_str()).into(),
            step.to.as_str().into(),
            step.comment.into(),
        ],
    );
}

pub(crate) fn push_notify(batch: &mut Batch, now: i64, event: &str, req: &str, recipients: &[String]) {
    let mut r: Vec<&str> = recipients.iter().map(String::as_str).collect();
    r.sort_unstable();
    r.dedup();
    if r.is_empty() {
        return;
    }
    batch.push(
        "INSERT INTO notification_outbox (id, event, request_id, recipients, created_at) VALUES ($1,$2,$3,$4,$5)",
        vec![new_id().into(), event.into(), req.into(), r.join(",").into(), now.into()],
    );
}

fn is_sqlite(conn: &AnyConnection) -> bool {
    conn.backend_name() == "SQLite"
}

/// Takes a request's row lock (PostgreSQL), so that load, check and write of a transition
/// see no concurrent change; SQLite has a single writer, so nothing to do there.
pub(crate) async fn lock_request(conn: &mut AnyConnection, id: &str) -> Result<()> {
    if !is_sqlite(conn) {
        sqlx::query("SELECT id FROM access_requests WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Takes the account's row lock (PostgreSQL) so that availability checks of concurrent
/// requests for one account run one after the other; SQLite has a single writer anyway.
pub(crate) async fn lock_account(conn: &mut AnyConnection, account_id: &str) -> Result<()> {
    if is_sqlite(conn) {
        return Ok(());
    }
    let found: Option<String> = sqlx::query_scalar("SELECT id FROM accounts WHERE id = $1 FOR UPDATE")
        .bind(account_id)
        .fetch_optional(&mut *conn)
        .await?;
    if found.is_none() {
        return Err(StoreError::NotFound("account"));
    }
    Ok(())
}

/// Refuses when another request holds the account in an overlapping period (R-REQ-8).
pub(crate) async fn ensure_available(
    conn: &mut AnyConnection,
    account_id: &str,
    except: &str,
    start: i64,
    end: i64,
) -> Result<()> {
    // The latest end of the requests that overlap: when the account is free again.
    let clash: Option<i64> = sqlx::query_scalar::<_, Option<i64>>(
        "SELECT MAX(end_at) FROM access_requests WHERE account_id = $1 AND id <> $2 AND state IN ('approved', 'available') \
         AND start_at < $4 AND end_at > $3",
    )
    .bind(account_id)
    .bind(except)
    .bind(start)
    .bind(end)
    .fetch_one(&mut *conn)
    .await?;
    match clash {
        Some(until) => {
            let until = jiff::Timestamp::from_microsecond(until).map(|t| t.to_string()).unwrap_or_default();
            Err(StoreError::WrongState {
                code: "account_in_use",
                message: format!(
                    "the account is held by another request until {until} and its policy does not allow \
                     simultaneous access; ask for a start at or after {until}, or a shorter period that ends before it begins"
                ),
            })
        }
        None => Ok(()),
    }
}

fn event_for(to: RequestState) -> &'static str {
    match to {
        RequestState::PendingApproval => "pending_approval",
        RequestState::Approved | RequestState::Available => "approved",
        RequestState::Denied => "denied",
        RequestState::Revoked => "revoked",
        RequestState::Expired => "expired",
        RequestState::PendingReview => "review_due",
        RequestState::Complete => "checked_in",
        RequestState::Reviewed => "reviewed",
        RequestState::Canceled => "canceled",
    }
}

impl Store {
    pub async fn create_request(&self, actor: &Actor, now: i64, new: NewRequest) -> Result<AccessRequest> {
        let (key, actor) = (self.audit_key.clone(), actor.clone());
        self.transact(move |conn| Box::pin(async move { create_request_in(conn, &key, &actor, now, new).await })).await
    }

    pub async fn request(&self, id: &str) -> Result<AccessRequest> {
        let mut conn = self.read.acquire().await?;
        load(&mut conn, id).await
    }

    /// Requests, newest first: of one requester (without the removed ones), or all.
    pub async fn requests(
        &self,
        requester: Option<&str>,
        state: Option<RequestState>,
        limit: i64,
    ) -> Result<Vec<AccessRequest>> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM access_requests WHERE ($1 IS NULL OR (requester_id = $1 AND removed = 0)) AND ($2 IS NULL OR state = $2) \
             ORDER BY created_at DESC, id LIMIT $3"
        ))
        .bind(requester)
        .bind(state.map(|s| s.as_str()))
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.into_iter().map(AccessRequest::try_from).collect()
    }

    pub async fn request_history(&self, id: &str) -> Result<Vec<HistoryEntry>> {
        Ok(sqlx::query_as(
            "SELECT at, actor_id, actor_name, action, from_state, to_state, comment FROM request_history WHERE request_id = $1 ORDER BY n",
        )
        .bind(id)
        .fetch_all(&self.read)
        .await?)
    }

    pub async fn request_approvals(&self, id: &str) -> Result<Vec<Approval>> {
        let rows: Vec<(String, i64, String, Option<String>, i64)> =
            sqlx::query_as("SELECT approver_id, level, decision, comment, at FROM request_approvals WHERE request_id = $1 ORDER BY at, approver_id")
                .bind(id)
                .fetch_all(&self.read)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(approver_id, level, decision, comment, at)| Approval { approver_id, level, decision, comment, at })
            .collect())
    }

    /// The approvals of several requests at once (a queue's page), by request id; requests
    /// without any are absent.
    pub async fn approvals_of(&self, ids: &[String]) -> Result<std::collections::HashMap<String, Vec<Approval>>> {
        let mut out: std::collections::HashMap<String, Vec<Approval>> = std::collections::HashMap::new();
        // Bounded lists keep every statement under the databases' parameter limits.
        for part in ids.chunks(500) {
            let mut w = crate::sql::Where::default();
            w.and_in("request_id", part.iter().map(|i| crate::sql::Value::Text(i.clone())));
            let sql = format!(
                "SELECT request_id, approver_id, level, decision, comment, at FROM request_approvals WHERE 1 = 1{} \
                 ORDER BY at, approver_id",
                w.sql
            );
            let rows: Vec<(String, String, i64, String, Option<String>, i64)> =
                w.bind(sqlx::query_as(&sql)).fetch_all(&self.read).await?;
            for (request_id, approver_id, level, decision, comment, at) in rows {
                out.entry(request_id).or_default().push(Approval { approver_id, level, decision, comment, at });
            }
        }
        Ok(out)
    }

    /// Approves (or denies, `approve = false`) at the request's current level. `eligible`
    /// says whether the approver may act at a level. An approver may narrow the access window.
    #[allow(clippy::too_many_arguments)]
    pub async fn decide_request(
        &self,
        actor: &Actor,
        now: i64,
        id: &str,
        approve: bool,
        ctx: &ApprovalContext,
        eligible: &(dyn Fn(usize) -> bool + Sync),
        comment: Option<&str>,
        window: Option<(i64, i64)>,
        simultaneous_access: bool,
    ) -> Result<(AccessRequest, Option<ApprovalOutcome>)> {
        let levels = ctx.required_per_level.len().max(1);
        let d = Decide {
            actor: actor.clone(),
            now,
            id: id.to_owned(),
            approve,
            ctx: ctx.clone(),
            eligible: (0..levels).map(eligible).collect(),
            comment: comment.map(str::to_owned),
            window,
            simultaneous_access,
        };
        let key = self.audit_key.clone();
        // A refused approval is audited (in the same commit) and then reported.
        self.transact(move |conn| Box::pin(async move { decide_request_in(conn, &key, d).await })).await?
    }

    /// Cancel, revoke, check in, review, remove: one compare-and-set transition. Returns the
    /// request and, when its state changed, the transition (for subscribers).
    pub async fn act_on_request(
        &self,
        actor: &Actor,
        now: i64,
        id: &str,
        action: Action,
        comment: Option<&str>,
    ) -> Result<(AccessRequest, Option<Transition>)> {
        let mut tx = self.write.begin().await?;
        lock_request(&mut tx, id).await?;
        let req = load(&mut tx, id).await?;
        request::check_after(req.state, req.ended_by, action).map_err(|_| wrong_state(req.state, action))?;
        if action == Action::Remove {
            sqlx::query("UPDATE access_requests SET removed = 1, updated_at = $1 WHERE id = $2")
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            append(&mut tx, &self.audit_key, actor, now, &NewEvent::success("request.remove", "request", id)).await?;
            tx.commit().await?;
            return Ok((self.request(id).await?, None));
        }
        let to = match action {
            Action::Cancel => RequestState::Canceled,
            Action::Revoke => request::on_end(req.state, EndCause::Revocation, req.review_required),
            Action::CheckIn => request::on_end(req.state, EndCause::CheckIn, req.review_required),
            Action::Expire => request::on_end(req.state, EndCause::Expiry, req.review_required),
            Action::Activate => RequestState::Available,
            Action::Review => RequestState::Reviewed,
            other => return Err(wrong_state(req.state, other)),
        };
        let mut recipients = vec![req.requester_id.clone()];
        if to == RequestState::PendingReview {
            recipients = self.reviewers_of(&mut tx, &req.policy_id).await?;
        }
        let change = match action {
            Action::CheckIn | Action::Expire | Action::Revoke if req.state == RequestState::Available => {
                self.change_after_use(&mut tx, &req).await?
            }
            _ => None,
        };
        let (seq, prev) = reserve(&mut tx).await?;
        let mut batch = Batch::new(&tx);
        if let Some(kind) = change {
            let reason = match action {
                Action::CheckIn => "check-in",
                Action::Expire => "expiry",
                _ => "revocation",
            };
            batch.push(
                crate::changes::change_sql(),
                vec![new_id().into(), req.account_id.clone().into(), kind.into(), reason.into(), id.into(), now.into()],
            );
        }
        let ended_by = EndCause::of(action).or(req.ended_by);
        batch.push(
            "UPDATE access_requests SET state = $1, updated_at = $2, ended_by = $3 WHERE id = $4 AND state = $5",
            vec![
                to.as_str().into(),
                now.into(),
                ended_by.map(|c| c.as_str().to_owned()).into(),
                id.into(),
                req.state.as_str().into(),
            ],
        );
        push_history(&mut batch, id, now, actor, Step { action: action.as_str(), from: Some(req.state), to, comment });
        if !matches!(action, Action::Activate) {
            push_notify(&mut batch, now, event_for(to), id, &recipients);
        }
        let audit_action = match action {
            Action::Cancel => "request.cancel",
            Action::Revoke => "request.revoke",
            Action::CheckIn => "request.checkin",
            Action::Expire => "request.expire",
            Action::Activate => "request.available",
            Action::Review => "request.review",
            _ => "request.update",
        };
        let event = NewEvent::success(audit_action, "request", id)
            .with_details(json!({ "from": req.state.as_str(), "to": to.as_str(), "comment": comment }));
        push_event(&mut batch, &self.audit_key, actor, now, &event, seq, &prev)?;
        batch.run(&mut tx).await?;
        tx.commit().await?;
        let from = req.state;
        Ok((
            AccessRequest { state: to, updated_at: now, ended_by, ..req },
            Some(Transition { request_id: id.to_owned(), from, to, ended_by }),
        ))
    }

    /// Which credential (if any) to change on the target now that `req`'s use has ended: only
    /// when its policy says "change password after check-in"; the checked-out kind for
    /// password and SSH key requests, otherwise the account's password (or key, if it has no
    /// password).
    async fn change_after_use(&self, conn: &mut AnyConnection, req: &AccessRequest) -> Result<Option<&'static str>> {
        let settings: Option<String> = sqlx::query_scalar("SELECT settings FROM policies WHERE id = $1")
            .bind(&req.policy_id)
            .fetch_optional(&mut *conn)
            .await?;
        let v: serde_json::Value = settings.and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default();
        if v["change_password_after_checkin"].as_bool() != Some(true) {
            return Ok(None);
        }
        Ok(match req.access_type {
            AccessType::Password => Some("password"),
            AccessType::SshKey => Some("ssh_key"),
            _ => {
                let kinds: Vec<String> = sqlx::query_scalar(
                    "SELECT DISTINCT kind FROM secret_versions WHERE account_id = $1 AND status = 'active'",
                )
                .bind(&req.account_id)
                .fetch_all(&mut *conn)
                .await?;
                if kinds.iter().any(|k| k == "password") {
                    Some("password")
                } else if kinds.iter().any(|k| k == "ssh_key") {
                    Some("ssh_key")
                } else {
                    None
                }
            }
        })
    }

    async fn reviewers_of(&self, conn: &mut AnyConnection, policy_id: &str) -> Result<Vec<String>> {
        let settings: Option<String> = sqlx::query_scalar("SELECT settings FROM policies WHERE id = $1")
            .bind(policy_id)
            .fetch_optional(&mut *conn)
            .await?;
        let Some(settings) = settings else { return Ok(vec![]) };
        let v: serde_json::Value = serde_json::from_str(&settings).unwrap_or_default();
        let mut out: Vec<String> = v["reviewer_user_ids"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect();
        for g in v["reviewer_group_ids"].as_array().into_iter().flatten().filter_map(|x| x.as_str()) {
            let members: Vec<String> =
                sqlx::query_scalar(crate::policies::GROUP_MEMBERS_GRANTING).bind(g).fetch_all(&mut *conn).await?;
            out.extend(members);
        }
        Ok(out)
    }

    /// The scheduler's work: approved requests whose start has come become available; held
    /// requests whose end has passed expire. Each is its own compare-and-set transition, so a
    /// restart catches up on whatever came due while the server was down.
    pub async fn run_due_transitions(&self, now: i64) -> Result<Vec<Transition>> {
        let due: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT id, state, start_at, end_at FROM access_requests WHERE (state = 'approved' AND start_at <= $1) \
             OR (state IN ('approved', 'available') AND end_at <= $1) ORDER BY end_at, id LIMIT 500",
        )
        .bind(now)
        .fetch_all(&self.read)
        .await?;
        let mut done = Vec::new();
        for (id, _state, _start, end) in due {
            let action = if end <= now { Action::Expire } else { Action::Activate };
            match self.act_on_request(&Actor::system(), now, &id, action, None).await {
                Ok((_, Some(t))) => done.push(t),
                Ok((_, None)) => {}
                // Someone else moved it first (a check-in, a revocation): nothing to do.
                Err(StoreError::WrongState { .. }) | Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    /// When the next scheduled transition is due, if any.
    pub async fn next_due(&self) -> Result<Option<i64>> {
        let a: Option<i64> = sqlx::query_scalar("SELECT MIN(start_at) FROM access_requests WHERE state = 'approved'")
            .fetch_one(&self.read)
            .await?;
        let b: Option<i64> =
            sqlx::query_scalar("SELECT MIN(end_at) FROM access_requests WHERE state IN ('approved', 'available')")
                .fetch_one(&self.read)
                .await?;
        Ok(match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    pub async fn outbox(&self, limit: i64) -> Result<Vec<OutboxItem>> {
        let rows: Vec<(String, String, String, String, i64)> = sqlx::query_as(
            "SELECT id, event, request_id, recipients, created_at FROM notification_outbox WHERE delivered_at IS NULL ORDER BY created_at, id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, event, request_id, recipients, created_at)| OutboxItem {
                id,
                event,
                request_id,
                recipients: recipients.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
                created_at,
            })
            .collect())
    }

    /// "X of Y accounts in use" (R-REQ-8): of these accounts, which are held at `at`.
    pub async fn accounts_in_use(&self, account_ids: &[String], at: i64) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for a in account_ids {
            let held: Option<String> = sqlx::query_scalar(
                "SELECT id FROM access_requests WHERE account_id = $1 AND state IN ('approved', 'available') AND start_at <= $2 AND end_at > $2 LIMIT 1",
            )
            .bind(a)
            .bind(at)
            .fetch_optional(&self.read)
            .await?;
            if held.is_some() {
                out.push(a.clone());
            }
        }
        Ok(out)
    }

    /// Expands user ids and group ids into user ids.
    pub async fn expand_users(&self, user_ids: &[String], group_ids: &[String]) -> Result<Vec<String>> {
        let mut out: Vec<String> = user_ids.to_vec();
        for g in group_ids {
            let members: Vec<String> =
                sqlx::query_scalar(crate::policies::GROUP_MEMBERS_GRANTING).bind(g).fetch_all(&self.read).await?;
            out.extend(members);
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}
