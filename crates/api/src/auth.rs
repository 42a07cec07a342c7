//! Authentication over HTTP: the extractors that decide who is calling (through the
//! application layer's sign-in) and whether their roles admit the route. Every route takes an [`Authed`] extractor naming the roles it
//! admits; a route without one is public and must be listed as such in the route matrix test.

use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
pub use portcullis_app::auth::{
    hash_password, hash_password_blocking, hex_lower, new_token, token_hash, verify_login, verify_password,
    verify_password_blocking, Caller,
};
use portcullis_core::role::Role;

use crate::error::ApiError;
use crate::state::AppState;

pub use portcullis_app::auth::ClientAddr;

pub(crate) fn client_source(parts: &Parts) -> String {
    parts.extensions.get::<ClientAddr>().map(|a| a.0.ip().to_string()).unwrap_or_else(|| "unknown".into())
}

/// A set of roles a route admits.
pub trait RoleSet: Send + Sync + 'static {
    /// Empty means: any authenticated user.
    const ROLES: &'static [Role];
}

macro_rules! role_set {
    ($(#[$m:meta])* $name:ident = [$($role:ident),*]) => {
        $(#[$m])*
        pub struct $name;
        impl RoleSet for $name {
            const ROLES: &'static [Role] = &[$(Role::$role),*];
        }
    };
}

role_set!(/// Any signed-in user.
    AnyUser = []);
role_set!(/// User Administrators.
    UserAdmins = [UserAdmin]);
role_set!(/// Asset Administrators.
    AssetAdmins = [AssetAdmin]);
role_set!(/// Appliance Administrators.
    ApplianceAdmins = [ApplianceAdmin]);
role_set!(/// Auditors and Appliance Administrators.
    AuditReaders = [Auditor, ApplianceAdmin]);
role_set!(/// Who may read users and groups.
    DirectoryReaders = [UserAdmin, SecurityPolicyAdmin, Auditor, ApplianceAdmin]);
role_set!(/// Who may see the directory connections and their synchronisations.
    DirectoryWatchers = [UserAdmin, Auditor, ApplianceAdmin]);
role_set!(/// Who may start a directory synchronisation.
    DirectoryAdmins = [UserAdmin, ApplianceAdmin]);
role_set!(/// Security Policy Administrators.
    PolicyAdmins = [SecurityPolicyAdmin]);
role_set!(/// Who may put sessions under legal hold and release them.
    HoldKeepers = [SecurityPolicyAdmin, Auditor]);
role_set!(/// Who may read entitlements and policies and ask which policy governs.
    PolicyReaders = [SecurityPolicyAdmin, Auditor, ApplianceAdmin]);
role_set!(/// Who may read the inventory.
    InventoryReaders = [AssetAdmin, SecurityPolicyAdmin, Auditor, ApplianceAdmin]);

/// An authenticated caller holding at least one of `R`'s roles. Rejects with 401 when there
/// is no valid token and 403 when the roles are missing.
pub struct Authed<R: RoleSet> {
    pub caller: Caller,
    _roles: PhantomData<R>,
}

impl<R: RoleSet> std::ops::Deref for Authed<R> {
    type Target = Caller;
    fn deref(&self) -> &Caller {
        &self.caller
    }
}

impl<R: RoleSet> FromRequestParts<AppState> for Authed<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = authenticate(parts, state).await?;
        if !R::ROLES.is_empty() && !R::ROLES.iter().any(|r| caller.has(*r)) {
            let names: Vec<&str> = R::ROLES.iter().map(|r| r.as_str()).collect();
            let message = format!("this action needs one of the roles: {}", names.join(", "));
            // A refused attempt is an audit event, like a success (the SIEM sees attempts).
            let err = portcullis_app::AppError::forbidden(message.clone());
            let route = format!("{} {}", parts.method, parts.uri.path());
            let details = serde_json::json!({ "route": route, "roles_needed": names });
            portcullis_app::audit::refusal(state, &caller.actor(), "api.call", "route", &route, &err, details).await;
            return Err(ApiError::forbidden(message));
        }
        Ok(Authed { caller, _roles: PhantomData })
    }
}

async fn authenticate(parts: &Parts, state: &AppState) -> Result<Caller, ApiError> {
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthenticated("sign in first: send 'Authorization: Bearer <token>'"))?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 256)
        .ok_or_else(|| ApiError::unauthenticated("the Authorization header must be 'Bearer <token>'"))?;
    Ok(portcullis_app::auth::authenticate(state, token, client_source(parts)).await?)
}

/// The client address of an unauthenticated request, for audit.
pub struct Source(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Source {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Source(client_source(parts)))
    }
}
