//! Extractor wrappers whose rejections are [`ApiError`]s, so every malformed request gets
//! the same JSON error shape.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body. Request DTOs deny unknown fields.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected a request body with Content-Type: application/json",
        ),
        JsonRejection::JsonDataError(e) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!("the request body does not fit: {}", redact_values(&e.body_text())),
        ),
        JsonRejection::JsonSyntaxError(e) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the request body is not valid JSON: {}", redact_values(&e.body_text())),
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the request body is too large")
        }
        other => ApiError::bad_request(other.body_text()),
    }
}

/// Path parameters.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(r) => Err(path_rejection(r)),
        }
    }
}

fn path_rejection(r: PathRejection) -> ApiError {
    ApiError::bad_request(format!("invalid path parameter: {}", r.body_text()))
}

/// Query-string parameters.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(r) => Err(query_rejection(r)),
        }
    }
}

fn query_rejection(r: QueryRejection) -> ApiError {
    ApiError::bad_request(format!("invalid query string: {}", r.body_text()))
}

/// serde quotes offending string values in its messages (`invalid type: string "…"`) and puts
/// numbers and characters in backticks (``invalid type: integer `123456` ``); a password sent
/// in the wrong field or as a number must not come back in an error, so those values are
/// replaced. Field names (in backticks too) stay.
pub(crate) fn redact_values(message: &str) -> String {
    let message = redact_ticked(message);
    let mut out = String::with_capacity(message.len());
    let mut in_quotes = false;
    for c in message.chars() {
        match (c, in_quotes) {
            ('"', false) => {
                in_quotes = true;
                out.push_str("\"…");
            }
            ('"', true) => {
                in_quotes = false;
                out.push('"');
            }
            (_, true) => {}
            (c, false) => out.push(c),
        }
    }
    out
}

/// Replaces what serde puts in backticks after `integer`, `floating point` or `char`.
fn redact_ticked(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    loop {
        let next = ["integer `", "floating point `", "char `"]
            .iter()
            .filter_map(|m| rest.find(m).map(|i| (i, m.len())))
            .min_by_key(|(i, _)| *i);
        let Some((at, len)) = next else { break };
        out.push_str(&rest[..at + len]);
        rest = &rest[at + len..];
        match rest.find('`') {
            Some(end) => {
                out.push('…');
                rest = &rest[end..];
            }
            None => break,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_are_redacted_too() {
        let m = super::redact_values("password: invalid type: integer `123456`, expected a string at line 1 column 26");
        assert_eq!(m, "password: invalid type: integer `…`, expected a string at line 1 column 26");
        let m = super::redact_values("unknown field `pasword`, expected one of `username`, `password`");
        assert_eq!(m, "unknown field `pasword`, expected one of `username`, `password`");
        let m = super::redact_values("x: invalid type: floating point `1.5`, expected u32; y: char `q`");
        assert_eq!(m, "x: invalid type: floating point `…`, expected u32; y: char `…`");
    }

    #[test]
    fn quoted_values_are_redacted_but_field_names_stay() {
        let m = super::redact_values(
            r#"password: invalid type: string "hunter2", expected a boolean at `time_zone_locked`"#,
        );
        assert_eq!(m, r#"password: invalid type: string "…", expected a boolean at `time_zone_locked`"#);
    }
}
