//! Names of stored objects, both ways: the ids a name stands for (so every front end can take
//! names where it takes ids) and the names of a set of ids (so every DTO can show names next to
//! ids).

use std::collections::HashMap;

use crate::sql::{Value, Where};
use crate::{Result, Store};

/// A kind of named object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Named {
    User,
    UserGroup,
    AssetGroup,
    AccountGroup,
    Asset,
    /// Named `ACCOUNT@ASSET` (or `ACCOUNT` alone, which may match on several assets).
    Account,
    Entitlement,
    Policy,
    ReasonCode,
}

impl Named {
    pub const ALL: &'static [Named] = &[
        Named::User,
        Named::UserGroup,
        Named::AssetGroup,
        Named::AccountGroup,
        Named::Asset,
        Named::Account,
        Named::Entitlement,
        Named::Policy,
        Named::ReasonCode,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Named::User => "user",
            Named::UserGroup => "user_group",
            Named::AssetGroup => "asset_group",
            Named::AccountGroup => "account_group",
            Named::Asset => "asset",
            Named::Account => "account",
            Named::Entitlement => "entitlement",
            Named::Policy => "policy",
            Named::ReasonCode => "reason_code",
        }
    }

    pub fn parse(s: &str) -> Option<Named> {
        Named::ALL.iter().copied().find(|k| k.as_str() == s)
    }

    /// The words for messages: "user group", "account".
    pub fn noun(self) -> &'static str {
        match self {
            Named::UserGroup => "user group",
            Named::AssetGroup => "asset group",
            Named::AccountGroup => "account group",
            Named::ReasonCode => "reason code",
            other => other.as_str(),
        }
    }

    /// `SELECT id, name FROM …` for this kind; accounts are named ACCOUNT@ASSET.
    fn select(self) -> (&'static str, &'static str, &'static str) {
        // (from clause, id column, name expression)
        match self {
            Named::User => ("users t", "t.id", "t.username"),
            Named::UserGroup => ("user_groups t", "t.id", "t.name"),
            Named::AssetGroup => ("asset_groups t", "t.id", "t.name"),
            Named::AccountGroup => ("account_groups t", "t.id", "t.name"),
            Named::Asset => ("assets t", "t.id", "t.name"),
            Named::Account => ("accounts t JOIN assets s ON s.id = t.asset_id", "t.id", "t.name || '@' || s.name"),
            Named::Entitlement => ("entitlements t", "t.id", "t.name"),
            Named::Policy => ("policies t", "t.id", "t.name"),
            Named::ReasonCode => ("reason_codes t", "t.id", "t.name"),
        }
    }
}

impl Store {
    /// The ids of the objects of this kind with this name (at most 20), as `(id, name)`.
    /// Accounts match `ACCOUNT@ASSET` exactly, or `ACCOUNT` on any asset.
    pub async fn ids_named(&self, kind: Named, name: &str) -> Result<Vec<(String, String)>> {
        let (from, id, label) = kind.select();
        let mut w = Where::default();
        match (kind, name.rsplit_once('@')) {
            (Named::Account, Some((account, asset))) => {
                w.and("t.name =", Value::Text(account.to_owned()));
                w.and("s.name =", Value::Text(asset.to_owned()));
            }
            (Named::User, _) => w.and("t.username =", Value::Text(name.to_owned())),
            _ => w.and("t.name =", Value::Text(name.to_owned())),
        }
        let sql = format!("SELECT {id}, {label} FROM {from} WHERE 1 = 1{} ORDER BY 2, 1 LIMIT 20", w.sql);
        Ok(w.bind(sqlx::query_as::<_, (String, String)>(&sql)).fetch_all(&self.read).await?)
    }

    /// The names of these ids (accounts as ACCOUNT@ASSET); ids that name nothing are absent.
    pub async fn names_for(&self, kind: Named, ids: &[String]) -> Result<HashMap<String, String>> {
        let mut out = HashMap::new();
        let mut ids: Vec<&String> = ids.iter().filter(|i| !i.is_empty()).collect();
        ids.sort();
        ids.dedup();
        let (from, id, label) = kind.select();
        for chunk in ids.chunks(500) {
            let mut w = Where::default();
            w.and_in(id, chunk.iter().map(|i| Value::Text((*i).clone())));
            let sql = format!("SELECT {id}, {label} FROM {from} WHERE 1 = 1{}", w.sql);
            out.extend(w.bind(sqlx::query_as::<_, (String, String)>(&sql)).fetch_all(&self.read).await?);
        }
        Ok(out)
    }
}
