//! Shapes shared by several route modules, and conversions from store types. Only this crate
//! serializes: store and core types have no serde derives, so a secret cannot reach JSON by
//! accident.

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

use portcullis_store::{Page, User};

/// Formats store time (Unix microseconds) as RFC 3339.
pub fn ts(micros: i64) -> String {
    jiff::Timestamp::from_microsecond(micros).map(|t| t.to_string()).unwrap_or_default()
}

/// Parses an RFC 3339 time from the API into Unix microseconds.
pub fn parse_ts(field: &str, text: &str) -> Result<i64, crate::error::ApiError> {
    text.parse::<jiff::Timestamp>().map(|t| t.as_microsecond()).map_err(|_| {
        crate::error::ApiError::invalid(field, format!("'{text}' is not an RFC 3339 time such as 2026-01-31T09:00:00Z"))
    })
}

/// Distinguishes "absent" (leave as is) from `null` (clear) in PATCH bodies.
pub fn double_option<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// At most this many items (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// Skip this many items.
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

impl PageParams {
    pub fn page(&self) -> Result<Page, crate::error::ApiError> {
        let limit = self.limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(crate::error::ApiError::invalid("limit", "must be 1 to 1000"));
        }
        let offset = self.offset.unwrap_or(0);
        if offset < 0 {
            return Err(crate::error::ApiError::invalid("offset", "must not be negative"));
        }
        Ok(Page { limit, offset })
    }
}

/// A user as the API shows it. Holds no secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserDto {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    /// Administrative roles: appliance_admin, security_policy_admin, user_admin, asset_admin, auditor.
    pub roles: Vec<String>,
    /// IANA time zone that governs the user's time restrictions.
    pub time_zone: String,
    /// When true, only a User Administrator may change the time zone.
    pub time_zone_locked: bool,
    pub disabled: bool,
    pub failed_logins: i64,
    /// Set while the account is locked after repeated failed sign-ins.
    pub locked_until: Option<String>,
    pub totp_enabled: bool,
    pub password_changed_at: String,
    pub created_at: String,
    pub updated_at: String,
    /// The directory connection the user comes from (their password is the directory's);
    /// absent for Portcullis users.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directory: Option<String>,
}

impl From<&User> for UserDto {
    fn from(u: &User) -> Self {
        UserDto {
            id: u.id.clone(),
            username: u.username.clone(),
            display_name: u.display_name.clone(),
            email: u.email.clone(),
            roles: u.roles.iter().map(|r| r.as_str().to_owned()).collect(),
            time_zone: u.time_zone.clone(),
            time_zone_locked: u.time_zone_locked,
            disabled: u.disabled,
            failed_logins: u.failed_logins,
            locked_until: u.locked_until.map(ts),
            totp_enabled: u.totp_enabled,
            password_changed_at: ts(u.password_changed_at),
            created_at: ts(u.created_at),
            updated_at: ts(u.updated_at),
            directory: u.directory.clone(),
        }
    }
}

/// An id path parameter.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct IdPath {
    pub id: String,
}

/// A group id and a member id.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MemberPath {
    pub id: String,
    pub member_id: String,
}
