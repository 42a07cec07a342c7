//! The bodies of the workflow's hot transitions (create, approve/deny), each run in the write
//! transaction `Store::transact` gives it (grouped with concurrent writers on SQLite).

use portcullis_core::request::{self, Action, ApprovalOutcome, RequestState};
use serde_json::json;
use sqlx::AnyConnection;

use crate::audit::{append, push_event, reserve, NewEvent, Outcome};
use crate::requests::{
    ensure_available, load, lock_account, lock_request, push_history, push_notify, wrong_state, Step, COLUMNS,
};
use crate::sql::Batch;
use crate::{new_id, AccessRequest, Actor, ApprovalContext, NewRequest, Result, StoreError};

/// The body of [`Store::create_request`], in the transaction it is given.
pub(crate) async fn create_request_in(
    tx: &mut AnyConnection,
    audit_key: &[u8],
    actor: &Actor,
    now: i64,
    new: NewRequest,
) -> Result<AccessRequest> {
    lock_account(tx, &new.account_id).await?;
    let state =
        if new.approved_at_once { request::on_approved(new.start_at, now) } else { RequestState::PendingApproval };
    if state.holds_account() && !new.simultaneous_access {
        ensure_available(tx, &new.account_id, "", new.start_at, new.end_at).await?;
    }
    let id = new_id();
    let (seq, prev) = reserve(tx).await?;
    let mut batch = Batch::new(tx);
    batch.push(
        &format!("INSERT INTO access_requests ({COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,0,$15,0,$16,$16,NULL)"),
        vec![
            (&id).into(),
            (&new.batch_id).into(),
            (&new.requester_id).into(),
            (&new.account_id).into(),
            (&new.asset_id).into(),
            new.access_type.as_str().into(),
            (&new.policy_id).into(),
            state.as_str().into(),
            i64::from(new.emergency).into(),
            new.start_at.into(),
            new.end_at.into(),
            (&new.ticket).into(),
            (&new.reason_code).into(),
            (&new.comment).into(),
            i64::from(new.review_required).into(),
            now.into(),
        ],
    );
    push_history(
        &mut batch,
        &id,
        now,
        actor,
        Step { action: "create", from: None, to: state, comment: new.comment.as_deref() },
    );
    if new.emergency {
        push_notify(&mut batch, now, "emergency", &id, &new.notify);
    } else if state == RequestState::PendingApproval {
        push_notify(&mut batch, now, "pending_approval", &id, &new.notify);
    }
    let event = NewEvent::success(if new.emergency { "request.emergency" } else { "request.create" }, "request", &id).with_details(json!({
        "account_id": new.account_id, "access_type": new.access_type.as_str(), "policy_id": new.policy_id, "state": state.as_str(),
        "start_at": new.start_at, "end_at": new.end_at, "ticket": new.ticket, "reason_code": new.reason_code,
    }));
    push_event(&mut batch, audit_key, actor, now, &event, seq, &prev)?;
    batch.run(tx).await.map_err(|e| match &e {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound("account"),
        _ => StoreError::Db(e),
    })?;
    Ok(AccessRequest {
        id,
        batch_id: new.batch_id,
        requester_id: new.requester_id,
        account_id: new.account_id,
        asset_id: new.asset_id,
        access_type: new.access_type,
        policy_id: new.policy_id,
        state,
        emergency: new.emergency,
        start_at: new.start_at,
        end_at: new.end_at,
        ticket: new.ticket,
        reason_code: new.reason_code,
        comment: new.comment,
        current_level: 0,
        review_required: new.review_required,
        removed: false,
        created_at: now,
        updated_at: now,
        ended_by: None,
    })
}

/// What [`Store::decide_request`] needs, owned, for its transaction body.
pub(crate) struct Decide {
    pub(crate) actor: Actor,
    pub(crate) now: i64,
    pub(crate) id: String,
    pub(crate) approve: bool,
    pub(crate) ctx: ApprovalContext,
    /// Per level: may the approver act there?
    pub(crate) eligible: Vec<bool>,
    pub(crate) comment: Option<String>,
    pub(crate) window: Option<(i64, i64)>,
    pub(crate) simultaneous_access: bool,
}

/// The body of [`Store::decide_request`]: `Ok(Err(_))` is a refused approval, whose audit
/// event is kept.
pub(crate) async fn decide_request_in(
    tx: &mut AnyConnection,
    audit_key: &[u8],
    d: Decide,
) -> Result<Result<(AccessRequest, Option<ApprovalOutcome>)>> {
    let Decide { actor, now, id, approve, ctx, eligible, comment, window, simultaneous_access } = d;
    let (actor, id, comment) = (&actor, id.as_str(), comment.as_deref());
    let eligible = |level: usize| eligible.get(level).copied().unwrap_or(false);

    // Row lock first, so concurrent approvers of one request queue here.
    lock_request(tx, id).await?;
    let req = load(tx, id).await?;
    let action = if approve { Action::Approve } else { Action::Deny };
    request::check(req.state, action).map_err(|_| wrong_state(req.state, action))?;
    let level = req.current_level as usize;
    let (already, so_far): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM request_approvals WHERE request_id = $1 AND approver_id = $2), \
         (SELECT COUNT(*) FROM request_approvals WHERE request_id = $1 AND level = $3 AND decision = 'approve')",
    )
    .bind(id)
    .bind(&actor.id)
    .bind(req.current_level)
    .fetch_one(&mut *tx)
    .await?;
    let outcome = request::approve(
        &ctx.required_per_level,
        level,
        so_far as u32,
        actor.id == req.requester_id,
        eligible(level),
        already > 0,
    )
    .map_err(|e| StoreError::Refused { code: "not_allowed_to_approve", message: e.to_string() });
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            let event = NewEvent::success(if approve { "request.approve" } else { "request.deny" }, "request", id)
                .with_outcome(Outcome::Denied)
                .with_details(json!({ "reason": e.to_string() }));
            append(tx, audit_key, actor, now, &event).await?;
            return Ok(Err(e));
        }
    };
    let (start_at, end_at) = window.unwrap_or((req.start_at, req.end_at));
    let (to, new_level, result) = if !approve {
        (RequestState::Denied, req.current_level, None)
    } else {
        match outcome {
            ApprovalOutcome::StillPending { .. } => (RequestState::PendingApproval, req.current_level, Some(outcome)),
            ApprovalOutcome::NextLevel { level } => (RequestState::PendingApproval, level as i64, Some(outcome)),
            ApprovalOutcome::Approved => (request::on_approved(start_at, now), req.current_level, Some(outcome)),
        }
    };
    // Other pending requests for an exclusive account that this approval now blocks: their
    // requesters are told at once rather than waiting for an approval that cannot come.
    let mut blocked: Vec<(String, String)> = Vec::new();
    if to.holds_account() && !simultaneous_access {
        lock_account(tx, &req.account_id).await?;
        ensure_available(tx, &req.account_id, id, start_at, end_at).await?;
        blocked = sqlx::query_as(
            "SELECT id, requester_id FROM access_requests WHERE account_id = $1 AND id <> $2 \
             AND state = 'pending_approval' AND start_at < $4 AND end_at > $3",
        )
        .bind(&req.account_id)
        .bind(id)
        .bind(start_at)
        .bind(end_at)
        .fetch_all(&mut *tx)
        .await?;
    }
    // The row is locked (PostgreSQL) or we are the only writer (SQLite): the state loaded
    // above is still the state, so the writes below go as one batch.
    let (seq, prev) = reserve(tx).await?;
    let mut batch = Batch::new(tx);
    batch.push(
        "INSERT INTO request_approvals (request_id, approver_id, level, decision, comment, at) VALUES ($1,$2,$3,$4,$5,$6)",
        vec![id.into(), (&actor.id).into(), req.current_level.into(), (if approve { "approve" } else { "deny" }).into(), comment.into(), now.into()],
    );
    batch.push(
        "UPDATE access_requests SET state = $1, current_level = $2, start_at = $3, end_at = $4, updated_at = $5 WHERE id = $6 AND state = 'pending_approval'",
        vec![to.as_str().into(), new_level.into(), start_at.into(), end_at.into(), now.into(), id.into()],
    );
    push_history(&mut batch, id, now, actor, Step { action: action.as_str(), from: Some(req.state), to, comment });
    match (approve, outcome) {
        (false, _) => push_notify(&mut batch, now, "denied", id, std::slice::from_ref(&req.requester_id)),
        (true, ApprovalOutcome::NextLevel { level }) => push_notify(
            &mut batch,
            now,
            "pending_approval",
            id,
            ctx.approvers_per_level.get(level).map(Vec::as_slice).unwrap_or_default(),
        ),
        (true, ApprovalOutcome::Approved) => {
            push_notify(&mut batch, now, "approved", id, std::slice::from_ref(&req.requester_id))
        }
        _ => {}
    }
    for (other, requester) in &blocked {
        push_notify(&mut batch, now, "account_taken", other, std::slice::from_ref(requester));
    }
    let event = NewEvent::success(if approve { "request.approve" } else { "request.deny" }, "request", id)
        .with_details(json!({ "level": req.current_level, "state": to.as_str(), "comment": comment, "start_at": start_at, "end_at": end_at }));
    push_event(&mut batch, audit_key, actor, now, &event, seq, &prev)?;
    batch.run(tx).await?;
    let updated = AccessRequest { state: to, current_level: new_level, start_at, end_at, updated_at: now, ..req };
    Ok(Ok((updated, result)))
}
