//! A simulated Proxmox VE cluster (placeholder, filled in by the simulator work).
