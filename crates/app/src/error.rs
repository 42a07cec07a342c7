//! The one error type of the use cases: a kind (what sort of failure, which each front end
//! maps to its own terms: an HTTP status, an SSH disconnect), a stable machine-readable `code`
//! and a human `message` that says what to fix. Internal causes are logged, never shown.

use portcullis_core::ValidationError;
use portcullis_store::StoreError;

/// What sort of failure, independent of the front end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input is malformed as a whole.
    BadRequest,
    /// Not signed in, or the credentials are wrong.
    Unauthenticated,
    /// Signed in, but not allowed (role, ownership, policy).
    Forbidden,
    /// No such object (or not visible to the caller).
    NotFound,
    /// Conflicts with the current state.
    Conflict,
    /// A field is invalid (`field` names it).
    Invalid,
    /// A target system could not be reached or refused.
    Upstream,
    /// Too many attempts; try again later.
    TooMany,
    /// A failure that is not the caller's; details are in the server log.
    Internal,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AppError {
    pub kind: ErrorKind,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        AppError { kind, code, message: message.into(), field: None }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, "bad_request", message)
    }
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthenticated, "unauthenticated", message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, "forbidden", message)
    }
    /// Refused with a code of its own (e.g. `service_disabled`, `no_governing_policy`).
    pub fn refused(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, code, message)
    }
    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorKind::NotFound, "not_found", format!("{what} not found"))
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, code, message)
    }
    pub fn internal() -> Self {
        Self::new(ErrorKind::Internal, "internal", "internal error; see the server log")
    }
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationError::new(field, message).into()
    }
}

impl From<ValidationError> for AppError {
    fn from(e: ValidationError) -> Self {
        AppError { kind: ErrorKind::Invalid, code: "validation_failed", message: e.to_string(), field: Some(e.field) }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => AppError::not_found(what),
            StoreError::Conflict(m) => AppError::conflict("conflict", m),
            StoreError::Invalid(v) => v.into(),
            StoreError::WrongState { code, message } => AppError::conflict(code, message),
            StoreError::Refused { code, message } => AppError::refused(code, message),
            other => {
                tracing::error!(error = %other, "store failure");
                AppError::internal()
            }
        }
    }
}
