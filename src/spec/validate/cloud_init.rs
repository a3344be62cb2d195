//! Cloud-init blocks: user, SSH keys, password, addresses of every interface, DNS, custom data
//! and how it is delivered, checked together where they depend on each other.

use serde_saphyr::Spanned;

use super::super::Warning;
use super::super::model::*;
use super::super::raw::*;
use super::Validator;
use super::addresses::{check_dns, check_extra_interfaces, parse_ipv4, parse_ipv6};
use super::files::{CustomKind, read_custom_data, read_ssh_key_files, resolve_secret};
use super::scalars::{STORAGE_ID_ALLOWED, is_storage_id};
use super::ssh_keys::{USER_ALLOWED, key_problem, user_problem};

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
    let allowed = "one line `<type> <base64> [comment]`, type one of ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256/384/521, sk-ssh-ed25519@openssh.com, matching the type inside the key";
    if let Some(problem) = key_problem(&key.value) {
        ctx.error_at(key, path, problem, Some(allowed));
        return;
    }
    let kind = key.value.split_whitespace().next().unwrap_or_default();
    if !TYPES.contains(&kind) {
        ctx.error_at(
            key,
            path,
            "not an OpenSSH public key".to_string(),
            Some(allowed),
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
    check_user(ctx, ci, path);
    let (user_data, vendor_data, network_data) = check_custom_data(ctx, ci, path, &ssh_keys);
    let delivery = check_delivery(ctx, ci, path);
    if ctx.diagnostics.len() != n_before {
        return None;
    }
    Some(CloudInit {
        delivery,
        storage: ci.storage.as_ref().map(|s| s.value.clone()),
        user: ci.user.as_ref().map(|u| u.value.clone()),
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

/// The storage of the cloud-init drive: a storage id, nothing smuggled in after a `,`.
fn check_drive_storage(ctx: &mut Validator, ci: &RawCloudInit, path: &str) {
    if let Some(storage) = &ci.storage
        && !is_storage_id(&storage.value)
    {
        ctx.error_at(
            storage,
            &format!("{path}.storage"),
            format!("`{}` is not a valid storage id", storage.value),
            Some(STORAGE_ID_ALLOWED),
        );
    }
}

/// The default user's name, as `useradd` and cloud-init will take it.
fn check_user(ctx: &mut Validator, ci: &RawCloudInit, path: &str) {
    if let Some(user) = &ci.user
        && let Some(problem) = user_problem(&user.value)
    {
        ctx.error_at(user, &format!("{path}.user"), problem, Some(USER_ALLOWED));
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
