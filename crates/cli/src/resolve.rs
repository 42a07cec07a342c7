//! Names in place of ids: every argument that takes an id also takes a unique name (accounts
//! as `ACCOUNT@ASSET`), looked up with `GET /api/v1/names/{kind}`.

use serde_json::Value;

use crate::client::{enc, Client};
use crate::CliError;

/// A kind of named object, as the names route calls it, and its noun for messages.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    User,
    UserGroup,
    AssetGroup,
    AccountGroup,
    Asset,
    Account,
    Entitlement,
    Policy,
    ReasonCode,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::UserGroup => "user_group",
            Kind::AssetGroup => "asset_group",
            Kind::AccountGroup => "account_group",
            Kind::Asset => "asset",
            Kind::Account => "account",
            Kind::Entitlement => "entitlement",
            Kind::Policy => "policy",
            Kind::ReasonCode => "reason_code",
        }
    }

    pub fn noun(self) -> &'static str {
        match self {
            Kind::UserGroup => "user group",
            Kind::AssetGroup => "asset group",
            Kind::AccountGroup => "account group",
            Kind::ReasonCode => "reason code",
            other => other.path(),
        }
    }
}

/// Whether the text is an id (a UUID) rather than a name.
pub fn is_id(text: &str) -> bool {
    text.len() == 36
        && text.char_indices().all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() })
}

/// The id of the object of `kind` that `text` names (or `text` itself when it is an id).
pub async fn id(c: &Client, kind: Kind, text: &str) -> Result<String, CliError> {
    if is_id(text) {
        return Ok(text.to_owned());
    }
    let found = c.get(&format!("/api/v1/names/{}?name={}", kind.path(), enc(text))).await?;
    let found = found.as_array().cloned().unwrap_or_default();
    let noun = kind.noun();
    match found.as_slice() {
        [one] => Ok(one["id"].as_str().unwrap_or_default().to_owned()),
        [] => {
            let hint = match kind {
                Kind::Account if !text.contains('@') => " (name accounts as ACCOUNT@ASSET, e.g. root@web-1)",
                _ => "",
            };
            Err(CliError::Usage(format!("no {noun} is named '{text}'{hint}; give its exact name or its id")))
        }
        many => {
            let listed: Vec<String> = many
                .iter()
                .map(|m| format!("{} ({})", m["name"].as_str().unwrap_or("?"), m["id"].as_str().unwrap_or("?")))
                .collect();
            Err(CliError::Usage(format!(
                "'{text}' names {} {noun}s: {}; give the one you mean by ACCOUNT@ASSET or by id",
                many.len(),
                listed.join(", ")
            )))
        }
    }
}

/// The ids of several names.
pub async fn ids(c: &Client, kind: Kind, texts: &[String]) -> Result<Vec<String>, CliError> {
    let mut out = Vec::with_capacity(texts.len());
    for t in texts {
        out.push(id(c, kind, t).await?);
    }
    Ok(out)
}

/// Replaces names with ids in the string array at `path` of a JSON body (absent: nothing).
pub async fn ids_in(c: &Client, body: &mut Value, path: &[&str], kind: Kind) -> Result<(), CliError> {
    let mut at = &mut *body;
    for key in path {
        match at.get_mut(*key) {
            Some(v) => at = v,
            None => return Ok(()),
        }
    }
    if let Some(list) = at.as_array_mut() {
        for v in list.iter_mut() {
            if let Some(s) = v.as_str() {
                *v = Value::String(id(c, kind, s).await?);
            }
        }
    } else if let Some(s) = at.as_str() {
        *at = Value::String(id(c, kind, s).await?);
    }
    Ok(())
}

/// Names to ids in a policy body: its entitlement, scope, approvers, reviewers and directory
/// accounts, so a policy file can say `"user_ids": ["alice"]`.
pub async fn policy_body(c: &Client, body: &mut Value) -> Result<(), CliError> {
    // What `policy show -o json` prints but the server keeps itself: a shown policy, edited,
    // can be given back as it is.
    if let Some(o) = body.as_object_mut() {
        for k in ["id", "created_at", "updated_at", "entitlement_name", "names", "unconfirmed_by"] {
            o.remove(k);
        }
    }
    ids_in(c, body, &["entitlement_id"], Kind::Entitlement).await?;
    ids_in(c, body, &["scope", "assets"], Kind::Asset).await?;
    ids_in(c, body, &["scope", "asset_groups"], Kind::AssetGroup).await?;
    ids_in(c, body, &["scope", "accounts"], Kind::Account).await?;
    ids_in(c, body, &["scope", "account_groups"], Kind::AccountGroup).await?;
    ids_in(c, body, &["settings", "reviewer_user_ids"], Kind::User).await?;
    ids_in(c, body, &["settings", "reviewer_group_ids"], Kind::UserGroup).await?;
    ids_in(c, body, &["settings", "directory_account_ids"], Kind::Account).await?;
    let levels = body.pointer("/settings/approval_levels").and_then(Value::as_array).map_or(0, Vec::len);
    for i in 0..levels {
        let level = &mut body["settings"]["approval_levels"][i];
        ids_in(c, level, &["user_ids"], Kind::User).await?;
        ids_in(c, level, &["group_ids"], Kind::UserGroup).await?;
    }
    Ok(())
}
