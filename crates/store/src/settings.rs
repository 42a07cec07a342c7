//! Small key/value settings (the pending bootstrap secret's hash, service switches).

use crate::{Result, Store};

impl Store {
    pub async fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT value FROM settings WHERE key = $1").bind(key).fetch_optional(&self.read).await?)
    }

    /// Sets a setting without an audit event: for values the server manages itself.
    pub async fn put_internal_setting(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Writes a consistent copy of the SQLite database to `path` (`VACUUM INTO`: one read
    /// transaction, so a running server's later commits are not in it). SQLite only.
    pub async fn snapshot_sqlite(&self, path: &str) -> Result<()> {
        sqlx::query("VACUUM INTO $1").bind(path).execute(&self.write).await?;
        Ok(())
    }
}
