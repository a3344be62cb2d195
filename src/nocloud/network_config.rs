//! network-config version 2 (netplan's format, which cloud-init reads): one Ethernet interface
//! per NIC, matched by MAC, with DHCP, SLAAC or static addresses, gateways and DNS.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use super::SeedError;
use super::text::{is_dns_name, yaml_quoted};

/// A MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddress(pub [u8; 6]);

impl FromStr for MacAddress {
    type Err = SeedError;

    /// Six hexadecimal bytes separated by `:` (as Proxmox writes them) or `-`, either case.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || SeedError::InvalidMac {
            text: text.to_string(),
        };
        let mut bytes = [0; 6];
        let mut parts = text.split([':', '-']);
        for byte in &mut bytes {
            let part = parts.next().ok_or_else(invalid)?;
            // `from_str_radix` alone would take a sign: `+c`.
            if part.len() != 2 || !part.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(invalid());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| invalid())?;
        }
        if parts.next().is_some() {
            return Err(invalid());
        }
        Ok(MacAddress(bytes))
    }
}

impl fmt::Display for MacAddress {
    /// Lower case with colons, the form netplan documents.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// How an interface gets its IPv4 address.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Ipv4Addressing {
    /// No IPv4 configuration.
    #[default]
    None,
    /// DHCP (`dhcp4: true`).
    Dhcp,
    /// Fixed addresses, with the default gateway when there is one.
    Static {
        /// Addresses with their prefix length (`192.0.2.10/24`).
        addresses: Vec<ipnet::Ipv4Net>,
        /// `gateway4`.
        gateway: Option<Ipv4Addr>,
    },
}

/// How an interface gets its IPv6 address.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Ipv6Addressing {
    /// No IPv6 configuration (the kernel's defaults).
    #[default]
    None,
    /// DHCPv6 (`dhcp6: true`).
    Dhcp,
    /// Stateless autoconfiguration from router advertisements (`accept-ra: true`).
    Slaac,
    /// Fixed addresses, with the default gateway when there is one.
    Static {
        /// Addresses with their prefix length (`2001:db8::10/64`).
        addresses: Vec<ipnet::Ipv6Net>,
        /// `gateway6`.
        gateway: Option<Ipv6Addr>,
    },
}

/// One Ethernet interface of a network-config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// The interface's id in the config and, when it is matched by MAC, its name in the guest
    /// (`set-name`); otherwise the guest's name for it (`eth0`, `ens18`).
    pub name: String,
    /// Match the NIC by MAC address rather than by name.
    pub mac: Option<MacAddress>,
    /// IPv4.
    pub ipv4: Ipv4Addressing,
    /// IPv6.
    pub ipv6: Ipv6Addressing,
    /// DNS servers.
    pub nameservers: Vec<IpAddr>,
    /// DNS search domains.
    pub search: Vec<String>,
}

/// A cloud-init network-config, version 2 (netplan's format), for `interfaces`: `version: 2`
/// and `ethernets` at the top level, the form NoCloud has always read. Every value is quoted.
///
/// # Errors
/// An invalid or repeated interface name, a MAC matched twice, a static configuration without
/// addresses, an invalid search domain.
pub fn network_config(interfaces: &[Interface]) -> Result<String, SeedError> {
    let mut names = BTreeSet::new();
    let mut macs = BTreeSet::new();
    let mut out = String::from("version: 2\n");
    if interfaces.is_empty() {
        out.push_str("ethernets: {}\n");
        return Ok(out);
    }
    out.push_str("ethernets:\n");
    for interface in interfaces {
        let name = &interface.name;
        let name_ok = !name.is_empty()
            && name.len() <= 15
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !name_ok {
            return Err(SeedError::InvalidInterfaceName { name: name.clone() });
        }
        if !names.insert(name.as_str()) {
            return Err(SeedError::DuplicateInterface { name: name.clone() });
        }
        out.push_str(&format!("  {}:\n", yaml_quoted(name)));
        if let Some(mac) = interface.mac {
            if !macs.insert(mac) {
                return Err(SeedError::DuplicateMac { mac });
            }
            out.push_str("    match:\n");
            out.push_str(&format!(
                "      macaddress: {}\n",
                yaml_quoted(&mac.to_string())
            ));
            out.push_str(&format!("    set-name: {}\n", yaml_quoted(name)));
        }
        let mut addresses = Vec::new();
        match &interface.ipv4 {
            Ipv4Addressing::None => {}
            Ipv4Addressing::Dhcp => out.push_str("    dhcp4: true\n"),
            Ipv4Addressing::Static { addresses: v4, .. } => {
                if v4.is_empty() {
                    return Err(SeedError::StaticWithoutAddress {
                        interface: name.clone(),
                        family: "IPv4",
                    });
                }
                addresses.extend(v4.iter().map(ToString::to_string));
            }
        }
        match &interface.ipv6 {
            Ipv6Addressing::None | Ipv6Addressing::Static { .. } => {}
            Ipv6Addressing::Dhcp => out.push_str("    dhcp6: true\n"),
            Ipv6Addressing::Slaac => out.push_str("    accept-ra: true\n"),
        }
        if let Ipv6Addressing::Static { addresses: v6, .. } = &interface.ipv6 {
            if v6.is_empty() {
                return Err(SeedError::StaticWithoutAddress {
                    interface: name.clone(),
                    family: "IPv6",
                });
            }
            addresses.extend(v6.iter().map(ToString::to_string));
        }
        push_list(&mut out, "    addresses", &addresses);
        if let Ipv4Addressing::Static {
            gateway: Some(gateway),
            ..
        } = &interface.ipv4
        {
            out.push_str(&format!(
                "    gateway4: {}\n",
                yaml_quoted(&gateway.to_string())
            ));
        }
        if let Ipv6Addressing::Static {
            gateway: Some(gateway),
            ..
        } = &interface.ipv6
        {
            out.push_str(&format!(
                "    gateway6: {}\n",
                yaml_quoted(&gateway.to_string())
            ));
        }
        if let Some(domain) = interface.search.iter().find(|domain| !is_dns_name(domain)) {
            return Err(SeedError::InvalidSearchDomain {
                interface: name.clone(),
                domain: domain.clone(),
            });
        }
        if !interface.nameservers.is_empty() || !interface.search.is_empty() {
            out.push_str("    nameservers:\n");
            let servers: Vec<String> = interface
                .nameservers
                .iter()
                .map(ToString::to_string)
                .collect();
            push_list(&mut out, "      addresses", &servers);
            push_list(&mut out, "      search", &interface.search);
        }
    }
    Ok(out)
}

/// `key:` and one quoted item a line, or nothing for an empty list.
fn push_list(out: &mut String, key: &str, items: &[String]) {
    if items.is_empty() {
        return;
    }
    out.push_str(key);
    out.push_str(":\n");
    let indent = key.len() - key.trim_start().len() + 2;
    for item in items {
        out.push_str(&format!("{:indent$}- {}\n", "", yaml_quoted(item)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(text: &str) -> ipnet::Ipv4Net {
        text.parse().unwrap()
    }

    fn v6(text: &str) -> ipnet::Ipv6Net {
        text.parse().unwrap()
    }

    fn interface(name: &str) -> Interface {
        Interface {
            name: name.into(),
            mac: None,
            ipv4: Ipv4Addressing::None,
            ipv6: Ipv6Addressing::None,
            nameservers: Vec::new(),
            search: Vec::new(),
        }
    }

    #[test]
    fn network_config_renders_version_2() {
        let interfaces = [
            Interface {
                mac: Some("BC:24:11:0A:00:01".parse().unwrap()),
                ipv4: Ipv4Addressing::Static {
                    addresses: vec![v4("192.0.2.10/24"), v4("198.51.100.10/25")],
                    gateway: Some("192.0.2.1".parse().unwrap()),
                },
                ipv6: Ipv6Addressing::Static {
                    addresses: vec![v6("2001:db8::10/64")],
                    gateway: Some("2001:db8::1".parse().unwrap()),
                },
                nameservers: vec![
                    "192.0.2.53".parse().unwrap(),
                    "2001:db8::53".parse().unwrap(),
                ],
                search: vec!["example.com".into(), "lab.example.com".into()],
                ..interface("eth0")
            },
            Interface {
                ipv4: Ipv4Addressing::Dhcp,
                ipv6: Ipv6Addressing::Dhcp,
                ..interface("eth1")
            },
            Interface {
                ipv6: Ipv6Addressing::Slaac,
                search: vec!["example.org".into()],
                ..interface("ens20")
            },
        ];
        let text = network_config(&interfaces).unwrap();
        assert_eq!(
            text,
            r#"version: 2
ethernets:
  "eth0":
    match:
      macaddress: "bc:24:11:0a:00:01"
    set-name: "eth0"
    addresses:
      - "192.0.2.10/24"
      - "198.51.100.10/25"
      - "2001:db8::10/64"
    gateway4: "192.0.2.1"
    gateway6: "2001:db8::1"
    nameservers:
      addresses:
        - "192.0.2.53"
        - "2001:db8::53"
      search:
        - "example.com"
        - "lab.example.com"
  "eth1":
    dhcp4: true
    dhcp6: true
  "ens20":
    accept-ra: true
    nameservers:
      search:
        - "example.org"
"#
        );
        let parsed: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(
            parsed["ethernets"]["eth0"]["addresses"][2],
            "2001:db8::10/64"
        );
        assert_eq!(network_config(&[]).unwrap(), "version: 2\nethernets: {}\n");
    }

    #[test]
    fn bad_network_configs_are_refused() {
        let mac: MacAddress = "bc:24:11:00:00:01".parse().unwrap();
        let cases = [
            (
                vec![interface("")],
                SeedError::InvalidInterfaceName { name: "".into() },
            ),
            (
                vec![interface("a-very-long-name0")],
                SeedError::InvalidInterfaceName {
                    name: "a-very-long-name0".into(),
                },
            ),
            (
                vec![interface("eth 0")],
                SeedError::InvalidInterfaceName {
                    name: "eth 0".into(),
                },
            ),
            (
                vec![interface("eth0"), interface("eth0")],
                SeedError::DuplicateInterface {
                    name: "eth0".into(),
                },
            ),
            (
                vec![
                    Interface {
                        mac: Some(mac),
                        ..interface("eth0")
                    },
                    Interface {
                        mac: Some(mac),
                        ..interface("eth1")
                    },
                ],
                SeedError::DuplicateMac { mac },
            ),
            (
                vec![Interface {
                    ipv4: Ipv4Addressing::Static {
                        addresses: Vec::new(),
                        gateway: None,
                    },
                    ..interface("eth0")
                }],
                SeedError::StaticWithoutAddress {
                    interface: "eth0".into(),
                    family: "IPv4",
                },
            ),
            (
                vec![Interface {
                    ipv6: Ipv6Addressing::Static {
                        addresses: Vec::new(),
                        gateway: None,
                    },
                    ..interface("eth0")
                }],
                SeedError::StaticWithoutAddress {
                    interface: "eth0".into(),
                    family: "IPv6",
                },
            ),
            (
                vec![Interface {
                    search: vec!["bad domain".into()],
                    ..interface("eth0")
                }],
                SeedError::InvalidSearchDomain {
                    interface: "eth0".into(),
                    domain: "bad domain".into(),
                },
            ),
        ];
        for (interfaces, expected) in cases {
            assert_eq!(network_config(&interfaces), Err(expected));
        }
    }

    #[test]
    fn mac_addresses_parse_in_either_case_and_print_lower_case() {
        let mac: MacAddress = "BC-24-11-AB-cd-0F".parse().unwrap();
        assert_eq!(mac, MacAddress([0xbc, 0x24, 0x11, 0xab, 0xcd, 0x0f]));
        assert_eq!(mac.to_string(), "bc:24:11:ab:cd:0f");
        for text in [
            "",
            "bc:24:11:ab:cd",
            "bc:24:11:ab:cd:0f:00",
            "bc:24:11:ab:cd:g0",
            "bc:24:11:ab:cd:0",
            "+c:24:11:ab:cd:0f",
        ] {
            assert_eq!(
                text.parse::<MacAddress>(),
                Err(SeedError::InvalidMac { text: text.into() })
            );
        }
    }
}
