//! Deny by default: every operation in the OpenAPI document is called anonymously and as
//! each role. This table, not the server's code, says who may call what; an operation missing
//! from it fails the test.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::harness::{Db, Server};

const PUBLIC: &str = "public";
const ANY: &str = "any";

/// operation id → roles admitted (`public`: anyone; `any`: any signed-in user).
fn expected() -> BTreeMap<&'static str, Vec<&'static str>> {
    let dir_readers = vec!["user_admin", "security_policy_admin", "auditor", "appliance_admin"];
    let inv_readers = vec!["asset_admin", "security_policy_admin", "auditor", "appliance_admin"];
    let mut m = BTreeMap::new();
    for op in ["bootstrap", "login", "set_password_by_link", "healthz", "metrics", "sso_info", "sso_start", "sso_token"]
    {
        m.insert(op, vec![PUBLIC]);
    }
    for op in [
        "logout",
        "get_me",
        "update_me",
        "change_my_password",
        "enroll_totp",
        "confirm_totp",
        "disable_totp",
        "list_tokens",
        "create_token",
        "revoke_token",
        "ssh_key_challenge",
    ] {
        m.insert(op, vec![ANY]);
    }
    for op in [
        "create_requests",
        "list_requests",
        "get_request",
        "approve_request",
        "deny_request",
        "cancel_request",
        "revoke_request",
        "checkin_request",
        "review_request",
        "remove_request",
        "list_approvals",
        "resubmit_request",
        "bulk_decision",
        "account_availability",
        "list_reason_codes",
        "list_favorites",
        "create_favorite",
        "replace_favorite",
        "delete_favorite",
        "submit_favorite",
        "get_services",
        "checkout_password",
        "list_sessions",
        "get_session",
        "terminate_session",
        "verify_recording",
        "export_recording",
        "search_recordings",
        "request_recording_view",
        "list_recording_view_requests",
        "approve_recording_view",
        "deny_recording_view",
        "list_frames",
        "get_frame",
        "get_screen",
        "live_screen",
        "launch_session",
        "list_ssh_keys",
        "add_ssh_key",
        "remove_ssh_key",
        "lookup_name",
        "request_options",
        "ssh_proxy",
    ] {
        m.insert(op, vec![ANY]);
    }
    for op in ["watch_session", "list_session_waits", "permit_session_wait", "deny_session_wait"] {
        m.insert(op, vec![ANY]);
    }
    for op in ["list_connection_policies", "get_connection_policy", "explain_connection_policy"] {
        m.insert(op, vec!["security_policy_admin", "auditor", "appliance_admin"]);
    }
    for op in ["create_connection_policy", "replace_connection_policy", "delete_connection_policy"] {
        m.insert(op, vec!["security_policy_admin"]);
    }
    for op in ["create_reason_code", "delete_reason_code"] {
        m.insert(op, vec!["security_policy_admin"]);
    }
    m.insert("set_services", vec!["appliance_admin"]);
    m.insert("failed_notifications", vec!["auditor", "appliance_admin"]);
    m.insert("list_nodes", vec!["auditor", "appliance_admin"]);
    m.insert("test_notification", vec!["appliance_admin"]);
    for op in ["list_credentials", "list_credential_changes", "list_password_profiles"] {
        m.insert(op, vec!["asset_admin", "security_policy_admin", "auditor", "appliance_admin"]);
    }
    for op in [
        "set_account_password",
        "generate_account_password",
        "import_account_ssh_key",
        "generate_account_ssh_key",
        "check_account_credential",
        "change_account_credential",
        "put_password_profile",
        "delete_password_profile",
    ] {
        m.insert(op, vec!["asset_admin"]);
    }
    for op in ["list_users", "get_user", "list_user_groups", "get_user_group"] {
        m.insert(op, dir_readers.clone());
    }
    for op in [
        "create_user",
        "update_user",
        "delete_user",
        "reset_user_password",
        "unlock_user",
        "reset_user_totp",
        "create_user_group",
        "update_user_group",
        "delete_user_group",
        "add_user_group_member",
        "remove_user_group_member",
    ] {
        m.insert(op, vec!["user_admin"]);
    }
    m.insert("set_user_roles", vec!["appliance_admin"]);
    m.insert("list_directories", vec!["user_admin", "auditor", "appliance_admin"]);
    m.insert("list_linked_accounts", dir_readers.clone());
    m.insert("link_account", vec!["user_admin"]);
    m.insert("unlink_account", vec!["user_admin"]);
    m.insert("sync_directory", vec!["user_admin", "appliance_admin"]);
    m.insert("hold_session", vec!["security_policy_admin", "auditor"]);
    m.insert("release_session", vec!["security_policy_admin", "auditor"]);
    for op in [
        "list_assets",
        "get_asset",
        "list_accounts",
        "get_account",
        "list_asset_groups",
        "get_asset_group",
        "list_account_groups",
        "get_account_group",
    ] {
        m.insert(op, inv_readers.clone());
    }
    for op in [
        "create_asset",
        "update_asset",
        "confirm_asset_identity",
        "delete_asset",
        "create_account",
        "update_account",
        "delete_account",
        "create_asset_group",
        "update_asset_group",
        "delete_asset_group",
        "add_asset_group_member",
        "remove_asset_group_member",
        "create_account_group",
        "update_account_group",
        "delete_account_group",
        "add_account_group_member",
        "remove_account_group_member",
    ] {
        m.insert(op, vec!["asset_admin"]);
    }
    for op in ["list_entitlements", "get_entitlement", "list_policies", "get_policy", "explain_policy"] {
        m.insert(op, vec!["security_policy_admin", "auditor", "appliance_admin"]);
    }
    for op in [
        "create_entitlement",
        "replace_entitlement",
        "delete_entitlement",
        "confirm_entitlement",
        "confirm_policy",
        "create_policy",
        "replace_policy",
        "delete_policy",
    ] {
        m.insert(op, vec!["security_policy_admin"]);
    }
    for op in ["list_audit_events", "verify_audit_chain"] {
        m.insert(op, vec!["auditor", "appliance_admin"]);
    }
    m
}

async fn run(db: Db) {
    let server = Server::start(db);
    let admin = server.bootstrap().await;
    let (_, doc) = server.call("GET", "/api/v1/openapi.json", None, None).await;

    let roles = ["appliance_admin", "security_policy_admin", "user_admin", "asset_admin", "auditor"];
    let mut callers: Vec<(&str, Option<String>)> = vec![("anonymous", None)];
    for role in roles {
        let (_, session) = server.user_with_roles(&admin, &format!("u-{}", role.replace('_', "-")), &[role]).await;
        // API tokens, so that calling logout does not end the caller's access mid-test.
        let (s, t) = server.call("POST", "/api/v1/me/tokens", Some(&session), Some(json!({ "name": "matrix" }))).await;
        assert_eq!(s, 201);
        callers.push((role, Some(t["secret"].as_str().unwrap().to_owned())));
    }
    let (_, session) = server.user_with_roles(&admin, "ordinary", &[]).await;
    let (_, t) = server.call("POST", "/api/v1/me/tokens", Some(&session), Some(json!({ "name": "matrix" }))).await;
    callers.push(("ordinary", Some(t["secret"].as_str().unwrap().to_owned())));

    let expected = expected();
    let mut seen = Vec::new();
    let paths = doc["paths"].as_object().unwrap();
    let ghost = "00000000-0000-4000-8000-000000000000";
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap();
            seen.push(id.to_owned());
            let allowed = expected
                .get(id)
                .unwrap_or_else(|| panic!("operation {id} ({method} {path}) is missing from the route matrix"));
            let concrete = path.replace("{id}", ghost).replace("{member_id}", ghost);
            let body = matches!(method.as_str(), "post" | "put" | "patch").then(|| json!({}));
            for (who, token) in &callers {
                let (status, resp) =
                    server.call(&method.to_uppercase(), &concrete, token.as_deref(), body.clone()).await;
                let admitted =
                    allowed.contains(&PUBLIC) || (token.is_some() && (allowed.contains(&ANY) || allowed.contains(who)));
                if admitted {
                    assert!(
                        status != 401 && status != 403,
                        "{who} should reach {method} {path} ({id}) but got {status}: {resp}"
                    );
                    assert!(status < 500, "{who} {method} {path}: server error {status}: {resp}");
                } else if token.is_none() {
                    assert_eq!(status, 401, "anonymous {method} {path} ({id}): {resp}");
                    assert_eq!(resp["code"], "unauthenticated");
                } else {
                    assert_eq!(status, 403, "{who} must not reach {method} {path} ({id}): {resp}");
                    assert_eq!(resp["code"], "forbidden");
                }
            }
        }
    }
    let mut missing: Vec<&str> = expected.keys().copied().filter(|k| !seen.iter().any(|s| s == k)).collect();
    missing.sort();
    assert!(missing.is_empty(), "operations in the matrix but not in the API: {missing:?}");
    // Unknown routes and methods answer with the JSON error shape too.
    let (s, b) = server.call("GET", "/api/v1/nope", Some(&admin), None).await;
    assert_eq!((s, b["code"].clone()), (404, Value::from("not_found")));
    let (s, b) = server.call("PUT", "/api/v1/assets", Some(&admin), None).await;
    assert_eq!((s, b["code"].clone()), (405, Value::from("method_not_allowed")));
}

#[tokio::test]
async fn role_route_matrix_sqlite() {
    run(Db::Sqlite).await;
}

#[tokio::test]
async fn role_route_matrix_postgres() {
    run(Db::postgres()).await;
}
