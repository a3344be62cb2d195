//! Addresses a cloud-init block gives an interface: IPv4 and IPv6 settings and their gateways,
//! each gateway checked against the address it goes with.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

use super::Validator;

use super::super::model::*;
use super::super::raw::*;

pub(super) fn parse_ipv4(
    ctx: &mut Validator,
    ci: &RawCloudInit,
    path: &str,
) -> Option<Option<Ipv4Config>> {
    let Some(ipv4) = &ci.ipv4 else {
        if let Some(gw) = &ci.gateway {
            ctx.error_at(
                gw,
                &format!("{path}.gateway"),
                "a gateway needs a static `ipv4`".to_string(),
                Some("`gateway` together with `ipv4: <address>/<prefix>`"),
            );
            return None;
        }
        return Some(None);
    };
    if ipv4.value == "dhcp" {
        if let Some(gw) = &ci.gateway {
            ctx.error_at(
                gw,
                &format!("{path}.gateway"),
                "a gateway cannot be combined with `ipv4: dhcp`".to_string(),
                Some("no gateway with dhcp"),
            );
            return None;
        }
        return Some(Some(Ipv4Config::Dhcp));
    }
    let address: Ipv4Net = match ipv4.value.parse() {
        Ok(net) => net,
        Err(_) => {
            ctx.error_at(
                ipv4,
                &format!("{path}.ipv4"),
                format!("`{}` is not an IPv4 address with prefix", ipv4.value),
                Some("`dhcp` or an address with prefix such as `192.0.2.10/24`"),
            );
            return None;
        }
    };
    if address.prefix_len() < 8 {
        ctx.error_at(
            ipv4,
            &format!("{path}.ipv4"),
            format!(
                "prefix /{} is shorter than Proxmox accepts",
                address.prefix_len()
            ),
            Some("a prefix of 8..=32"),
        );
        return None;
    }
    if is_not_a_host(ctx, ipv4, address, path) {
        return None;
    }
    let gateway = match &ci.gateway {
        None => None,
        Some(gw) => match gw.value.parse::<Ipv4Addr>() {
            Ok(addr)
                if address.contains(&addr)
                    && addr != address.addr()
                    && (address.prefix_len() > 30 || addr != address.broadcast()) =>
            {
                Some(addr)
            }
            Ok(addr) => {
                let message = if addr == address.addr() {
                    format!("gateway {addr} is the clone's own address")
                } else if address.contains(&addr) {
                    format!(
                        "gateway {addr} is the broadcast address of {}",
                        address.trunc()
                    )
                } else {
                    format!("gateway {addr} is outside the subnet {}", address.trunc())
                };
                ctx.error_at(
                    gw,
                    &format!("{path}.gateway"),
                    message,
                    Some(&format!("an address inside {}", address.trunc())),
                );
                return None;
            }
            Err(_) => {
                ctx.error_at(
                    gw,
                    &format!("{path}.gateway"),
                    format!("`{}` is not an IPv4 address", gw.value),
                    Some("an IPv4 address such as `192.0.2.1`"),
                );
                return None;
            }
        },
    };
    Some(Some(Ipv4Config::Static { address, gateway }))
}

/// On a subnet with a network and a broadcast address (/30 and wider), neither is a host's:
/// reported, and `true`, when `address` is one of them.
fn is_not_a_host(
    ctx: &mut Validator,
    ipv4: &serde_saphyr::Spanned<String>,
    address: Ipv4Net,
    path: &str,
) -> bool {
    if address.prefix_len() > 30 {
        return false;
    }
    let role = if address.addr() == address.network() {
        "network"
    } else if address.addr() == address.broadcast() {
        "broadcast"
    } else {
        return false;
    };
    ctx.error_at(
        ipv4,
        &format!("{path}.ipv4"),
        format!(
            "{} is the {role} address of {}, not a host's",
            address.addr(),
            address.trunc()
        ),
        Some(&format!(
            "a host address inside {}, such as {}",
            address.trunc(),
            Ipv4Addr::from(u32::from(address.network()) + 1)
        )),
    );
    true
}

pub(super) fn parse_ipv6(
    ctx: &mut Validator,
    ci: &RawCloudInit,
    path: &str,
) -> Option<Option<Ipv6Config>> {
    let Some(ipv6) = &ci.ipv6 else {
        if let Some(gw) = &ci.gateway6 {
            ctx.error_at(
                gw,
                &format!("{path}.gateway6"),
                "an IPv6 gateway needs a static `ipv6`".to_string(),
                Some("`gateway6` together with `ipv6: <address>/<prefix>`"),
            );
            return None;
        }
        return Some(None);
    };
    let config = match ipv6.value.as_str() {
        "dhcp" => Ipv6Config::Dhcp,
        "auto" => Ipv6Config::Auto,
        text => match text.parse::<Ipv6Net>() {
            Ok(address) => {
                let gateway = match &ci.gateway6 {
                    None => None,
                    Some(gw) => match gw.value.parse::<Ipv6Addr>() {
                        Ok(addr) => {
                            // Proxmox takes it, and a link-local router address is usual; any
                            // other outside the subnet is likely a typo.
                            let link_local = (addr.segments()[0] & 0xffc0) == 0xfe80;
                            if !address.contains(&addr) && !link_local {
                                ctx.warnings.push(super::super::Warning {
                                    path: format!("{path}.gateway6"),
                                    message: format!(
                                        "gateway {addr} is outside {} and not link-local: the guest may not reach it",
                                        address.trunc()
                                    ),
                                });
                            }
                            Some(addr)
                        }
                        Err(_) => {
                            ctx.error_at(
                                gw,
                                &format!("{path}.gateway6"),
                                format!("`{}` is not an IPv6 address", gw.value),
                                Some("an IPv6 address such as `2001:db8::1`"),
                            );
                            return None;
                        }
                    },
                };
                return Some(Some(Ipv6Config::Static { address, gateway }));
            }
            Err(_) => {
                ctx.error_at(ipv6, &format!("{path}.ipv6"), format!("`{text}` is not an IPv6 setting"), Some("`dhcp`, `auto` (SLAAC) or an address with prefix such as `2001:db8::10/64`"));
                return None;
            }
        },
    };
    if let Some(gw) = &ci.gateway6 {
        ctx.error_at(
            gw,
            &format!("{path}.gateway6"),
            format!("a gateway cannot be combined with `ipv6: {}`", ipv6.value),
            Some("`gateway6` only with a static `ipv6`"),
        );
        return None;
    }
    Some(Some(config))
}

/// IP settings of `net1`, `net2`, …: the same rules as `net0`'s, through the same checks.
pub(super) fn check_extra_interfaces(
    ctx: &mut Validator,
    ci: &RawCloudInit,
    path: &str,
) -> Vec<InterfaceIp> {
    let mut extra_interfaces = Vec::new();
    for (idx, nic) in ci.extra_interfaces.iter().enumerate() {
        let as_ci = RawCloudInit {
            ipv4: nic.ipv4.clone(),
            gateway: nic.gateway.clone(),
            ipv6: nic.ipv6.clone(),
            gateway6: nic.gateway6.clone(),
            ..RawCloudInit::default()
        };
        let nic_path = format!("{path}.extra_interfaces[{idx}]");
        if let (Some(ipv4), Some(ipv6)) = (
            parse_ipv4(ctx, &as_ci, &nic_path),
            parse_ipv6(ctx, &as_ci, &nic_path),
        ) {
            extra_interfaces.push(InterfaceIp { ipv4, ipv6 });
        }
    }
    extra_interfaces
}

/// Name servers and the search domain.
pub(super) fn check_dns(
    ctx: &mut Validator,
    ci: &RawCloudInit,
    path: &str,
) -> (Vec<IpAddr>, Option<String>) {
    let mut nameservers = Vec::new();
    let mut searchdomain = None;
    if let Some(dns) = &ci.dns {
        for (server_idx, server) in dns.servers.iter().enumerate() {
            match server.value.parse::<IpAddr>() {
                Ok(ip) => nameservers.push(ip),
                Err(_) => ctx.error_at(
                    server,
                    &format!("{path}.dns.servers[{server_idx}]"),
                    format!("`{}` is not an IP address", server.value),
                    Some("an IPv4 or IPv6 address such as `192.0.2.53`"),
                ),
            }
        }
        if let Some(domain) = &dns.search_domain {
            let ok = domain.value.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
            if ok {
                searchdomain = Some(domain.value.clone());
            } else {
                ctx.error_at(
                    domain,
                    &format!("{path}.dns.search_domain"),
                    format!("`{}` is not a domain name", domain.value),
                    Some("DNS labels joined by dots, such as `example.internal`"),
                );
            }
        }
    }
    (nameservers, searchdomain)
}
