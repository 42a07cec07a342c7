//! Using an available request from the page: checking the password out (shown for 30 seconds
//! or copied to the clipboard without being rendered; both audited by the use case) and
//! launching a session (one-time token commands).

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::session::Submitted;
use crate::view::{error_page, page, when};
use crate::Web;

/// The credential as JSON for the page's script; never cached.
pub async fn checkout(State(web): State<Web>, Path(id): Path<String>, form: Submitted) -> Response {
    let how = form.get("how").unwrap_or("show").to_owned();
    match portcullis_app::credentials::checkout(&web, &form.viewer.caller, &id, &how).await {
        Ok(c) => {
            let secret = zeroize::Zeroizing::new(String::from_utf8_lossy(c.secret.expose()).into_owned());
            let body = json!({ "kind": c.kind, "secret": secret.as_str() }).to_string();
            ([(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")], body).into_response()
        }
        Err(e) => {
            let status = if e.kind == portcullis_app::ErrorKind::Forbidden {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::CONFLICT
            };
            (status, [(header::CONTENT_TYPE, "application/json")], json!({ "message": e.message }).to_string())
                .into_response()
        }
    }
}

/// A one-time launch token and the commands that use it.
pub async fn launch(State(web): State<Web>, Path(id): Path<String>, form: Submitted) -> Response {
    let v = &form.viewer;
    match portcullis_app::sessions::launch(&web, &v.caller, &id).await {
        Ok(l) if l.access_type == portcullis_core::policy::AccessType::Rdp => {
            let r = l.rdp(&web.rdp_host, &v.caller.user.username);
            let ctx = json!({
                "title": "Start a session",
                "target": format!("{}@{}", l.account_name, l.asset_name),
                "expires": when(&v.zone, l.expires_at),
                "commands": [r.freerdp],
                "rdp_href": data_url(&r.rdp_file),
                "rdp_file": r.rdp_file,
                "rdp_name": format!("{}-{}.rdp", l.account_name, l.asset_name),
                "inband_user": r.inband_user,
                "rdp": true,
                "token": l.token.as_str(),
                "token_password": !l.user_supplied,
                "request": id,
            });
            page(&web, v, "launch.html", ctx)
        }
        Ok(l) => {
            let c = l.commands(&web.ssh_host, &v.caller.user.username);
            let ctx = json!({
                "title": "Start a session",
                "target": format!("{}@{}", l.account_name, l.asset_name),
                "expires": when(&v.zone, l.expires_at),
                "commands": [c.ssh, c.scp, c.sftp, c.plink],
                "inband_user": c.inband_user,
                "request": id,
            });
            page(&web, v, "launch.html", ctx)
        }
        Err(e) => error_page(&web, v, &e, &format!("/requests/{id}")),
    }
}

/// The `.rdp` file as a `data:` link the browser saves (percent-encoded).
fn data_url(text: &str) -> String {
    let mut out = String::from("data:application/x-rdp;charset=utf-8,");
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_rdp_file_as_a_data_link() {
        assert_eq!(super::data_url("a b:1\r\n"), "data:application/x-rdp;charset=utf-8,a%20b%3A1%0D%0A");
    }
}
