//! Resource pools: making sure one exists, putting a VM into one, and the pool calls of the
//! run's lease (`lease`): create exactly once, read, rewrite and delete a pool's comment. Only a
//! pool's comment is read, so the one wire struct is `PoolEntry`.

use reqwest::Method;
use serde::Deserialize;

use super::{PveClient, flag};
use crate::pve::PveError;

/// One entry of `GET /pools?poolid=`; members are not read.
#[derive(Debug, Deserialize)]
struct PoolEntry {
    #[serde(default)]
    comment: Option<String>,
}

/// Whether an error says that a pool is absent (`pool '…' does not exist`, from `GET`, `PUT`
/// and `DELETE` alike in pve-manager's `API2/Pool.pm`).
fn is_absent_pool(err: &PveError) -> bool {
    matches!(err, PveError::Http { message, .. } if message.contains("does not exist"))
}

impl PveClient {
    /// Make sure a resource pool exists: `GET /pools?poolid=`, then `POST /pools` if it does
    /// not. Returns whether it was created.
    ///
    /// # Errors
    /// HTTP and permission errors other than the pool's absence.
    pub async fn ensure_pool(&self, poolid: &str) -> Result<bool, PveError> {
        let query = [("poolid".to_string(), poolid.to_string())];
        match self.get("/pools", "/pools", &query).await {
            Ok(_) => Ok(false),
            Err(PveError::Http { message, .. }) if message.contains("does not exist") => {
                match self.call(Method::POST, "/pools", "/pools", &query).await {
                    Ok(_) => Ok(true),
                    // Made by a concurrent step in the meantime.
                    Err(PveError::Http { message, .. }) if message.contains("already exists") => {
                        Ok(false)
                    }
                    Err(err) => Err(err),
                }
            }
            Err(err) => Err(err),
        }
    }

    /// `PUT /pools`: put a VM into a pool, moving it from another one.
    ///
    /// # Errors
    /// HTTP and permission errors.
    pub async fn set_pool(&self, poolid: &str, vmid: u32) -> Result<(), PveError> {
        let params = [
            ("poolid".to_string(), poolid.to_string()),
            ("vms".to_string(), vmid.to_string()),
            ("allow-move".to_string(), flag(true)),
        ];
        self.call(Method::PUT, "/pools", "/pools", &params).await?;
        Ok(())
    }

    /// `POST /pools` with a comment, sent once: true when this request made the pool, false
    /// when it was there already. Proxmox creates a pool under `lock_user_config` and refuses
    /// an id that exists (`create pool failed: pool '…' already exists`), so of concurrent
    /// creators exactly one gets true.
    ///
    /// # Errors
    /// HTTP and permission errors other than the pool's existence.
    pub async fn create_pool(&self, poolid: &str, comment: &str) -> Result<bool, PveError> {
        let params = [
            ("poolid".to_string(), poolid.to_string()),
            ("comment".to_string(), comment.to_string()),
        ];
        match self.call(Method::POST, "/pools", "/pools", &params).await {
            Ok(_) => Ok(true),
            Err(err) if err.is_already_exists() => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// A pool's comment: `None` when the pool does not exist, `Some("")` when it has none.
    /// `GET /pools?poolid=` needs no privilege on the pool (`Pool.pm` checks `Pool.Audit`
    /// there without failing).
    ///
    /// # Errors
    /// HTTP errors other than the pool's absence; an answer that is not a pool list.
    pub async fn pool_comment(&self, poolid: &str) -> Result<Option<String>, PveError> {
        let query = [("poolid".to_string(), poolid.to_string())];
        let data = match self.get("/pools", "/pools", &query).await {
            Ok(data) => data,
            Err(err) if is_absent_pool(&err) => return Ok(None),
            Err(err) => return Err(err),
        };
        let entries: Vec<PoolEntry> = super::de::decode(&data, "GET /pools")?;
        Ok(entries
            .into_iter()
            .next()
            .map(|entry| entry.comment.unwrap_or_default()))
    }

    /// `PUT /pools` with only a comment: rewrite a pool's comment. Returns false when the
    /// pool does not exist (any more).
    ///
    /// # Errors
    /// HTTP and permission errors other than the pool's absence.
    pub async fn set_pool_comment(&self, poolid: &str, comment: &str) -> Result<bool, PveError> {
        let params = [
            ("poolid".to_string(), poolid.to_string()),
            ("comment".to_string(), comment.to_string()),
        ];
        match self.call(Method::PUT, "/pools", "/pools", &params).await {
            Ok(_) => Ok(true),
            Err(err) if is_absent_pool(&err) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// `DELETE /pools?poolid=`: remove an empty pool. Returns false when it did not exist.
    ///
    /// # Errors
    /// HTTP and permission errors other than the pool's absence (a pool with members is
    /// refused: `pool '…' is not empty (contains VM 100)`).
    pub async fn delete_pool(&self, poolid: &str) -> Result<bool, PveError> {
        let query = [("poolid".to_string(), poolid.to_string())];
        match self.call(Method::DELETE, "/pools", "/pools", &query).await {
            Ok(_) => Ok(true),
            Err(err) if is_absent_pool(&err) => Ok(false),
            Err(err) => Err(err),
        }
    }
}
