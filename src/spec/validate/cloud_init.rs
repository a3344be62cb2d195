//! Cloud-init blocks: user, SSH keys, password, addresses of every interface, DNS, custom data
//! and how it is delivered, checked together where they depend on each other.

use serde_saphyr::Spanned;

use super::super::Warning;
use super::super::error::Diagnostic;
use super::super::model::*;
use super::super::raw::*;
use super::Validator;
use super::addresses::{check_dns, check_extra_interfaces, parse_ipv4, parse_ipv6};
use super::files::{CustomKind, read_custom_data, read_ssh_key_files, resolve_secret};
use super::scalars::{STORAGE_ID_ALLOWED, is_storage_id};

pub(super) fn check_ssh_key(ctx: &mut Validator, key: &Spanned<String>, path: &str) {
    const TYPES: [&str; 8] = [
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
        "ssh-dss",
    ];
    let mut parts = key.value.split_whitespace();
    let kind = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let body_ok = body.len() >= 16
        && body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c))
        && body.starts_with("AAAA");
    if !TYPES.contains(&kind) || !body_ok || key.value.contains('\n') {
        ctx.error_at(
            key,
            path,
            "not an OpenSSH public key".to_string(),
            Some("one line `<type> <base64> [comment]`, type one of ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256/384/521, sk-ssh-ed25519@openssh.com"),
        );
    }
}

pub(super) fn check_cloud_init(
    ctx: &mut Validator,
    ci: &RawCloudInit,
    path: &str,
) -> Option<CloudInit> {
    let n_before = ctx.diagnostics.len();
    let mut ssh_keys: Vec<String> = Vec::new();
    for (key_idx, key) in ci.ssh_keys.iter().enumerate() {
        check_ssh_key(ctx, key, &format!("{path}.ssh_keys[{key_idx}]"));
        ssh_keys.push(key.value.trim().to_string());
    }
    read_ssh_key_files(ctx, &ci.ssh_key_files, path, &mut ssh_keys);
    let ipv4 = parse_ipv4(ctx, ci, path);
    let ipv6 = parse_ipv6(ctx, ci, path);
    let extra_interfaces = check_extra_interfaces(ctx, ci, path);
    let password = ci
        .password
        .as_ref()
        .and_then(|p| resolve_secret(ctx, p, &format!("{path}.password")));
    let (nameservers, searchdomain) = check_dns(ctx, ci, path);
    check_drive_storage(ctx, ci, path);
    let (user_data, vendor_data, network_data) = check_custom_data(ctx, ci, path, &ssh_keys);
    let delivery = check_delivery(ctx, ci, path);
    if ctx.diagnostics.len() != n_before {
        return None;
    }
    Some(CloudInit {
        delivery,
        storage: ci.storage.clone(),
        user: ci.user.clone(),
        password,
        ssh_keys,
        ipv4: ipv4?,
        ipv6: ipv6?,
        nameservers,
        searchdomain,
        upgrade: ci.upgrade,
        user_data,
        vendor_data,
        network_data,
        extra_interfaces,
    })
}

/// The storage of the cloud-init drive. It has no span of its own: the error points at the
/// block's `ipv4` or `user` when there is one.
fn check_drive_storage(ctx: &mut Validator, ci: &RawCloudInit, path: &str) {
    if let Some(storage) = &ci.storage
        && !is_storage_id(storage)
    {
        let place = ci.ipv4.clone().or_else(|| {
            ci.user.clone().map(|u| {
                Spanned::new(
                    u,
                    serde_saphyr::Location::UNKNOWN,
                    serde_saphyr::Location::UNKNOWN,
                )
            })
        });
        match place {
            Some(place) => ctx.error_at(
                &place,
                &format!("{path}.storage"),
                format!("`{storage}` is not a valid storage id"),
                Some(STORAGE_ID_ALLOWED),
            ),
            None => ctx.diagnostics.push(Diagnostic {
                path: format!("{path}.storage"),
                message: format!("`{storage}` is not a valid storage id"),
                allowed: Some(STORAGE_ID_ALLOWED.to_string()),
                line: 0,
                column: 0,
                len: 1,
            }),
        }
    }
}

/// Custom user-, vendor- and network-data, read and checked; and whether the declared user can
/// be added to the user-data.
fn check_custom_data(
    ctx: &mut Validator,
    ci: &RawCloudInit,
    path: &str,
    ssh_keys: &[String],
) -> (Option<CustomData>, Option<CustomData>, Option<CustomData>) {
    let user_data = ci
        .user_data
        .as_ref()
        .and_then(|f| read_custom_data(ctx, f, &format!("{path}.user_data"), CustomKind::User));
    let vendor_data = ci
        .vendor_data
        .as_ref()
        .and_then(|f| read_custom_data(ctx, f, &format!("{path}.vendor_data"), CustomKind::Vendor));
    let network_data = ci.network_data.as_ref().and_then(|f| {
        read_custom_data(ctx, f, &format!("{path}.network_data"), CustomKind::Network)
    });
    if let Some(file) = &ci.user_data
        && let Some(data) = &user_data
    {
        let declares_user = ci.user.is_some() || !ssh_keys.is_empty() || ci.password.is_some();
        let cloud_config = data.content.lines().next() == Some("#cloud-config");
        if declares_user && !cloud_config {
            ctx.warnings.push(Warning {
                path: format!("{path}.user_data"),
                message: format!(
                    "`{}` is not a #cloud-config: the declared user, SSH keys and password are not added to it",
                    file.value
                ),
            });
        } else if cloud_config
            && ci.user.is_none()
            && (!ssh_keys.is_empty() || ci.password.is_some())
        {
            ctx.error_at(
                file,
                &format!("{path}.user"),
                "SSH keys and a password go to the user proxfleet adds to the user-data, which needs a name".to_string(),
                Some("`user: NAME` beside `user_data`"),
            );
        }
    }
    (user_data, vendor_data, network_data)
}

fn check_delivery(ctx: &mut Validator, ci: &RawCloudInit, path: &str) -> Option<Delivery> {
    ci.delivery.as_ref().map(|delivery| match delivery.value {
        RawDelivery::Iso => Delivery::Iso,
        RawDelivery::Snippets => {
            if ctx.defaults.snippets.is_none() {
                ctx.error_at(
                    delivery,
                    &format!("{path}.delivery"),
                    "`delivery: snippets` needs a storage with the `snippets` content type, and there is no `defaults.storage.snippets`".to_string(),
                    Some("`defaults.storage.snippets: local` (or another storage with `snippets` content), or `delivery: iso`"),
                );
            }
            Delivery::Snippets
        }
    })
}
