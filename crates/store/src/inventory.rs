//! Assets (managed systems) and the accounts on them (R-VAULT-1). Secrets are not here: the
//! vault keeps them, keyed by account id.

use portcullis_core::inventory::{AccountKind, Platform, Protocol};
use portcullis_core::{validate, ValidationError};

use crate::audit::{append, Deletion, NewEvent};
use crate::{new_id, Actor, Page, Result, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolPort {
    pub protocol: Protocol,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asset {
    pub id: String,
    pub name: String,
    pub address: String,
    pub platform: Platform,
    pub description: String,
    pub protocols: Vec<ProtocolPort>,
    pub host_key: Option<String>,
    /// The RDP service's pinned TLS certificate (`sha256:HEX`), pinned on first use.
    pub tls_fingerprint: Option<String>,
    /// An account of this asset that may change other accounts' credentials (root or sudo).
    pub service_account_id: Option<String>,
    /// Who changed the asset's identity (address, ports, host key) since another administrator
    /// last confirmed it (user ids); empty: confirmed. While not empty, no vaulted credential
    /// of the asset is sent to it.
    pub identity_changed_by: Vec<String>,
    /// When the identity was last changed (only while unconfirmed).
    pub identity_changed_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Asset {
    /// Its identity was changed and not yet confirmed by another administrator.
    pub fn identity_unconfirmed(&self) -> bool {
        !self.identity_changed_by.is_empty()
    }

    /// What makes up its identity: where credentials are sent, and the key that proves it.
    fn identity(&self) -> (&str, String, Option<&str>, Option<&str>) {
        (&self.address, encode_protocols(&self.protocols), self.host_key.as_deref(), self.tls_fingerprint.as_deref())
    }
}

#[derive(Debug, Clone)]
pub struct NewAsset {
    pub name: String,
    pub address: String,
    pub platform: Platform,
    pub description: String,
    pub protocols: Vec<ProtocolPort>,
    pub host_key: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct AssetPatch {
    pub name: Option<String>,
    pub address: Option<String>,
    pub platform: Option<Platform>,
    pub description: Option<String>,
    pub protocols: Option<Vec<ProtocolPort>>,
    pub host_key: Option<Option<String>>,
    pub tls_fingerprint: Option<Option<String>>,
    pub service_account_id: Option<Option<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub asset_id: String,
    pub name: String,
    pub kind: AccountKind,
    pub description: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub struct NewAccount {
    pub asset_id: String,
    pub name: String,
    pub kind: AccountKind,
    pub description: String,
}

#[derive(Debug, Clone, Default)]
pub struct AccountPatch {
    pub name: Option<String>,
    pub kind: Option<AccountKind>,
    pub description: Option<String>,
}

fn encode_protocols(p: &[ProtocolPort]) -> String {
    p.iter().map(|p| format!("{}:{}", p.protocol, p.port)).collect::<Vec<_>>().join(",")
}

fn decode_protocols(text: &str) -> Result<Vec<ProtocolPort>> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|item| {
            let (proto, port) =
                item.split_once(':').ok_or_else(|| StoreError::Corrupt(format!("protocol entry '{item}'")))?;
            Ok(ProtocolPort {
                protocol: Protocol::parse(proto).ok_or_else(|| StoreError::Corrupt(format!("protocol '{proto}'")))?,
                port: port.parse().map_err(|_| StoreError::Corrupt(format!("port '{port}'")))?,
            })
        })
        .collect()
}

fn validate_protocols(p: &[ProtocolPort]) -> Result<(), ValidationError> {
    for (i, a) in p.iter().enumerate() {
        if a.port == 0 {
            return Err(ValidationError::new(format!("protocols[{i}].port"), "must be 1 to 65535"));
        }
        if p[..i].iter().any(|b| b.protocol == a.protocol) {
            return Err(ValidationError::new(
                format!("protocols[{i}].protocol"),
                format!("{} is listed twice", a.protocol),
            ));
        }
    }
    Ok(())
}

const ASSET_COLUMNS: &str = "id, name, address, platform, description, protocols, host_key, created_at, updated_at, \
     service_account_id, identity_changed_by, identity_changed_at, tls_fingerprint";
type AssetRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    i64,
    i64,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
);

/// A pinned certificate: `sha256:` and 64 hex digits (lower case kept).
fn validate_fingerprint(field: &str, f: &str) -> std::result::Result<String, ValidationError> {
    let hex = f.strip_prefix("sha256:").unwrap_or(f);
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ValidationError::new(field, "must be sha256: and the 64 hex digits of the certificate's SHA-256"));
    }
    Ok(format!("sha256:{}", hex.to_ascii_lowercase()))
}

fn asset_from_row(r: AssetRow) -> Result<Asset> {
    let (
        id,
        name,
        address,
        platform,
        description,
        protocols,
        host_key,
        created_at,
        updated_at,
        service_account_id,
        changed_by,
        identity_changed_at,
        tls_fingerprint,
    ) = r;
    Ok(Asset {
        identity_changed_by: changed_by.unwrap_or_default().split_whitespace().map(str::to_owned).collect(),
        identity_changed_at,
        platform: Platform::parse(&platform).ok_or_else(|| StoreError::Corrupt(format!("platform '{platform}'")))?,
        protocols: decode_protocols(&protocols)?,
        id,
        name,
        address,
        description,
        host_key,
        tls_fingerprint,
        service_account_id,
        created_at,
        updated_at,
    })
}

const ACCOUNT_COLUMNS: &str = "id, asset_id, name, kind, description, created_at, updated_at";
type AccountRow = (String, String, String, String, String, i64, i64);

fn account_from_row(r: AccountRow) -> Result<Account> {
    let (id, asset_id, name, kind, description, created_at, updated_at) = r;
    Ok(Account {
        kind: AccountKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("account kind '{kind}'")))?,
        id,
        asset_id,
        name,
        description,
        created_at,
        updated_at,
    })
}

fn validate_asset(a: &Asset) -> Result<(), ValidationError> {
    validate::name("name", &a.name)?;
    validate::address("address", &a.address)?;
    validate::description("description", &a.description)?;
    validate_protocols(&a.protocols)?;
    Ok(())
}

impl Store {
    pub async fn create_asset(&self, actor: &Actor, now: i64, new: NewAsset) -> Result<Asset> {
        let host_key = new.host_key.as_deref().map(|k| validate::ssh_public_key("host_key", k)).transpose()?;
        let asset = Asset {
            id: new_id(),
            name: new.name,
            address: new.address,
            platform: new.platform,
            description: new.description,
            protocols: new.protocols,
            host_key,
            tls_fingerprint: None,
            service_account_id: None,
            identity_changed_by: Vec::new(),
            identity_changed_at: None,
            created_at: now,
            updated_at: now,
        };
        validate_asset(&asset)?;
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "INSERT INTO assets (id, name, address, platform, description, protocols, host_key, created_at, updated_at) \
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$8)",
        )
            .bind(&asset.id)
            .bind(&asset.name)
            .bind(&asset.address)
            .bind(asset.platform.as_str())
            .bind(&asset.description)
            .bind(encode_protocols(&asset.protocols))
            .bind(&asset.host_key)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::unique(e, || format!("an asset named '{}' already exists", asset.name)))?;
        append(
            &mut tx,
            &self.audit_key,
            actor,
            now,
            &NewEvent::success("asset.create", "asset", &asset.id)
                .with_details(serde_json::json!({ "name": asset.name, "address": asset.address })),
        )
        .await?;
        tx.commit().await?;
        Ok(asset)
    }

    pub async fn asset(&self, id: &str) -> Result<Asset> {
        let row: Option<AssetRow> = sqlx::query_as(&format!("SELECT {ASSET_COLUMNS} FROM assets WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        asset_from_row(row.ok_or(StoreError::NotFound("asset"))?)
    }

    pub async fn asset_by_name(&self, name: &str) -> Result<Option<Asset>> {
        let row: Option<AssetRow> = sqlx::query_as(&format!("SELECT {ASSET_COLUMNS} FROM assets WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.read)
            .await?;
        row.map(asset_from_row).transpose()
    }

    pub async fn assets(&self, page: Page) -> Result<Vec<Asset>> {
        let rows: Vec<AssetRow> =
            sqlx::query_as(&format!("SELECT {ASSET_COLUMNS} FROM assets ORDER BY name LIMIT $1 OFFSET $2"))
                .bind(page.limit)
                .bind(page.offset)
                .fetch_all(&self.read)
                .await?;
        rows.into_iter().map(asset_from_row).collect()
    }

    /// Updates an asset. A change of its identity (address, ports or host key) leaves it
    /// unconfirmed until another administrator confirms it ([`Store::confirm_asset_identity`]),
    /// and is audited as an alert.
    pub async fn update_asset(&self, actor: &Actor, now: i64, id: &str, patch: AssetPatch) -> Result<Asset> {
        let mut asset = self.asset(id).await?;
        let before = asset.clone();
        if let Some(v) = patch.name {
            asset.name = v;
        }
        if let Some(v) = patch.address {
            asset.address = v;
        }
        if let Some(v) = patch.platform {
            asset.platform = v;
        }
        if let Some(v) = patch.description {
            asset.description = v;
        }
        if let Some(v) = patch.protocols {
            asset.protocols = v;
        }
        if let Some(v) = patch.host_key {
            asset.host_key = v.as_deref().map(|k| validate::ssh_public_key("host_key", k)).transpose()?;
        }
        if let Some(v) = patch.tls_fingerprint {
            asset.tls_fingerprint = v.as_deref().map(|f| validate_fingerprint("tls_fingerprint", f)).transpose()?;
        }
        if let Some(v) = patch.service_account_id {
            asset.service_account_id = v;
        }
        validate_asset(&asset)?;
        asset.updated_at = now;
        let identity_changed = asset.identity() != before.identity();
        if identity_changed {
            if !asset.identity_changed_by.contains(&actor.id) {
                asset.identity_changed_by.push(actor.id.clone());
            }
            asset.identity_changed_at = Some(now);
        }
        let mut tx = self.write.begin().await?;
        if let Some(svc) = &asset.service_account_id {
            let owner: Option<String> = sqlx::query_scalar("SELECT asset_id FROM accounts WHERE id = $1")
                .bind(svc)
                .fetch_optional(&mut *tx)
                .await?;
            if owner.as_deref() != Some(id) {
                return Err(StoreError::Invalid(ValidationError::new(
                    "service_account_id",
                    "must be an account of this asset",
                )));
            }
        }
        let n = sqlx::query(
            "UPDATE assets SET name = $1, address = $2, platform = $3, description = $4, protocols = $5, \
             host_key = $6, updated_at = $7, service_account_id = $9, identity_changed_by = $10, \
             identity_changed_at = $11, tls_fingerprint = $12 WHERE id = $8",
        )
        .bind(&asset.name)
        .bind(&asset.address)
        .bind(asset.platform.as_str())
        .bind(&asset.description)
        .bind(encode_protocols(&asset.protocols))
        .bind(&asset.host_key)
        .bind(now)
        .bind(id)
        .bind(&asset.service_account_id)
        .bind((!asset.identity_changed_by.is_empty()).then(|| asset.identity_changed_by.join(" ")))
        .bind(asset.identity_changed_at)
        .bind(&asset.tls_fingerprint)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::unique(e, || format!("an asset named '{}' already exists", asset.name)))?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound("asset"));
        }
        let mut details = serde_json::json!({ "name": asset.name, "address": asset.address });
        if identity_changed {
            details["identity_changed"] = serde_json::json!({
                "address": [before.address, asset.address],
                "protocols": [encode_protocols(&before.protocols), encode_protocols(&asset.protocols)],
                "host_key": [before.host_key, asset.host_key],
                "tls_fingerprint": [before.tls_fingerprint, asset.tls_fingerprint],
            });
            details["alert"] = serde_json::json!(true);
        }
        append(
            &mut tx,
            &self.audit_key,
            actor,
            now,
            &NewEvent::success("asset.update", "asset", id).with_details(details),
        )
        .await?;
        tx.commit().await?;
        Ok(asset)
    }

    /// Confirms an asset's changed identity (address, ports, host key): by an administrator
    /// who did not change it since the last confirmation. Audited.
    pub async fn confirm_asset_identity(&self, actor: &Actor, now: i64, id: &str) -> Result<Asset> {
        let mut asset = self.asset(id).await?;
        if !asset.identity_unconfirmed() {
            return Err(StoreError::WrongState {
                code: "identity_confirmed",
                message: format!("the identity of {} has no unconfirmed change", asset.name),
            });
        }
        if asset.identity_changed_by.contains(&actor.id) {
            return Err(StoreError::Refused {
                code: "own_change",
                message: format!(
                    "you changed the address, ports or host key of {}; another administrator must confirm it",
                    asset.name
                ),
            });
        }
        let mut tx = self.write.begin().await?;
        // Only the change that was looked at: a change made meanwhile stays unconfirmed.
        let n = sqlx::query(
            "UPDATE assets SET identity_changed_by = NULL, identity_changed_at = NULL \
             WHERE id = $1 AND identity_changed_by = $2 AND identity_changed_at = $3",
        )
        .bind(id)
        .bind(asset.identity_changed_by.join(" "))
        .bind(asset.identity_changed_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::Conflict(format!(
                "the identity of {} changed again meanwhile; look at it again before confirming",
                asset.name
            )));
        }
        append(
            &mut tx,
            &self.audit_key,
            actor,
            now,
            &NewEvent::success("asset.identity_confirm", "asset", id).with_details(serde_json::json!({
                "name": asset.name,
                "address": asset.address,
                "protocols": encode_protocols(&asset.protocols),
                "host_key": asset.host_key,
                "changed_by": asset.identity_changed_by,
            })),
        )
        .await?;
        tx.commit().await?;
        asset.identity_changed_by.clear();
        asset.identity_changed_at = None;
        Ok(asset)
    }

    /// Deletes an asset and, with it, its accounts and group memberships.
    pub async fn delete_asset(&self, actor: &Actor, now: i64, id: &str) -> Result<()> {
        self.delete_named(
            actor,
            now,
            Deletion { table: "assets", noun: "asset", action: "asset.delete", object_type: "asset" },
            id,
        )
        .await
    }

    pub async fn create_account(&self, actor: &Actor, now: i64, new: NewAccount) -> Result<Account> {
        validate::account_name("name", &new.name)?;
        validate::description("description", &new.description)?;
        let mut tx = self.write.begin().await?;
        let asset: Option<String> = sqlx::query_scalar("SELECT id FROM assets WHERE id = $1")
            .bind(&new.asset_id)
            .fetch_optional(&mut *tx)
            .await?;
        if asset.is_none() {
            return Err(StoreError::NotFound("asset"));
        }
        let account = Account {
            id: new_id(),
            asset_id: new.asset_id,
            name: new.name,
            kind: new.kind,
            description: new.description,
            created_at: now,
            updated_at: now,
        };
        sqlx::query(&format!("INSERT INTO accounts ({ACCOUNT_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$6)"))
            .bind(&account.id)
            .bind(&account.asset_id)
            .bind(&account.name)
            .bind(account.kind.as_str())
            .bind(&account.description)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                StoreError::unique(e, || format!("this asset already has an account named '{}'", account.name))
            })?;
        append(
            &mut tx,
            &self.audit_key,
            actor,
            now,
            &NewEvent::success("account.create", "account", &account.id)
                .with_details(serde_json::json!({ "name": account.name, "asset_id": account.asset_id })),
        )
        .await?;
        tx.commit().await?;
        Ok(account)
    }

    pub async fn account(&self, id: &str) -> Result<Account> {
        let row: Option<AccountRow> = sqlx::query_as(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        account_from_row(row.ok_or(StoreError::NotFound("account"))?)
    }

    /// The account named `account` on the asset named `asset` (the proxy's connection string).
    pub async fn account_by_names(&self, asset: &str, account: &str) -> Result<Option<(Asset, Account)>> {
        let id: Option<String> = sqlx::query_scalar(
            "SELECT accounts.id FROM accounts JOIN assets ON assets.id = accounts.asset_id WHERE assets.name = $1 AND accounts.name = $2",
        )
        .bind(asset)
        .bind(account)
        .fetch_optional(&self.read)
        .await?;
        let Some(id) = id else { return Ok(None) };
        let account = self.account(&id).await?;
        let asset = self.asset(&account.asset_id).await?;
        Ok(Some((asset, account)))
    }

    /// Accounts, optionally only those of one asset.
    pub async fn accounts(&self, asset_id: Option<&str>, page: Page) -> Result<Vec<Account>> {
        let rows: Vec<AccountRow> = sqlx::query_as(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE ($1 IS NULL OR asset_id = $1) \
             ORDER BY asset_id, name LIMIT $2 OFFSET $3"
        ))
        .bind(asset_id)
        .bind(page.limit)
        .bind(page.offset)
        .fetch_all(&self.read)
        .await?;
        rows.into_iter().map(account_from_row).collect()
    }

    pub async fn update_account(&self, actor: &Actor, now: i64, id: &str, patch: AccountPatch) -> Result<Account> {
        let mut account = self.account(id).await?;
        if let Some(v) = patch.name {
            validate::account_name("name", &v)?;
            account.name = v;
        }
        if let Some(v) = patch.kind {
            account.kind = v;
        }
        if let Some(v) = patch.description {
            validate::description("description", &v)?;
            account.description = v;
        }
        account.updated_at = now;
        let mut tx = self.write.begin().await?;
        let n =
            sqlx::query("UPDATE accounts SET name = $1, kind = $2, description = $3, updated_at = $4 WHERE id = $5")
                .bind(&account.name)
                .bind(account.kind.as_str())
                .bind(&account.description)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    StoreError::unique(e, || format!("this asset already has an account named '{}'", account.name))
                })?
                .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound("account"));
        }
        append(
            &mut tx,
            &self.audit_key,
            actor,
            now,
            &NewEvent::success("account.update", "account", id)
                .with_details(serde_json::json!({ "name": account.name })),
        )
        .await?;
        tx.commit().await?;
        Ok(account)
    }

    pub async fn delete_account(&self, actor: &Actor, now: i64, id: &str) -> Result<()> {
        self.delete_named(
            actor,
            now,
            Deletion { table: "accounts", noun: "account", action: "account.delete", object_type: "account" },
            id,
        )
        .await
    }
}
