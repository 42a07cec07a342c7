//! Who is looking: the login session in a cookie, the CSRF token derived from it, and the
//! checks every state-changing form goes through before a use case sees it.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};
use jiff::tz::TimeZone;
use portcullis_app::auth::{Caller, ClientAddr};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::view::message_page;
use crate::Web;

pub const COOKIE: &str = "portcullis_session";

/// The signed-in person viewing a page.
pub struct Viewer {
    pub caller: Caller,
    /// Put in every form; checked on every POST.
    pub csrf: String,
    /// The viewer's time zone: every time on a page is shown in it, and named.
    pub zone: TimeZone,
    /// The login session's bearer token: the administration pages call the API's own
    /// endpoints with it, in process (see `pages::admin::api`).
    pub(crate) token: zeroize::Zeroizing<String>,
    /// Where the viewer connects from (for the audit trail of those calls).
    pub(crate) client: Option<ClientAddr>,
}

pub fn client_source(parts: &Parts) -> String {
    parts.extensions.get::<ClientAddr>().map(|a| a.0.ip().to_string()).unwrap_or_else(|| "unknown".into())
}

/// A cookie's value.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    cookie(headers, name)
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 256)
}

/// The CSRF token of a login session: derived from it, so nothing more is stored and a page
/// from another session (or another site) cannot produce it.
pub fn csrf_for(token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"portcullis web csrf\0");
    h.update(token.as_bytes());
    hex::encode(h.finalize())
}

/// The `Set-Cookie` value of a session (or of its removal, with an empty token).
pub fn session_cookie(token: &str, secure: bool, max_age_seconds: i64) -> String {
    format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_seconds}{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Whether the browser says the request comes from another site (a forged form post).
pub fn cross_site(headers: &HeaderMap) -> bool {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if matches!(fetch_site, Some("cross-site") | Some("same-site")) {
        return true;
    }
    // Without Fetch Metadata: the Origin, when sent, must be this host.
    match (headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()), headers.get(header::HOST)) {
        (Some("null"), _) => true,
        (Some(origin), Some(host)) => {
            let host = host.to_str().unwrap_or_default();
            let bare = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            bare != host
        }
        _ => false,
    }
}

fn to_login(parts: &Parts, ended: bool) -> Response {
    let next = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let next = if next.starts_with('/') && !next.starts_with("//") { next } else { "/" };
    let target = format!("/login?next={}{}", encode(next), if ended { "&ended=1" } else { "" });
    Redirect::to(&target).into_response()
}

/// Percent-encodes a query value.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl FromRequestParts<Web> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, web: &Web) -> Result<Self, Response> {
        let Some(token) = cookie(&parts.headers, COOKIE) else { return Err(to_login(parts, false)) };
        match portcullis_app::auth::authenticate(web, &token, client_source(parts)).await {
            Ok(caller) => {
                let zone = TimeZone::get(&caller.user.time_zone).unwrap_or(TimeZone::UTC);
                let client = parts.extensions.get::<ClientAddr>().cloned();
                Ok(Viewer { csrf: csrf_for(&token), caller, zone, token: zeroize::Zeroizing::new(token), client })
            }
            Err(_) => Err(to_login(parts, true)),
        }
    }
}

/// A submitted form: the viewer, checked to come from this site and to carry their CSRF
/// token, and the fields in order (a name may repeat, e.g. checked boxes).
pub struct Submitted {
    pub viewer: Viewer,
    pub fields: Vec<(String, String)>,
}

impl Submitted {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A text field, trimmed; absent when empty.
    pub fn text(&self, name: &str) -> Option<String> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.fields.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()).collect()
    }
}

const FORM_LIMIT: usize = 64 * 1024;

impl FromRequest<Web> for Submitted {
    type Rejection = Response;

    async fn from_request(req: Request, web: &Web) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let refused = |why: &str| message_page(web, None, "Refused", why, "/").into_response();
        if cross_site(&parts.headers) {
            return Err(refused("This form was sent from another site; nothing was done."));
        }
        let viewer = Viewer::from_request_parts(&mut parts, web).await?;
        let bytes = axum::body::to_bytes(body, FORM_LIMIT)
            .await
            .map_err(|_| refused("The form is too large (at most 64 KiB); nothing was done."))?;
        let fields: Vec<(String, String)> =
            form_urlencoded::parse(&bytes).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        let given = fields.iter().find(|(k, _)| k == "csrf").map(|(_, v)| v.as_str()).unwrap_or("");
        if !bool::from(given.as_bytes().ct_eq(viewer.csrf.as_bytes())) {
            return Err(refused(
                "This form is out of date or was not made by Portcullis (its security token does not match \
                 your session); reload the page and try again. Nothing was done.",
            ));
        }
        Ok(Submitted { viewer, fields })
    }
}
