//! Names for ids: every front end takes a unique name where it takes an id (accounts as
//! `ACCOUNT@ASSET`), and shows names next to ids. Who may look up a kind of object is who may
//! list it.

use portcullis_core::role::Role;
use portcullis_store::Named;

use crate::auth::Caller;
use crate::error::{AppError, AppResult};
use crate::state::App;

/// Roles that may read objects of this kind (empty: everyone signed in).
fn readers(kind: Named) -> &'static [Role] {
    use Role::*;
    match kind {
        Named::User | Named::UserGroup => &[UserAdmin, SecurityPolicyAdmin, Auditor, ApplianceAdmin],
        Named::Asset | Named::Account | Named::AssetGroup | Named::AccountGroup => {
            &[AssetAdmin, SecurityPolicyAdmin, Auditor, ApplianceAdmin]
        }
        Named::Entitlement | Named::Policy => &[SecurityPolicyAdmin, Auditor, ApplianceAdmin],
        Named::ReasonCode => &[],
    }
}

/// The objects of `kind` called `name`, as `(id, name)`: none, one, or several (an ambiguous
/// name, which the caller must replace with one of the ids).
pub async fn lookup(state: &App, caller: &Caller, kind: Named, name: &str) -> AppResult<Vec<(String, String)>> {
    let roles = readers(kind);
    if !roles.is_empty() && !roles.iter().any(|r| caller.has(*r)) {
        let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        return Err(AppError::forbidden(format!(
            "looking up {} names needs one of the roles: {}",
            kind.noun(),
            names.join(", ")
        )));
    }
    if name.is_empty() || name.len() > 300 {
        return Err(AppError::invalid("name", "must be 1 to 300 characters"));
    }
    Ok(state.store.ids_named(kind, name).await?)
}
