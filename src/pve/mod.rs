//! The Proxmox VE HTTP client (placeholder, filled in by the client work).
