//! Writing and removing cloud-init snippet files on the nodes (`cloud_init.delivery:
//! snippets`). Proxmox's API cannot write snippets, so they go over SFTP to the directory behind
//! `<storage>:snippets/` on each node that needs them, with the host key checked against a
//! known_hosts file (or, with an explicit opt-out, not at all). The embedded simulator's nodes
//! are directories on this machine, written directly.
//!
//! Files are content-addressed (their names are made in `seed`), so a file with the desired
//! name is the desired file: it is never rewritten. A new one is written under a temporary
//! name, synced and renamed into place, so a node never holds half a snippet under its real
//! name. One SSH connection per node is opened on first use and kept for the run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh_sftp::client::SftpSession;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};
use tokio::io::AsyncWriteExt;

use crate::pve::PveClient;
use crate::secret::Secret;
use crate::spec::SshSettings;

/// Where `local`'s snippets live on every Proxmox VE node.
pub const LOCAL_SNIPPETS_DIR: &str = "/var/lib/vz/snippets";

/// The environment variable that may hold the SSH private key itself (for CI secrets).
pub const KEY_ENV: &str = "PROXFLEET_SSH_KEY";

/// How long connecting to a node (TCP, key exchange, authentication) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a snippet could not be written or removed.
#[derive(Debug, thiserror::Error)]
pub enum SnippetError {
    /// No SSH settings reach the executor (a library caller without a store).
    #[error(
        "cloud-init snippets must be written over SSH, and no SSH access is set up (see `defaults.ssh`)"
    )]
    NoStore,
    /// No private key was found.
    #[error(
        "no SSH key to log in to the nodes: set `defaults.ssh.key_file`, put the key in {KEY_ENV}, or create ~/.ssh/id_ed25519"
    )]
    NoKey,
    /// The private key cannot be used.
    #[error("cannot use the SSH key {source_name}: {message}")]
    Key {
        /// The file, or the environment variable.
        source_name: String,
        /// Why.
        message: String,
    },
    /// The TCP connection or the SSH handshake failed.
    #[error("cannot connect to {host}:{port} over SSH (node {node}): {message}")]
    Connect {
        /// Node.
        node: String,
        /// Address.
        host: String,
        /// Port.
        port: u16,
        /// Why.
        message: String,
    },
    /// The node's host key is not recorded.
    #[error(
        "the SSH host key of {host}:{port} (node {node}, {fingerprint}) is not in {known_hosts}: refusing to connect; after checking the fingerprint on the node (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`), add it with `ssh-keyscan -p {port} {host} >> {known_hosts}`, or set `defaults.ssh.known_hosts`"
    )]
    HostKeyUnknown {
        /// Node.
        node: String,
        /// Address.
        host: String,
        /// Port.
        port: u16,
        /// The presented key's SHA-256 fingerprint.
        fingerprint: String,
        /// The file checked.
        known_hosts: String,
    },
    /// The node's host key differs from the recorded one.
    #[error(
        "the SSH host key of {host}:{port} (node {node}, {fingerprint}) does not match the one recorded in {known_hosts} line {line}: refusing to connect (someone may be intercepting the connection, or the node was reinstalled and its new key must be recorded)"
    )]
    HostKeyChanged {
        /// Node.
        node: String,
        /// Address.
        host: String,
        /// Port.
        port: u16,
        /// The presented key's SHA-256 fingerprint.
        fingerprint: String,
        /// The file checked.
        known_hosts: String,
        /// The line with the recorded key.
        line: usize,
    },
    /// The node presented a host certificate, which proxfleet does not check.
    #[error(
        "{host}:{port} (node {node}) presented an SSH host certificate, which proxfleet cannot check: record its plain host key in known_hosts"
    )]
    HostCertificate {
        /// Node.
        node: String,
        /// Address.
        host: String,
        /// Port.
        port: u16,
    },
    /// The known_hosts file cannot be read.
    #[error("cannot read {known_hosts}: {message}")]
    KnownHosts {
        /// The file.
        known_hosts: String,
        /// Why.
        message: String,
    },
    /// The node refused the key.
    #[error("{user}@{host}:{port} (node {node}) refused the SSH key")]
    Auth {
        /// Node.
        node: String,
        /// User.
        user: String,
        /// Address.
        host: String,
        /// Port.
        port: u16,
    },
    /// An SFTP operation failed.
    #[error("{operation} {path} on node {node}: {message}")]
    Sftp {
        /// Node.
        node: String,
        /// What was done.
        operation: &'static str,
        /// The remote path.
        path: String,
        /// Why.
        message: String,
    },
    /// The snippets directory does not exist on the node.
    #[error(
        "{dir} does not exist on node {node}: is the `snippets` content type enabled on storage {storage}?"
    )]
    NoDirectory {
        /// Node.
        node: String,
        /// Storage.
        storage: String,
        /// The directory.
        dir: String,
    },
    /// The storage's directory cannot be found.
    #[error(
        "cannot tell where storage {storage} keeps its snippets on the nodes ({reason}): set `defaults.ssh.snippets_dir`"
    )]
    UnknownDirectory {
        /// Storage.
        storage: String,
        /// Why.
        reason: String,
    },
    /// A local file operation failed (the embedded simulator).
    #[error("{operation} {}: {source}", path.display())]
    Local {
        /// What was done.
        operation: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// How snippet files reach the nodes.
#[derive(Debug, Clone)]
enum Transport {
    /// SFTP to each node.
    Sftp(SshSettings),
    /// The embedded simulator: each node's `local:snippets/` is a directory here.
    Local(BTreeMap<String, PathBuf>),
}

/// One node's open SFTP session (the SSH connection lives as long as its handle).
struct NodeSession {
    sftp: SftpSession,
    _ssh: client::Handle<HostKeyCheck>,
}

/// Writes and removes snippet files, one connection per node.
pub struct SnippetStore {
    transport: Transport,
    sessions: tokio::sync::Mutex<BTreeMap<String, Arc<NodeSession>>>,
    dirs: Mutex<BTreeMap<String, String>>,
}

impl std::fmt::Debug for SnippetStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnippetStore")
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

impl SnippetStore {
    /// A store that reaches the nodes over SFTP as `settings` say.
    pub fn sftp(settings: SshSettings) -> SnippetStore {
        SnippetStore::new(Transport::Sftp(settings))
    }

    /// A store for the embedded simulator: node → the directory behind its `local:snippets/`.
    pub fn local(dirs: BTreeMap<String, PathBuf>) -> SnippetStore {
        SnippetStore::new(Transport::Local(dirs))
    }

    fn new(transport: Transport) -> SnippetStore {
        SnippetStore {
            transport,
            sessions: tokio::sync::Mutex::default(),
            dirs: Mutex::default(),
        }
    }

    /// Whether `node` can be reached: an SSH session opened (its host key checked) for SFTP, or
    /// the simulator's directory there. The session is kept for the run.
    ///
    /// # Errors
    /// The node cannot be reached, or its host key is not the recorded one.
    pub async fn reach(&self, node: &str) -> Result<(), SnippetError> {
        match &self.transport {
            Transport::Local(dirs) => local_dir(dirs, node, "local").map(|_| ()),
            Transport::Sftp(settings) => self.session(settings, node).await.map(|_| ()),
        }
    }

    /// Write `content` as `<storage>:snippets/<name>` on `node`, unless a file with that name is
    /// there already (names are content-addressed). Returns whether it was written.
    ///
    /// # Errors
    /// The node cannot be reached or refuses the write; the directory is unknown or missing.
    pub async fn put(
        &self,
        client: &PveClient,
        node: &str,
        storage: &str,
        name: &str,
        content: &[u8],
    ) -> Result<bool, SnippetError> {
        match &self.transport {
            Transport::Local(dirs) => {
                let dir = local_dir(dirs, node, storage)?;
                let path = dir.join(name);
                if path.exists() {
                    return Ok(false);
                }
                let tmp = dir.join(temp_name(name));
                let local = |operation| {
                    let path = path.clone();
                    move |source| SnippetError::Local {
                        operation,
                        path,
                        source,
                    }
                };
                std::fs::write(&tmp, content).map_err(local("write"))?;
                std::fs::rename(&tmp, &path).map_err(local("rename to"))?;
                Ok(true)
            }
            Transport::Sftp(settings) => {
                let dir = self.remote_dir(client, settings, storage).await?;
                let session = self.session(settings, node).await?;
                let sftp = &session.sftp;
                let path = format!("{dir}/{name}");
                let fail = |operation: &'static str, path: &str| {
                    let (node, path) = (node.to_string(), path.to_string());
                    move |err: russh_sftp::client::error::Error| SnippetError::Sftp {
                        node,
                        operation,
                        path,
                        message: err.to_string(),
                    }
                };
                match sftp.metadata(dir.as_str()).await {
                    Ok(_) => {}
                    Err(err) if is_no_such_file(&err) => {
                        return Err(SnippetError::NoDirectory {
                            node: node.to_string(),
                            storage: storage.to_string(),
                            dir,
                        });
                    }
                    Err(err) => return Err(fail("read", &dir)(err)),
                }
                if sftp
                    .try_exists(path.as_str())
                    .await
                    .map_err(fail("read", &path))?
                {
                    return Ok(false);
                }
                let tmp = format!("{dir}/{}", temp_name(name));
                let mut attributes = FileAttributes::empty();
                attributes.permissions = Some(0o644);
                let mut file = sftp
                    .open_with_flags_and_attributes(
                        tmp.as_str(),
                        OpenFlags::CREATE | OpenFlags::EXCLUDE | OpenFlags::WRITE,
                        attributes,
                    )
                    .await
                    .map_err(fail("create", &tmp))?;
                let written = async {
                    file.write_all(content).await?;
                    file.flush().await?;
                    file.sync_all().await.map_err(std::io::Error::other)?;
                    file.shutdown().await
                }
                .await;
                if let Err(err) = written {
                    let _ = sftp.remove_file(tmp.as_str()).await;
                    return Err(SnippetError::Sftp {
                        node: node.to_string(),
                        operation: "write",
                        path: tmp,
                        message: err.to_string(),
                    });
                }
                if let Err(err) = sftp.rename(tmp.as_str(), path.as_str()).await {
                    let _ = sftp.remove_file(tmp.as_str()).await;
                    // Another run may have put the same file (the same content) in place.
                    if sftp.try_exists(path.as_str()).await.unwrap_or(false) {
                        return Ok(false);
                    }
                    return Err(fail("rename to", &path)(err));
                }
                Ok(true)
            }
        }
    }

    /// Remove `<storage>:snippets/<name>` from `node`. Returns whether it was there.
    ///
    /// # Errors
    /// The node cannot be reached or refuses the removal.
    pub async fn remove(
        &self,
        client: &PveClient,
        node: &str,
        storage: &str,
        name: &str,
    ) -> Result<bool, SnippetError> {
        match &self.transport {
            Transport::Local(dirs) => {
                let path = local_dir(dirs, node, storage)?.join(name);
                match std::fs::remove_file(&path) {
                    Ok(()) => Ok(true),
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
                    Err(source) => Err(SnippetError::Local {
                        operation: "remove",
                        path,
                        source,
                    }),
                }
            }
            Transport::Sftp(settings) => {
                let dir = self.remote_dir(client, settings, storage).await?;
                let session = self.session(settings, node).await?;
                let path = format!("{dir}/{name}");
                match session.sftp.remove_file(path.as_str()).await {
                    Ok(()) => Ok(true),
                    Err(err) if is_no_such_file(&err) => Ok(false),
                    Err(err) => Err(SnippetError::Sftp {
                        node: node.to_string(),
                        operation: "remove",
                        path,
                        message: err.to_string(),
                    }),
                }
            }
        }
    }

    /// The directory on the nodes behind `<storage>:snippets/`: the spec's, `local`'s
    /// well-known one, or the storage's `path` from its configuration.
    async fn remote_dir(
        &self,
        client: &PveClient,
        settings: &SshSettings,
        storage: &str,
    ) -> Result<String, SnippetError> {
        if let Some(dir) = &settings.snippets_dir {
            return Ok(dir.clone());
        }
        if storage == "local" {
            return Ok(LOCAL_SNIPPETS_DIR.to_string());
        }
        if let Some(dir) = self.dirs.lock().ok().and_then(|d| d.get(storage).cloned()) {
            return Ok(dir);
        }
        let unknown = |reason: String| SnippetError::UnknownDirectory {
            storage: storage.to_string(),
            reason,
        };
        let path = client
            .storage_path(storage)
            .await
            .map_err(|err| unknown(format!("GET /storage/{storage}: {err}")))?
            .ok_or_else(|| unknown("its configuration has no `path`".to_string()))?;
        let dir = format!("{}/snippets", path.trim_end_matches('/'));
        if let Ok(mut dirs) = self.dirs.lock() {
            dirs.insert(storage.to_string(), dir.clone());
        }
        Ok(dir)
    }

    /// The node's SFTP session, connecting on first use.
    async fn session(
        &self,
        settings: &SshSettings,
        node: &str,
    ) -> Result<Arc<NodeSession>, SnippetError> {
        let mut sessions = self.sessions.lock().await;
        if let Some(session) = sessions.get(node) {
            return Ok(Arc::clone(session));
        }
        let session = Arc::new(connect(settings, node).await?);
        sessions.insert(node.to_string(), Arc::clone(&session));
        Ok(session)
    }
}

/// `local`'s snippets directory of a simulated node.
fn local_dir<'a>(
    dirs: &'a BTreeMap<String, PathBuf>,
    node: &str,
    storage: &str,
) -> Result<&'a Path, SnippetError> {
    if storage != "local" {
        return Err(SnippetError::UnknownDirectory {
            storage: storage.to_string(),
            reason: "the embedded simulator keeps snippets only on `local`".to_string(),
        });
    }
    dirs.get(node)
        .map(PathBuf::as_path)
        .ok_or_else(|| SnippetError::UnknownDirectory {
            storage: storage.to_string(),
            reason: format!("the embedded simulator has no node {node}"),
        })
}

/// A name no other writer uses, hidden (Proxmox lists dot files as snippets too, but the
/// rename follows at once).
fn temp_name(name: &str) -> String {
    format!(".{name}.tmp-{}", hex::encode(rand::random::<[u8; 6]>()))
}

fn is_no_such_file(err: &russh_sftp::client::error::Error) -> bool {
    matches!(err, russh_sftp::client::error::Error::Status(status) if status.status_code == StatusCode::NoSuchFile)
}

/// The key to log in with: the spec's file, the key in `PROXFLEET_SSH_KEY`, or the user's
/// default key.
fn private_key(settings: &SshSettings) -> Result<PrivateKey, SnippetError> {
    let from_file = |path: &Path| {
        russh::keys::load_secret_key(path, None).map_err(|err| SnippetError::Key {
            source_name: path.display().to_string(),
            message: key_message(&err),
        })
    };
    if let Some(path) = &settings.key_file {
        return from_file(path);
    }
    if let Ok(text) = std::env::var(KEY_ENV) {
        let text = Secret::new(text);
        if !text.expose().trim().is_empty() {
            return russh::keys::decode_secret_key(text.expose(), None).map_err(|err| {
                SnippetError::Key {
                    source_name: KEY_ENV.to_string(),
                    message: key_message(&err),
                }
            });
        }
    }
    let ssh_dir = std::env::home_dir().unwrap_or_default().join(".ssh");
    ["id_ed25519", "id_ecdsa", "id_rsa"]
        .iter()
        .map(|name| ssh_dir.join(name))
        .find(|path| path.is_file())
        .map_or(Err(SnippetError::NoKey), |path| from_file(&path))
}

fn key_message(err: &russh::keys::Error) -> String {
    match err {
        russh::keys::Error::KeyIsEncrypted => {
            "it is encrypted; proxfleet takes only keys without a passphrase (make one for it with `ssh-keygen -t ed25519 -N ''`)".to_string()
        }
        other => other.to_string(),
    }
}

/// What the host key check decided, for the error message.
#[derive(Default)]
struct Verdict(Mutex<Option<SnippetError>>);

/// The client handler: checks the host key against known_hosts unless told not to.
struct HostKeyCheck {
    node: String,
    host: String,
    port: u16,
    known_hosts: Option<PathBuf>,
    verdict: Arc<Verdict>,
}

impl HostKeyCheck {
    fn refuse(&self, err: SnippetError) -> bool {
        if let Ok(mut verdict) = self.verdict.0.lock() {
            *verdict = Some(err);
        }
        false
    }
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let Some(known_hosts) = self.known_hosts.clone() else {
            return Ok(true); // insecure_ignore_host_key
        };
        let PublicKeyOrCertificate::PublicKey { key, .. } = server_public_key else {
            return Ok(self.refuse(SnippetError::HostCertificate {
                node: self.node.clone(),
                host: self.host.clone(),
                port: self.port,
            }));
        };
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        let shown = known_hosts.display().to_string();
        let accepted =
            match russh::keys::check_known_hosts_path(&self.host, self.port, key, &known_hosts) {
                Ok(true) => true,
                Ok(false) => self.refuse(SnippetError::HostKeyUnknown {
                    node: self.node.clone(),
                    host: self.host.clone(),
                    port: self.port,
                    fingerprint,
                    known_hosts: shown,
                }),
                Err(russh::keys::Error::KeyChanged { line }) => {
                    self.refuse(SnippetError::HostKeyChanged {
                        node: self.node.clone(),
                        host: self.host.clone(),
                        port: self.port,
                        fingerprint,
                        known_hosts: shown,
                        line,
                    })
                }
                Err(err) => self.refuse(SnippetError::KnownHosts {
                    known_hosts: shown,
                    message: err.to_string(),
                }),
            };
        Ok(accepted)
    }
}

/// Log in to a node and open its SFTP subsystem.
async fn connect(settings: &SshSettings, node: &str) -> Result<NodeSession, SnippetError> {
    let key = private_key(settings)?;
    let host = settings.host_of(node).to_string();
    let port = settings.port;
    let known_hosts = if settings.insecure_ignore_host_key {
        None
    } else {
        Some(match &settings.known_hosts {
            Some(path) => path.clone(),
            None => std::env::home_dir()
                .unwrap_or_default()
                .join(".ssh")
                .join("known_hosts"),
        })
    };
    let verdict = Arc::new(Verdict::default());
    let handler = HostKeyCheck {
        node: node.to_string(),
        host: host.clone(),
        port,
        known_hosts,
        verdict: Arc::clone(&verdict),
    };
    let failed = |message: String| SnippetError::Connect {
        node: node.to_string(),
        host: host.clone(),
        port,
        message,
    };
    let config = Arc::new(client::Config {
        inactivity_timeout: Some(Duration::from_secs(120)),
        ..client::Config::default()
    });
    let login = async {
        let mut ssh = match client::connect(config, (host.as_str(), port), handler).await {
            Ok(ssh) => ssh,
            Err(err) => {
                let refused = verdict.0.lock().ok().and_then(|mut v| v.take());
                return Err(refused.unwrap_or_else(|| failed(err.to_string())));
            }
        };
        let hash = ssh
            .best_supported_rsa_hash()
            .await
            .map_err(|err| failed(err.to_string()))?
            .flatten();
        let auth = ssh
            .authenticate_publickey(
                settings.user.as_str(),
                PrivateKeyWithHashAlg::new(Arc::new(key), hash),
            )
            .await
            .map_err(|err| failed(err.to_string()))?;
        if !auth.success() {
            return Err(SnippetError::Auth {
                node: node.to_string(),
                user: settings.user.clone(),
                host: host.clone(),
                port,
            });
        }
        let channel = ssh
            .channel_open_session()
            .await
            .map_err(|err| failed(format!("cannot open a session: {err}")))?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(|err| failed(format!("no SFTP subsystem: {err}")))?;
        let sftp = SftpSession::new(channel.into_stream())
            .await
            .map_err(|err| failed(format!("SFTP: {err}")))?;
        Ok(NodeSession { sftp, _ssh: ssh })
    };
    tokio::time::timeout(CONNECT_TIMEOUT, login)
        .await
        .map_err(|_| failed(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())))?
}
