//! Resource pools: making sure one exists, and putting a VM into one. Neither answer carries
//! anything proxfleet reads, so there are no wire structs here.

use reqwest::Method;

use super::{PveClient, flag};
use crate::pve::PveError;

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
}
