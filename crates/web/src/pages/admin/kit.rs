//! What the administration pages share: calling the API's own administration endpoints in
//! process, and describing tables and forms for the `admin.html` template.
//!
//! The administration use cases (users, groups, inventory, credentials, rules) live in the
//! API's handlers: their validation, role checks and audit events. The pages do not copy
//! them: a form becomes one request to the same endpoint, made in process with the viewer's
//! own login session and client address (no network hop), so a page can do exactly what the
//! viewer could do with the API or the CLI, and is refused, and audited, the same way.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use portcullis_app::{AppError, ErrorKind};
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::session::{Submitted, Viewer};
use crate::view::error_page;
use crate::Web;

/// The largest answer read from an administration endpoint.
const ANSWER_LIMIT: usize = 16 * 1024 * 1024;

/// Calls an API endpoint as the viewer. `Ok` holds the JSON answer (`null` for none); `Err`
/// the API's refusal, as the use-case error it came from.
pub async fn call(web: &Web, v: &Viewer, method: Method, path: &str, body: Option<Value>) -> Result<Value, AppError> {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {}", v.token.as_str()))
        .header(header::ACCEPT, "application/json");
    if body.is_some() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    let mut req = req
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .map_err(|_| AppError::bad_request("that address cannot be called"))?;
    if let Some(c) = v.client {
        req.extensions_mut().insert(c);
    }
    let answer = web.api.clone().oneshot(req).await.map_err(|_| AppError::internal())?;
    let status = answer.status();
    let bytes = axum::body::to_bytes(answer.into_body(), ANSWER_LIMIT).await.map_err(|_| AppError::internal())?;
    let value: Value =
        if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
    if status.is_success() {
        return Ok(value);
    }
    let message = value["message"].as_str().unwrap_or("the server refused this").to_owned();
    let kind = match status {
        StatusCode::FORBIDDEN => ErrorKind::Forbidden,
        StatusCode::NOT_FOUND => ErrorKind::NotFound,
        StatusCode::CONFLICT => ErrorKind::Conflict,
        StatusCode::UNPROCESSABLE_ENTITY | StatusCode::BAD_REQUEST => ErrorKind::Invalid,
        StatusCode::UNAUTHORIZED => ErrorKind::Unauthenticated,
        StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT => ErrorKind::Upstream,
        _ => ErrorKind::Internal,
    };
    let mut e = AppError::new(kind, "refused", message);
    e.field = value["field"].as_str().map(str::to_owned);
    Err(e)
}

/// GET, as the viewer.
pub async fn get(web: &Web, v: &Viewer, path: &str) -> Result<Value, AppError> {
    call(web, v, Method::GET, path, None).await
}

/// The end of a form: to `to` with the notice, or the refusal as a page that leads back there.
pub fn finish(web: &Web, form: &Submitted, result: Result<String, AppError>, to: &str) -> Response {
    finish_at(web, form, result.map(|notice| (to.to_owned(), notice)), to)
}

/// The end of a form whose success leads elsewhere: `Ok((to, notice))`; a refusal is a page
/// that leads back to `back`.
pub fn finish_at(web: &Web, form: &Submitted, result: Result<(String, String), AppError>, back: &str) -> Response {
    match result {
        Ok((to, notice)) => Redirect::to(&super::super::with_notice(&to, &notice)).into_response(),
        Err(e) => error_page(web, &form.viewer, &e, back),
    }
}

/// The items of a JSON list answer (none if it is not a list).
pub fn items(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// A form: where it posts, its fields, the button's text.
pub fn form(id: &str, action: &str, submit: &str, fields: Vec<Value>) -> Value {
    json!({ "id": id, "action": action, "submit": submit, "fields": fields })
}

/// A one-button form in a table row; `label` says what it acts on, for screen readers.
pub fn button(id: &str, action: &str, submit: &str, label: &str, fields: Vec<Value>) -> Value {
    json!({ "id": id, "action": action, "submit": submit, "label": label, "fields": fields, "inline": true })
}

pub fn text(name: &str, label: &str, value: impl Into<Value>, required: bool) -> Value {
    json!({ "type": "text", "name": name, "label": label, "value": value.into(), "required": required })
}

pub fn with_hint(mut field: Value, hint: &str) -> Value {
    field["hint"] = json!(hint);
    field
}

pub fn password(name: &str, label: &str) -> Value {
    json!({ "type": "password", "name": name, "label": label, "required": true })
}

pub fn number(name: &str, label: &str, value: impl Into<Value>) -> Value {
    json!({ "type": "number", "name": name, "label": label, "value": value.into() })
}

pub fn checkbox(name: &str, label: &str, on: bool) -> Value {
    json!({ "type": "checkbox", "name": name, "label": label, "value": on })
}

pub fn hidden(name: &str, value: &str) -> Value {
    json!({ "type": "hidden", "name": name, "value": value })
}

pub fn textarea(name: &str, label: &str, value: &str, rows: u32) -> Value {
    json!({ "type": "textarea", "name": name, "label": label, "value": value, "rows": rows })
}

/// A drop-down of `(value, label)` pairs.
pub fn select(name: &str, label: &str, value: &str, options: &[(&str, &str)]) -> Value {
    let options: Vec<Value> = options.iter().map(|(v, l)| json!({ "value": v, "label": l })).collect();
    json!({ "type": "select", "name": name, "label": label, "value": value, "options": options })
}

/// Check boxes, one per `(value, label, checked)`.
pub fn choices(name: &str, label: &str, options: &[(String, String, bool)]) -> Value {
    let options: Vec<Value> = options.iter().map(|(v, l, c)| json!({ "value": v, "label": l, "checked": c })).collect();
    json!({ "type": "choices", "name": name, "label": label, "options": options })
}

/// A table cell: text, a link, or monospace text.
pub fn cell(text: impl Into<Value>) -> Value {
    json!({ "text": text.into() })
}

pub fn link(text: impl Into<Value>, href: &str) -> Value {
    json!({ "text": text.into(), "href": href })
}

pub fn mono(text: impl Into<Value>) -> Value {
    json!({ "text": text.into(), "mono": true })
}

pub fn table(columns: &[&str], rows: Vec<Vec<Value>>, empty: &str) -> Value {
    json!({ "columns": columns, "rows": rows, "empty": empty })
}

/// An API time (RFC 3339) in the viewer's zone.
pub fn at(v: &Viewer, rfc3339: &Value) -> String {
    rfc3339
        .as_str()
        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
        .map(|t| crate::view::when(&v.zone, t.as_microsecond()))
        .unwrap_or_default()
}

/// A string field of an API answer.
pub fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_default()
}

/// A form's optional text, as JSON (`null` when empty).
pub fn opt(form: &Submitted, name: &str) -> Value {
    form.text(name).map_or(Value::Null, Value::String)
}

/// A form's required text.
pub fn need(form: &Submitted, name: &str, label: &str) -> Result<String, AppError> {
    form.text(name).ok_or_else(|| AppError::invalid(name, format!("{label} is required")))
}

/// A path segment taken from the URL, refused if it could change the API path.
pub fn seg(id: &str) -> Result<&str, AppError> {
    if !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        Ok(id)
    } else {
        Err(AppError::not_found("that object"))
    }
}
