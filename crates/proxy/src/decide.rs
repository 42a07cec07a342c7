//! Whether a user may connect now, and if not, a message that says why and what to do.

use portcullis_core::request::RequestState;
use portcullis_store::AccessRequest;

fn when(micros: i64) -> String {
    jiff::Timestamp::from_microsecond(micros).map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_default()
}

/// The request that authorizes a session now, from the user's requests for this account
/// (newest first), or the reason there is none.
pub fn decide<'a>(requests: &'a [AccessRequest], now: i64, target: &str) -> Result<&'a AccessRequest, String> {
    if let Some(r) = requests.iter().find(|r| r.state == RequestState::Available && r.start_at <= now && now < r.end_at)
    {
        return Ok(r);
    }
    if requests.iter().any(|r| r.state == RequestState::PendingApproval) {
        return Err(format!(
            "your SSH access request for {target} is waiting for approval; try again once it is approved"
        ));
    }
    if let Some(r) = requests.iter().find(|r| r.state == RequestState::Approved && r.start_at > now) {
        return Err(format!("your SSH access to {target} starts at {}; connect then", when(r.start_at)));
    }
    if let Some(r) = requests.first() {
        let what = match r.state {
            RequestState::Expired => "expired",
            RequestState::Revoked => "was revoked",
            RequestState::Denied => "was denied",
            RequestState::Canceled => "was canceled",
            RequestState::Complete | RequestState::PendingReview | RequestState::Reviewed => "was checked in",
            _ => "is not available",
        };
        return Err(format!("your last SSH access request for {target} {what}; request access again"));
    }
    Err(format!(
        "you have no SSH access request for {target}; request one first (portcullis request create, or the web UI)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::policy::AccessType;

    fn req(state: RequestState, start: i64, end: i64) -> AccessRequest {
        AccessRequest {
            id: format!("r-{}", state.as_str()),
            batch_id: String::new(),
            requester_id: "u".into(),
            account_id: "a".into(),
            asset_id: "s".into(),
            access_type: AccessType::Ssh,
            policy_id: "p".into(),
            state,
            emergency: false,
            start_at: start,
            end_at: end,
            ticket: None,
            reason_code: None,
            comment: None,
            current_level: 0,
            review_required: false,
            removed: false,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn decisions() {
        let t = "root@db1";
        assert!(decide(&[], 5, t).unwrap_err().contains("no SSH access request"));
        let ok = [req(RequestState::Expired, 0, 4), req(RequestState::Available, 0, 10)];
        assert_eq!(decide(&ok, 5, t).unwrap().state, RequestState::Available);
        // Available but its window has passed (the scheduler has not caught up): refused.
        assert!(decide(&[req(RequestState::Available, 0, 5)], 5, t).is_err());
        assert!(decide(&[req(RequestState::PendingApproval, 0, 10)], 5, t)
            .unwrap_err()
            .contains("waiting for approval"));
        assert!(decide(&[req(RequestState::Approved, 60_000_000, 70_000_000)], 5, t)
            .unwrap_err()
            .contains("starts at"));
        assert!(decide(&[req(RequestState::Revoked, 0, 10)], 5, t).unwrap_err().contains("revoked"));
        assert!(decide(&[req(RequestState::Expired, 0, 4)], 5, t).unwrap_err().contains("expired"));
    }
}
