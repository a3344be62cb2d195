//! proxfleet: a declarative, desired-state reconciler for Proxmox VE virtual machines.
//!
//! Data flows one way: `spec` (YAML) → `graph` (desired state) → `observe` (actual state) →
//! `diff` (pure) → `plan` (ordered steps) → `render` or `apply`. `pve` is the only module that
//! speaks HTTP to Proxmox; `sim` is a simulated Proxmox VE cluster that knows nothing of the rest.

pub mod address;
pub mod apply;
pub mod cli;
pub mod commands;
pub mod diff;
pub mod fetch;
pub mod graph;
pub mod inventory;
pub mod lease;
pub mod nocloud;
pub mod observe;
pub mod ownership;
pub mod plan;
pub mod preflight;
pub mod pve;
pub mod qemu_config;
pub mod render;
pub mod report;
pub mod saved;
pub mod secret;
pub mod seed;
pub mod sim;
pub mod snippets;
pub mod spec;
pub mod state;
pub mod target;
