//! `server.N` lines: `host:quorumPort:electionPort[:participant|:observer][;[clientHost:]clientPort]`.
//!
//! Ported from `QuorumPeer.QuorumServer#initializeWithAddressString` and `ConfigUtils.getHostAndPort`
//! (3.8): `;` separates the client part, `|` separates several quorum addresses (only with
//! `multiAddress.enabled=true`, and then all must name the same role), an IPv6 host is written `[addr]`.
//! Nothing is resolved here: hosts stay strings (no DNS, no IO).

use std::fmt;

/// Role of a quorum member (`LearnerType`). The ordinal is what `conf` prints as `peerType`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LearnerType {
    /// Votes in elections and acks proposals.
    #[default]
    Participant,
    /// Follows the leader without voting.
    Observer,
}

impl LearnerType {
    /// Parses `participant`/`observer` (trimmed, case-insensitive, as `QuorumServer.getType` does).
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "participant" => Some(LearnerType::Participant),
            "observer" => Some(LearnerType::Observer),
            _ => None,
        }
    }

    /// The name used in `server.N` lines.
    pub fn as_str(self) -> &'static str {
        match self {
            LearnerType::Participant => "participant",
            LearnerType::Observer => "observer",
        }
    }

    /// Java enum ordinal (`conf` prints `peerType=0` for participant, 1 for observer).
    pub fn ordinal(self) -> u8 {
        match self {
            LearnerType::Participant => 0,
            LearnerType::Observer => 1,
        }
    }
}

/// A host (name or IP literal, IPv6 without brackets) and a port, unresolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    /// Host name or IP literal; IPv6 literals are stored without brackets.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl HostPort {
    /// Whether the host is a wildcard address (`0.0.0.0` or `::`), i.e. "all interfaces".
    pub fn is_wildcard(&self) -> bool {
        match self.host.parse::<std::net::IpAddr>() {
            Ok(ip) => ip.is_unspecified(),
            Err(_) => false,
        }
    }
}

/// `host:port` with IPv6 hosts in brackets, as ZooKeeper's `delimitedHostString` prints them.
impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_host(f, &self.host)?;
        write!(f, ":{}", self.port)
    }
}

fn write_host(f: &mut fmt::Formatter<'_>, host: &str) -> fmt::Result {
    if host.contains(':') {
        write!(f, "[{host}]")
    } else {
        f.write_str(host)
    }
}

/// One quorum address of a server: the host with its two peer ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumAddress {
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// Port followers use to connect to the leader (Zab traffic).
    pub quorum_port: u16,
    /// Port for leader election.
    pub election_port: u16,
}

/// A parsed `server.N` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSpec {
    /// The `N` of `server.N` (matches some server's `myid`).
    pub id: u64,
    /// Quorum addresses; exactly one unless `multiAddress.enabled=true`.
    pub addresses: Vec<QuorumAddress>,
    /// Participant unless the line says `:observer`.
    pub learner_type: LearnerType,
    /// The `;[clientHost:]clientPort` suffix; the host defaults to `0.0.0.0` as in ZooKeeper.
    pub client_address: Option<HostPort>,
}

/// The quorum-config form ZooKeeper prints and sends in election notifications (`QuorumServer.toString`):
/// `host:quorumPort:electionPort:participant[;clientHost:clientPort]`, addresses joined by `|`.
impl fmt::Display for ServerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, address) in self.addresses.iter().enumerate() {
            if index > 0 {
                f.write_str("|")?;
            }
            write_host(f, &address.host)?;
            write!(f, ":{}:{}", address.quorum_port, address.election_port)?;
        }
        write!(f, ":{}", self.learner_type.as_str())?;
        if let Some(client) = &self.client_address {
            write!(f, ";{client}")?;
        }
        Ok(())
    }
}

/// Splits `host:port:...` or `[v6]:port:...` into host and the remaining parts (`ConfigUtils.getHostAndPort`).
fn host_and_ports(text: &str) -> Result<Vec<String>, String> {
    let Some(rest) = text.strip_prefix('[') else {
        return Ok(text.split(':').map(|part| part.trim().to_string()).collect());
    };
    let close = rest
        .find(']')
        .ok_or_else(|| format!("{text:?} starts with '[' but has no matching ']'"))?;
    let host = &rest[..close];
    if host.is_empty() {
        return Err(format!("{text:?} has an empty IPv6 address"));
    }
    let mut parts = vec![host.to_string()];
    let after = &rest[close + 1..];
    if after.is_empty() {
        return Ok(parts);
    }
    let ports = after
        .strip_prefix(':')
        .ok_or_else(|| format!("{text:?} does not have ':' after ']'"))?;
    parts.extend(ports.split(':').map(|part| part.trim().to_string()));
    Ok(parts)
}

fn port(text: &str, what: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(format!("has an invalid {what} {text:?} (expected 1..65535)")),
    }
}

const FORMAT: &str = "host:quorumPort:electionPort[:participant|:observer][;[clientHost:]clientPort]";

/// Parses the value of `server.<id>`. The error is a reason phrased to follow the quoted value.
pub fn parse_server(id: u64, value: &str, multi_address_enabled: bool) -> Result<ServerSpec, String> {
    let wrong_format = || format!("does not have the form {FORMAT}");
    let mut sections = value.split(';');
    let server_part = sections.next().unwrap_or_default();
    let client_part = sections.next().map(str::trim).filter(|part| !part.is_empty());
    if sections.next().is_some() {
        return Err(wrong_format());
    }

    let client_address = match client_part {
        None => None,
        Some(client) => {
            let parts = host_and_ports(client)?;
            match parts.as_slice() {
                [port_text] => Some(HostPort {
                    host: "0.0.0.0".to_string(),
                    port: port(port_text, "client port")?,
                }),
                [host, port_text] if !host.is_empty() => Some(HostPort {
                    host: host.clone(),
                    port: port(port_text, "client port")?,
                }),
                _ => return Err(wrong_format()),
            }
        }
    };

    let address_texts: Vec<&str> = server_part.split('|').map(str::trim).collect();
    if address_texts.len() > 1 && !multi_address_enabled {
        return Err("lists several addresses but multiAddress.enabled is not true".to_string());
    }
    let mut addresses = Vec::with_capacity(address_texts.len());
    let mut learner_type: Option<LearnerType> = None;
    for address_text in address_texts {
        let parts = host_and_ports(address_text)?;
        if parts.len() < 3 || parts.len() > 4 || parts[0].is_empty() {
            return Err(wrong_format());
        }
        let quorum_port = port(&parts[1], "quorum port")?;
        let election_port = port(&parts[2], "election port")?;
        if quorum_port == election_port {
            return Err("uses the same port for quorum and election; they must differ".to_string());
        }
        if let Some(role_text) = parts.get(3) {
            let role = LearnerType::parse(role_text).ok_or_else(|| {
                format!("has an unrecognised peer type {role_text:?} (expected participant or observer)")
            })?;
            if learner_type.is_some_and(|previous| previous != role) {
                return Err("gives different roles to its addresses".to_string());
            }
            learner_type = Some(role);
        }
        addresses.push(QuorumAddress {
            host: parts[0].clone(),
            quorum_port,
            election_port,
        });
    }
    Ok(ServerSpec {
        id,
        addresses,
        learner_type: learner_type.unwrap_or_default(),
        client_address,
    })
}
