//! Auth schemes and ACL checks (`ZooKeeperServer.checkACL`, `PrepRequestProcessor.fixupACL`,
//! `DigestAuthenticationProvider`, `IPAuthenticationProvider`; PROTOCOL.md §2.6).

use base64::Engine;
use sha1::{Digest, Sha1};

use crate::proto::{Acl, ErrorCode, Id};

/// `DigestAuthenticationProvider.generateDigest`: `user:base64(sha1("user:password"))`.
pub fn generate_digest(user_password: &str) -> String {
    let user = user_password.split(':').next().unwrap_or("");
    let hash = Sha1::digest(user_password.as_bytes());
    format!("{user}:{}", base64::engine::general_purpose::STANDARD.encode(hash))
}

/// Settings that shape auth and ACL checks.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    /// `superDigest`: `super:<base64>`; a digest auth equal to it also grants `super`.
    pub super_digest: Option<String>,
    /// `skipACL=yes`.
    pub skip_acl: bool,
}

/// Handles an `auth` packet: the ids to add to the connection, or `AuthFailed` for schemes without
/// a provider (only `digest` and `ip` are registered, as in a default ZooKeeper).
pub fn authenticate(scheme: &str, auth: &[u8], remote_ip: &str, settings: &AuthSettings) -> Result<Vec<Id>, ErrorCode> {
    match scheme {
        "digest" => {
            let digest = generate_digest(&String::from_utf8_lossy(auth));
            let mut ids = Vec::new();
            if settings.super_digest.as_deref() == Some(digest.as_str()) {
                ids.push(Id { scheme: "super".into(), id: String::new() });
            }
            ids.push(Id { scheme: "digest".into(), id: digest });
            Ok(ids)
        }
        "ip" => Ok(vec![Id { scheme: "ip".into(), id: remote_ip.to_owned() }]),
        _ => Err(ErrorCode::AuthFailed),
    }
}

/// The user name `whoAmI` reports for an id (`AuthenticationProvider.getUserName`).
pub fn user_name(id: &Id) -> String {
    match id.scheme.as_str() {
        "digest" => id.id.split(':').next().unwrap_or("").to_owned(),
        _ => id.id.clone(),
    }
}

fn ipv4_bytes(addr: &str) -> Option<[u8; 4]> {
    let parts: Vec<&str> = addr.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    let mut out = [0u8; 4];
    for (i, part) in parts.iter().enumerate() {
        // Java's Integer.parseInt accepts a leading sign.
        let value: i32 = part.strip_prefix('+').unwrap_or(part).parse().ok()?;
        if !(0..=255).contains(&value) {
            return None;
        }
        out[i] = value as u8;
    }
    Some(out)
}

/// `IPAuthenticationProvider.isValid`: IPv4 address with optional `/bits`.
fn ip_acl_valid(id: &str) -> bool {
    let mut parts = id.splitn(2, '/');
    if ipv4_bytes(parts.next().unwrap_or("")).is_none() {
        return false;
    }
    match parts.next() {
        None => true,
        Some(bits) => bits.parse::<i32>().is_ok_and(|b| (0..=32).contains(&b)),
    }
}

/// `IPAuthenticationProvider.matches`: the client address masked to the ACL's bits.
fn ip_matches(client: &str, acl_expr: &str) -> bool {
    let mut parts = acl_expr.splitn(2, '/');
    let Some(acl_addr) = ipv4_bytes(parts.next().unwrap_or("")) else { return false };
    let bits = match parts.next() {
        None => 32,
        Some(b) => match b.parse::<u32>() {
            Ok(b) if b <= 32 => b,
            _ => return false,
        },
    };
    let Some(client_addr) = ipv4_bytes(client) else { return false };
    let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
    (u32::from_be_bytes(acl_addr) & mask) == (u32::from_be_bytes(client_addr) & mask)
}

/// `checkACL`: Ok if `auth_ids` grant `perm` under `acl`.
pub fn check_acl(acl: &[Acl], perm: i32, auth_ids: &[Id], settings: &AuthSettings) -> Result<(), ErrorCode> {
    if settings.skip_acl || acl.is_empty() {
        return Ok(());
    }
    if auth_ids.iter().any(|id| id.scheme == "super") {
        return Ok(());
    }
    for entry in acl {
        if entry.perms & perm == 0 {
            continue;
        }
        let id = &entry.id;
        if id.scheme == "world" && id.id == "anyone" {
            return Ok(());
        }
        let matched = auth_ids.iter().filter(|a| a.scheme == id.scheme).any(|a| match id.scheme.as_str() {
            "digest" => a.id == id.id,
            "ip" => ip_matches(&a.id, &id.id),
            _ => false,
        });
        if matched {
            return Ok(());
        }
    }
    Err(ErrorCode::NoAuth)
}

/// `fixupACL`: removes duplicates, expands `auth`, validates the rest; `InvalidAcl` otherwise.
pub fn fixup_acl(acl: &[Acl], auth_ids: &[Id]) -> Result<Vec<Acl>, ErrorCode> {
    let mut unique: Vec<&Acl> = Vec::with_capacity(acl.len());
    for entry in acl {
        if !unique.contains(&entry) {
            unique.push(entry);
        }
    }
    if unique.is_empty() {
        return Err(ErrorCode::InvalidAcl);
    }
    let mut out = Vec::with_capacity(unique.len());
    for entry in unique {
        let id = &entry.id;
        if id.scheme == "world" && id.id == "anyone" {
            out.push(entry.clone());
        } else if id.scheme == "auth" {
            // Only providers that authenticate (digest here; not ip) count.
            let mut any = false;
            for auth_id in auth_ids.iter().filter(|a| a.scheme == "digest") {
                any = true;
                out.push(Acl { perms: entry.perms, id: auth_id.clone() });
            }
            if !any {
                return Err(ErrorCode::InvalidAcl);
            }
        } else {
            let valid = match id.scheme.as_str() {
                // Java's split(":") drops trailing empty strings, so "a:" is invalid and ":b" valid.
                "digest" => id.id.trim_end_matches(':').split(':').count() == 2,
                "ip" => ip_acl_valid(&id.id),
                _ => false,
            };
            if !valid {
                return Err(ErrorCode::InvalidAcl);
            }
            out.push(entry.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::consts::perms;

    fn acl(perms: i32, scheme: &str, id: &str) -> Acl {
        Acl { perms, id: Id { scheme: scheme.into(), id: id.into() } }
    }

    #[test]
    fn digest_matches_zookeeper() {
        assert_eq!(generate_digest("bob:secret"), "bob:fyVmFCwVbTJYrznoSu1koqYEYF0=");
        assert_eq!(generate_digest("super:test"), "super:D/InIHSb7yEEbrWz8b9l71RjZJU=");
    }

    #[test]
    fn super_digest_grants_super() {
        let settings = AuthSettings { super_digest: Some("super:D/InIHSb7yEEbrWz8b9l71RjZJU=".into()), skip_acl: false };
        let ids = authenticate("digest", b"super:test", "127.0.0.1", &settings).unwrap();
        assert_eq!(ids[0].scheme, "super");
        let locked = [acl(perms::READ, "digest", "bob:x")];
        assert!(check_acl(&locked, perms::WRITE, &ids, &settings).is_ok());
        assert_eq!(authenticate("kerberos", b"", "127.0.0.1", &settings), Err(ErrorCode::AuthFailed));
    }

    #[test]
    fn ip_acls_match_cidr() {
        let settings = AuthSettings::default();
        let client = [Id { scheme: "ip".into(), id: "127.0.0.2".into() }];
        assert!(check_acl(&[acl(perms::ALL, "ip", "127.0.0.0/8")], perms::READ, &client, &settings).is_ok());
        assert!(check_acl(&[acl(perms::ALL, "ip", "127.0.0.1")], perms::READ, &client, &settings).is_err());
        assert!(check_acl(&[acl(perms::ALL, "ip", "10.0.0.0/0")], perms::READ, &client, &settings).is_ok());
    }

    #[test]
    fn fixup_expands_auth_and_rejects_bad_ids() {
        let ids = [Id { scheme: "ip".into(), id: "127.0.0.1".into() }];
        assert_eq!(fixup_acl(&[acl(31, "auth", "")], &ids), Err(ErrorCode::InvalidAcl));
        let ids = [ids[0].clone(), Id { scheme: "digest".into(), id: "bob:h".into() }];
        assert_eq!(fixup_acl(&[acl(31, "auth", "")], &ids), Ok(vec![acl(31, "digest", "bob:h")]));
        assert_eq!(fixup_acl(&[], &ids), Err(ErrorCode::InvalidAcl));
        assert_eq!(fixup_acl(&[acl(31, "digest", "nocolon")], &ids), Err(ErrorCode::InvalidAcl));
        assert_eq!(fixup_acl(&[acl(31, "ip", "1.2.3.4/33")], &ids), Err(ErrorCode::InvalidAcl));
        assert_eq!(fixup_acl(&[acl(31, "world", "someone")], &ids), Err(ErrorCode::InvalidAcl));
        let dup = [acl(31, "ip", "1.2.3.4"), acl(31, "ip", "1.2.3.4")];
        assert_eq!(fixup_acl(&dup, &ids).unwrap().len(), 1);
    }
}
