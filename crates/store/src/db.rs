use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Executor};

use crate::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// How to open the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// `sqlite://PATH` or `postgres://…`.
    pub url: String,
    /// SQLite `synchronous` mode: `full` (default, every commit reaches the disk) or `normal`.
    pub sqlite_synchronous: String,
    /// Maximum connections (PostgreSQL pool size; SQLite read pool size).
    pub max_connections: u32,
}

/// The store: a read pool and a write pool over one database, plus the audit chain key.
///
/// On SQLite the write pool holds one connection, so writers queue in the pool instead of
/// failing with `SQLITE_BUSY`; on PostgreSQL both pools are the same.
#[derive(Clone)]
pub struct Store {
    pub(crate) read: AnyPool,
    pub(crate) write: AnyPool,
    pub(crate) backend: Backend,
    pub(crate) audit_key: Arc<[u8]>,
    /// PostgreSQL's address, for the connection that listens for other nodes' events.
    pub(crate) url: Option<Arc<str>>,
    /// Group commit of write transactions (SQLite only; see `commit`).
    pub(crate) committer: Option<crate::commit::Committer>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("backend", &self.backend).finish_non_exhaustive()
    }
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Store {
    /// Connects and applies pending migrations.
    pub async fn open(options: &StoreOptions, audit_key: &[u8]) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if options.url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if options.url.starts_with("postgres:") || options.url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(crate::StoreError::Invalid(portcullis_core::ValidationError::new(
                "storage.database_url",
                "must start with sqlite: or postgres:",
            )));
        };
        let connect = AnyConnectOptions::from_str(&options.url)?
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
        let (read, write) = match backend {
            Backend::Sqlite => {
                let synchronous = match options.sqlite_synchronous.as_str() {
                    "normal" => "NORMAL",
                    _ => "FULL",
                };
                let pragmas: Arc<str> = format!(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; \
                     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;"
                )
                .into();
                let write = sqlite_pool(pragmas.clone())
                    .max_connections(1)
                    .acquire_timeout(Duration::from_secs(60))
                    .connect_with(connect.clone())
                    .await?;
                let read =
                    sqlite_pool(pragmas).max_connections(options.max_connections.max(1)).connect_with(connect).await?;
                (read, write)
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(options.max_connections.max(2))
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(connect)
                    .await?;
                (pool.clone(), pool)
            }
        };
        let url = (backend == Backend::Postgres).then(|| Arc::from(options.url.as_str()));
        let mut store = Store { read, write, backend, audit_key: Arc::from(audit_key), url, committer: None };
        store.migrate().await?;
        if backend == Backend::Sqlite {
            store.committer = Some(crate::commit::Committer::start(store.write.clone()));
        }
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.write).await?;
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Checks the database answers (for `/healthz`).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }

    /// Row counts of every table, for tests that assert that bad input changed nothing.
    pub async fn table_counts(&self) -> Result<Vec<(String, i64)>> {
        let mut out = Vec::new();
        for table in [
            "users",
            "user_groups",
            "entitlements",
            "entitlement_members",
            "policies",
            "policy_scope",
            "access_requests",
            "request_approvals",
            "request_history",
            "notification_outbox",
            "delivery_cursors",
            "mail_tokens",
            "password_resets",
            "reason_codes",
            "favorites",
            "secret_versions",
            "user_group_members",
            "login_sessions",
            "api_tokens",
            "assets",
            "accounts",
            "asset_groups",
            "asset_group_members",
            "account_groups",
            "account_group_members",
            "audit_events",
            "settings",
        ] {
            let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(&self.read).await?;
            out.push((table.to_owned(), n));
        }
        Ok(out)
    }
}

/// Pool options that set the connection's pragmas on every new SQLite connection.
fn sqlite_pool(pragmas: Arc<str>) -> AnyPoolOptions {
    AnyPoolOptions::new().after_connect(move |conn, _meta| {
        let pragmas = pragmas.clone();
        Box::pin(async move {
            conn.execute(&*pragmas).await?;
            Ok(())
        })
    })
}
