//! The key table: applies one `key=value` at a time onto a [`Config`], then validates the whole.
//!
//! Precedence is the order of `apply` calls (later wins): the caller applies defaults, then system
//! properties, then zoo.cfg lines in file order. That is ZooKeeper's order too: zoo.cfg keys it does not
//! parse itself become `System.setProperty("zookeeper." + key)` at startup, overriding any `-D` flag.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use super::error::{ConfigError, Location};
use super::server::{parse_server, LearnerType};
use super::whitelist::FourLetterWordWhitelist;
use super::Config;

/// Largest tickTime such that `20 * tickTime` (the default maxSessionTimeout) still fits the i32 the
/// wire uses for session timeouts.
const TICK_TIME_MS_MAX: i64 = i32::MAX as i64 / 20;
const I32_MAX: i64 = i32::MAX as i64;
const SNAP_COUNT_MIN: i64 = 2;
const SNAP_RETAIN_COUNT_MIN: i64 = 3;

/// Keys ZooKeeper accepts that have no meaning without a JVM, or tune Java internals; accepted silently.
const IGNORED_KEYS: &[&str] = &[
    "jvm.pause.monitor",
    "jvm.pause.info-threshold.ms",
    "jvm.pause.warn-threshold.ms",
    "jvm.pause.sleep.time.ms",
    "serverCnxnFactory",
    "quorum.cnxn.threads.size",
    "admin.httpVersion",
    "multiAddress.reachabilityCheckTimeoutMs",
    "multiAddress.reachabilityCheckEnabled",
];

/// Keys for features ferrokeeper does not implement (TLS, SASL, oracle quorums, custom auth providers).
/// Accepted with a warning unless the value is `false`.
const UNSUPPORTED_KEYS: &[&str] = &[
    "secureClientPort",
    "secureClientPortAddress",
    "sslQuorum",
    "portUnification",
    "sslQuorumReloadCertFiles",
    "quorum.auth.enableSasl",
    "quorum.auth.serverRequireSasl",
    "quorum.auth.learnerRequireSasl",
    "quorum.auth.learner.saslLoginContext",
    "quorum.auth.server.saslLoginContext",
    "quorum.auth.kerberos.servicePrincipal",
    "oraclePath",
    "sessionRequireClientSASLAuth",
    "admin.portUnification",
    "admin.forceHttps",
];
const UNSUPPORTED_PREFIXES: &[&str] = &["ssl.", "authProvider."];

/// Where a setting was applied from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Source {
    /// A zoo.cfg line: unknown keys produce warnings.
    File(usize),
    /// A `-D` system property: unknown ones are ignored silently (JVM flags carry many unrelated ones).
    SystemProperty,
}

impl Source {
    fn location(self) -> Location {
        match self {
            Source::File(line) => Location::Line(line),
            Source::SystemProperty => Location::SystemProperty,
        }
    }
}

/// A `Config` under construction plus the raw values whose meaning depends on other keys.
pub(super) struct Settings {
    pub(super) config: Config,
    data_dir: Option<PathBuf>,
    data_log_dir: Option<PathBuf>,
    min_session_timeout_ms: Option<i32>,
    max_session_timeout_ms: Option<i32>,
    whitelist: Option<String>,
    jute_max_buffer_extra_size_bytes: Option<u32>,
    /// server id → (value, where); parsed in `finish` because `multiAddress.enabled` may come later.
    servers: BTreeMap<u64, (String, Location)>,
    /// Canonical key → where it was last set, for errors that involve several keys.
    set_at: HashMap<String, Location>,
    warnings: Vec<String>,
}

impl Settings {
    /// Starts from `config` (whose `data_dir` counts as set only if `data_dir_set`).
    pub(super) fn new(config: Config, data_dir_set: bool) -> Self {
        Settings {
            data_dir: data_dir_set.then(|| config.data_dir.clone()),
            data_log_dir: None,
            min_session_timeout_ms: None,
            max_session_timeout_ms: None,
            whitelist: None,
            jute_max_buffer_extra_size_bytes: None,
            servers: BTreeMap::new(),
            set_at: HashMap::new(),
            warnings: Vec::new(),
            config,
        }
    }

    /// Applies one setting. `key` may carry the `zookeeper.` prefix of the system-property spelling.
    pub(super) fn apply(&mut self, key: &str, value: &str, source: Source) -> Result<(), ConfigError> {
        let location = source.location();
        let name = key.strip_prefix("zookeeper.").unwrap_or(key);
        let v = Value {
            location,
            key,
            text: value,
        };
        let c = &mut self.config;
        match name {
            "dataDir" => self.data_dir = Some(v.path()?),
            "dataLogDir" => self.data_log_dir = Some(v.path()?),
            "clientPort" => c.client_port = v.optional_port()?,
            "clientPortAddress" => c.client_port_address = Some(v.non_empty()?),
            "clientPortListenBacklog" => {
                let backlog = v.int(-1, I32_MAX)?;
                c.client_port_listen_backlog = u32::try_from(backlog).ok();
            }
            "tickTime" => c.tick_time_ms = v.int(1, TICK_TIME_MS_MAX)? as u32,
            "maxClientCnxns" => {
                let count = v.int(i64::from(i32::MIN), I32_MAX)?;
                if count < 0 {
                    // ZooKeeper only limits when the value is > 0, so a negative value means unlimited.
                    self.warnings.push(format!(
                        "{location}: {key}: {value:?} is negative; treated as 0 (unlimited)"
                    ));
                }
                c.max_client_cnxns = count.max(0) as u32;
            }
            "minSessionTimeout" => self.min_session_timeout_ms = Some(v.session_timeout()?),
            "maxSessionTimeout" => self.max_session_timeout_ms = Some(v.session_timeout()?),
            "initLimit" => c.init_limit_ticks = v.optional_ticks()?,
            "syncLimit" => c.sync_limit_ticks = v.optional_ticks()?,
            "connectToLearnerMasterLimit" => c.connect_to_learner_master_limit_ticks = v.optional_ticks()?,
            "electionAlg" => {
                if v.int(i64::from(i32::MIN), I32_MAX)? != 3 {
                    return Err(v.error("is not supported; only electionAlg 3 (fast leader election) exists"));
                }
            }
            "quorumListenOnAllIPs" => c.quorum_listen_on_all_ips = v.boolean()?,
            "peerType" => {
                c.peer_type = LearnerType::parse(value)
                    .ok_or_else(|| v.error("is not a valid peer type (expected participant or observer)"))?;
            }
            "syncEnabled" => c.sync_enabled = v.boolean()?,
            "dynamicConfigFile" => c.dynamic_config_file = Some(v.path()?),
            "standaloneEnabled" => c.standalone_enabled = v.boolean()?,
            "reconfigEnabled" => c.reconfig_enabled = v.boolean()?,
            "localSessionsEnabled" => c.local_sessions_enabled = v.boolean()?,
            "localSessionsUpgradingEnabled" => c.local_sessions_upgrading_enabled = v.boolean()?,
            "observerMasterPort" => c.observer_master_port = v.optional_port()?,
            "multiAddress.enabled" => c.multi_address_enabled = v.boolean()?,
            "autopurge.snapRetainCount" => {
                let count = v.int(i64::from(i32::MIN), I32_MAX)?;
                if count < SNAP_RETAIN_COUNT_MIN {
                    // QuorumPeerConfig resets it with a warning: PurgeTxnLog never keeps fewer than 3.
                    self.warnings.push(format!(
                        "{location}: {key}: {value:?} is below the minimum; using {SNAP_RETAIN_COUNT_MIN}"
                    ));
                }
                c.autopurge_snap_retain_count = count.max(SNAP_RETAIN_COUNT_MIN) as u32;
            }
            // <= 0 means the purge task is not scheduled.
            "autopurge.purgeInterval" => {
                c.autopurge_purge_interval_hours = v.int(i64::from(i32::MIN), I32_MAX)?.max(0) as u32;
            }
            "metricsProvider.className" => c.metrics_provider_class_name = v.non_empty()?,
            "metricsProvider.httpHost" => c.metrics_provider_http_host = v.non_empty()?,
            "metricsProvider.httpPort" => c.metrics_provider_http_port = v.port()?,
            "metricsProvider.exportJvmInfo" => c.metrics_provider_export_jvm_info = v.boolean()?,
            "log.level" => c.log_level = v.non_empty()?,
            "log.format" => {
                let format = v.non_empty()?;
                if format != "text" && format != "json" {
                    return Err(v.error("must be text or json"));
                }
                c.log_format = format;
            }
            "slowRequestThresholdMs" => c.slow_request_threshold_ms = v.decode(0, i64::MAX)? as u64,

            // Section 6.2: read by ZooKeeper as `zookeeper.<key>` system properties (Integer.getInteger and
            // friends, hence `decode` syntax: 0x.., #.., leading 0 = octal).
            "4lw.commands.whitelist" => self.whitelist = Some(value.to_string()),
            "admin.enableServer" => c.admin_enable_server = v.boolean()?,
            "admin.serverAddress" => c.admin_server_address = v.non_empty()?,
            "admin.serverPort" => c.admin_server_port = v.decode(1, 65535)? as u16,
            "admin.idleTimeout" => c.admin_idle_timeout_ms = v.decode(1, I32_MAX)? as u32,
            "admin.commandURL" => c.admin_command_url = v.non_empty()?,
            "snapCount" => {
                let count = v.decode(i64::from(i32::MIN), I32_MAX)?;
                if count < SNAP_COUNT_MIN {
                    // SyncRequestProcessor resets it with a warning.
                    self.warnings.push(format!(
                        "{location}: {key}: {value:?} is below the minimum; using {SNAP_COUNT_MIN}"
                    ));
                }
                c.snap_count = count.max(SNAP_COUNT_MIN) as u32;
            }
            // <= 0 disables size-triggered snapshots / log rolls.
            "snapSizeLimitInKb" => {
                c.snap_size_limit_kb = u64::try_from(v.decode(i64::MIN, i64::MAX)?).ok().filter(|&kb| kb > 0)
            }
            "txnLogSizeLimitInKb" => {
                c.txn_log_size_limit_kb = u64::try_from(v.decode(i64::MIN, i64::MAX)?).ok().filter(|&kb| kb > 0);
            }
            "preAllocSize" => c.pre_alloc_size_kb = v.decode(1, i64::MAX)? as u64,
            "maxBatchSize" => c.max_batch_size = v.decode(1, I32_MAX)? as u32,
            "flushDelay" => c.flush_delay_ms = v.decode(0, i64::MAX)? as u64,
            "commitLogCount" => c.commit_log_count = v.decode(0, I32_MAX)? as u32,
            "snapshotSizeFactor" => c.snapshot_size_factor = v.float()?,
            "globalOutstandingLimit" => c.global_outstanding_limit = v.decode(1, I32_MAX)? as u32,
            "extendedTypesEnabled" => c.extended_types_enabled = v.boolean()?,
            "emulate353TTLNodes" => c.emulate_353_ttl_nodes = v.boolean()?,
            "forceSync" => c.force_sync = v.yes_no()?,
            "skipACL" => c.skip_acl = v.yes_no()?,
            "digest.enabled" => c.digest_enabled = v.boolean()?,
            "closeSessionTxn.enabled" => c.close_session_txn_enabled = v.boolean()?,
            "enforceQuota" => c.enforce_quota = v.boolean()?,
            "DigestAuthenticationProvider.superDigest" => c.super_digest = Some(v.super_digest(&mut self.warnings)?),
            "nio.sessionlessCnxnTimeout" => c.nio_sessionless_cnxn_timeout_ms = v.decode(1, I32_MAX)? as u32,
            "fsync.warningthresholdms" => c.fsync_warning_threshold_ms = v.decode(0, i64::MAX)? as u64,

            // Read by ZooKeeper only without the prefix (`-Djute.maxbuffer`); accepted here in both spellings.
            "jute.maxbuffer" => c.jute_max_buffer_bytes = v.decode(1, I32_MAX)? as u32,
            "jute.maxbuffer.extrasize" => self.jute_max_buffer_extra_size_bytes = Some(v.decode(0, I32_MAX)? as u32),
            "readonlymode.enabled" => c.read_only_mode_enabled = v.boolean()?,
            "znode.container.checkIntervalMs" => c.container_check_interval_ms = v.decode(1, I32_MAX)? as u32,
            "znode.container.maxPerMinute" => c.container_max_per_minute = v.decode(1, I32_MAX)? as u32,
            "znode.container.maxNeverUsedIntervalMs" => {
                c.container_max_never_used_interval_ms = v.decode(0, i64::MAX)? as u64;
            }

            _ => return self.apply_pattern(name, v, source),
        }
        self.set_at.insert(name.to_string(), location);
        Ok(())
    }

    /// Keys with a variable part (`server.N`, `group.N`, `weight.N`, `metricsProvider.x`) and the rest.
    fn apply_pattern(&mut self, name: &str, v: Value<'_>, source: Source) -> Result<(), ConfigError> {
        if let Some(id) = name.strip_prefix("server.") {
            let id = parse_id(id).ok_or_else(|| v.error("has a key whose server id is not a non-negative integer"))?;
            self.servers.insert(id, (v.text.to_string(), v.location));
        } else if let Some(id) = name.strip_prefix("group.") {
            let id = parse_id(id).ok_or_else(|| v.error("has a key whose group id is not a non-negative integer"))?;
            let members: Option<Vec<u64>> = v.text.split(':').map(|sid| parse_id(sid.trim())).collect();
            let members = members.ok_or_else(|| v.error("is not a ':'-separated list of server ids"))?;
            self.config.groups.insert(id, members);
        } else if let Some(id) = name.strip_prefix("weight.") {
            let id = parse_id(id).ok_or_else(|| v.error("has a key whose server id is not a non-negative integer"))?;
            self.config.weights.insert(id, v.int(0, i64::MAX)? as u64);
        } else if let Some(property) = name.strip_prefix("metricsProvider.") {
            // Passed to the provider without the prefix (QuorumPeerConfig.metricsProviderConfiguration).
            self.config
                .metrics_provider_properties
                .insert(property.to_string(), v.text.to_string());
        } else if IGNORED_KEYS.contains(&name) {
            // Accepted for compatibility; nothing to configure.
        } else if UNSUPPORTED_KEYS.contains(&name) || UNSUPPORTED_PREFIXES.iter().any(|prefix| name.starts_with(prefix))
        {
            if !v.text.eq_ignore_ascii_case("false") {
                self.warnings.push(format!(
                    "{}: {}: {:?} ignored; ferrokeeper does not support this feature",
                    v.location, v.key, v.text
                ));
            }
        } else if source != Source::SystemProperty {
            self.warnings
                .push(format!("{}: unknown key {:?} ignored", v.location, v.key));
        }
        Ok(())
    }

    /// Resolves derived defaults and cross-key rules; returns the config and the warnings.
    pub(super) fn finish(mut self) -> Result<(Config, Vec<String>), ConfigError> {
        let at = |set_at: &HashMap<String, Location>, key: &str| set_at.get(key).copied().unwrap_or(Location::File);
        let c = &mut self.config;

        c.data_dir = self
            .data_dir
            .ok_or_else(|| ConfigError::invalid(Location::File, "dataDir is not set"))?;
        c.data_log_dir = self.data_log_dir.unwrap_or_else(|| c.data_dir.clone());

        if c.client_port.is_none() && c.client_port_address.is_some() {
            return Err(ConfigError::invalid(
                at(&self.set_at, "clientPortAddress"),
                "clientPortAddress is set but clientPort is not set",
            ));
        }

        // QuorumPeerConfig: -1 (or absent) means 2 * tickTime and 20 * tickTime.
        let tick_time_ms = i64::from(c.tick_time_ms);
        let min = self
            .min_session_timeout_ms
            .filter(|&ms| ms != -1)
            .map_or(2 * tick_time_ms, i64::from);
        let max = self
            .max_session_timeout_ms
            .filter(|&ms| ms != -1)
            .map_or(20 * tick_time_ms, i64::from);
        if min > max {
            let location = [
                at(&self.set_at, "minSessionTimeout"),
                at(&self.set_at, "maxSessionTimeout"),
            ]
            .into_iter()
            .max_by_key(|location| match location {
                Location::Line(line) => *line,
                _ => 0,
            })
            .unwrap_or(Location::File);
            return Err(ConfigError::invalid(
                location,
                format!("minSessionTimeout ({min} ms) must not be larger than maxSessionTimeout ({max} ms)"),
            ));
        }
        c.min_session_timeout_ms = min as u32;
        c.max_session_timeout_ms = max as u32;

        // BinaryInputArchive: extrasize defaults to maxbuffer, with a floor of 1024.
        c.jute_max_buffer_extra_size_bytes = self
            .jute_max_buffer_extra_size_bytes
            .unwrap_or(c.jute_max_buffer_bytes)
            .max(1024);

        if let Some(list) = &self.whitelist {
            let (whitelist, unknown) = FourLetterWordWhitelist::parse(list);
            if !unknown.is_empty() {
                self.warnings.push(format!(
                    "{}: 4lw.commands.whitelist: unknown four-letter words {:?} ignored",
                    at(&self.set_at, "4lw.commands.whitelist"),
                    unknown
                ));
            }
            c.four_letter_word_whitelist = whitelist;
        }
        if c.read_only_mode_enabled {
            c.four_letter_word_whitelist.enable("isro");
        }

        if c.dynamic_config_file.is_some() {
            if let Some((_, location)) = self.servers.values().next() {
                return Err(ConfigError::invalid(
                    *location,
                    "server.N lines must be in the dynamicConfigFile",
                ));
            }
            self.warnings.push(format!(
                "{}: dynamicConfigFile is not supported; put server.N lines in zoo.cfg",
                at(&self.set_at, "dynamicConfigFile")
            ));
        }
        c.servers.clear();
        for (&id, (value, location)) in &self.servers {
            let spec = parse_server(id, value, c.multi_address_enabled)
                .map_err(|reason| ConfigError::value(*location, &format!("server.{id}"), value, reason))?;
            c.servers.insert(id, spec);
        }
        check_groups(c)?;
        check_members(c, &mut self.warnings)?;

        if c.is_quorum() {
            if c.init_limit_ticks.is_none() {
                return Err(ConfigError::invalid(
                    Location::File,
                    "initLimit is not set (required with server.N lines)",
                ));
            }
            if c.sync_limit_ticks.is_none() {
                return Err(ConfigError::invalid(
                    Location::File,
                    "syncLimit is not set (required with server.N lines)",
                ));
            }
        } else if c.client_port.is_none() {
            return Err(ConfigError::invalid(Location::File, "clientPort is not set"));
        }
        Ok((self.config, self.warnings))
    }
}

/// Port of the member-count rules of `QuorumPeerConfig.parseDynamicConfig`.
fn check_members(c: &Config, warnings: &mut Vec<String>) -> Result<(), ConfigError> {
    let participants = c
        .servers
        .values()
        .filter(|s| s.learner_type == LearnerType::Participant)
        .count();
    let observers = c.servers.len() - participants;
    let fail = |message: &str| Err(ConfigError::invalid(Location::File, message));
    if participants == 0 {
        if !c.standalone_enabled {
            return fail("standaloneEnabled=false requires at least one participant server.N line");
        }
        if observers > 0 {
            return fail("observers without participants is an invalid configuration");
        }
    } else if participants == 1 && c.standalone_enabled {
        // HBase writes one server line; ZooKeeper logs an error and runs standalone.
        warnings.push("zoo.cfg: only one server specified; running standalone (server.N ignored)".to_string());
        if observers > 0 {
            return fail("observers without a quorum is an invalid configuration");
        }
    } else if participants <= 2 {
        warnings.push("zoo.cfg: no server failure will be tolerated; you need at least 3 servers".to_string());
    } else if participants % 2 == 0 {
        warnings.push("zoo.cfg: non-optimal configuration, consider an odd number of servers".to_string());
    }
    Ok(())
}

/// `QuorumHierarchical`: a server may belong to one group only.
fn check_groups(c: &Config) -> Result<(), ConfigError> {
    let mut group_of: BTreeMap<u64, u64> = BTreeMap::new();
    for (&group, members) in &c.groups {
        for &sid in members {
            if let Some(previous) = group_of.insert(sid, group) {
                return Err(ConfigError::invalid(
                    Location::File,
                    format!("server {sid} is in more than one group (group.{previous} and group.{group})"),
                ));
            }
        }
    }
    Ok(())
}

/// Server and group ids: `Long.parseLong`, restricted to non-negative values.
fn parse_id(text: &str) -> Option<u64> {
    if text.starts_with('+') {
        return None;
    }
    text.parse().ok()
}

/// `Integer.decode`/`Long.decode` syntax: optional sign, then `0x`/`0X`/`#` hex, `0` octal, or decimal.
pub(super) fn parse_java_decode(text: &str) -> Option<i64> {
    let (negative, rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (radix, digits) = if let Some(hex) = rest.strip_prefix("0x").or_else(|| rest.strip_prefix("0X")) {
        (16, hex)
    } else if let Some(hex) = rest.strip_prefix('#') {
        (16, hex)
    } else if rest.len() > 1 && rest.starts_with('0') {
        (8, &rest[1..])
    } else {
        (10, rest)
    };
    if !digits.chars().next().is_some_and(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let magnitude = i128::from_str_radix(digits, radix).ok()?;
    i64::try_from(if negative { -magnitude } else { magnitude }).ok()
}

/// One value being converted, with what an error message needs.
#[derive(Clone, Copy)]
struct Value<'a> {
    location: Location,
    key: &'a str,
    text: &'a str,
}

impl Value<'_> {
    fn error(&self, reason: &str) -> ConfigError {
        ConfigError::value(self.location, self.key, self.text, reason)
    }

    fn range(&self, number: i64, min: i64, max: i64) -> Result<i64, ConfigError> {
        if (min..=max).contains(&number) {
            return Ok(number);
        }
        // Bounds that are only the width of ZooKeeper's Java type are not worth printing.
        let unbounded_below = min == i64::from(i32::MIN) || min == i64::MIN;
        let unbounded_above = max == I32_MAX || max == i64::MAX;
        let reason = if number > max && unbounded_above {
            format!("is too large (at most {max})")
        } else if number < min && unbounded_below {
            format!("is too small (at least {min})")
        } else if unbounded_above {
            format!("must be at least {min}")
        } else if unbounded_below {
            format!("must be at most {max}")
        } else {
            format!("must be between {min} and {max}")
        };
        Err(self.error(&reason))
    }

    /// `Integer.parseInt` (decimal, optional sign), then a range check.
    fn int(&self, min: i64, max: i64) -> Result<i64, ConfigError> {
        let number: i64 = self.text.parse().map_err(|_| self.error("is not a valid integer"))?;
        self.range(number, min, max)
    }

    /// `Integer.getInteger`/`Long.getLong` (`decode` syntax), then a range check.
    fn decode(&self, min: i64, max: i64) -> Result<i64, ConfigError> {
        let number = parse_java_decode(self.text).ok_or_else(|| self.error("is not a valid integer"))?;
        self.range(number, min, max)
    }

    fn float(&self) -> Result<f64, ConfigError> {
        match self.text.parse::<f64>() {
            Ok(number) if number.is_finite() => Ok(number),
            _ => Err(self.error("is not a valid number")),
        }
    }

    /// `QuorumPeerConfig.parseBoolean`: `true`/`false`, case-insensitive; anything else is an error.
    /// (ZooKeeper's system-property booleans silently read junk as false; an error is kinder.)
    fn boolean(&self) -> Result<bool, ConfigError> {
        if self.text.eq_ignore_ascii_case("true") {
            Ok(true)
        } else if self.text.eq_ignore_ascii_case("false") {
            Ok(false)
        } else {
            Err(self.error("is not a valid boolean (expected true or false)"))
        }
    }

    /// `forceSync` and `skipACL` are compared with `"yes"`/`"no"` by ZooKeeper.
    fn yes_no(&self) -> Result<bool, ConfigError> {
        if self.text.eq_ignore_ascii_case("yes") {
            Ok(true)
        } else if self.text.eq_ignore_ascii_case("no") {
            Ok(false)
        } else {
            Err(self.error("is not valid (expected yes or no)"))
        }
    }

    fn port(&self) -> Result<u16, ConfigError> {
        Ok(self.int(1, 65535)? as u16)
    }

    /// Client-style port where 0 means "not set" (`clientPort == 0` in QuorumPeerConfig).
    fn optional_port(&self) -> Result<Option<u16>, ConfigError> {
        let port = self.int(0, 65535)? as u16;
        Ok((port != 0).then_some(port))
    }

    /// Tick counts where 0 means "not set" (`initLimit == 0` is "initLimit is not set").
    fn optional_ticks(&self) -> Result<Option<u32>, ConfigError> {
        let ticks = self.int(0, I32_MAX)? as u32;
        Ok((ticks != 0).then_some(ticks))
    }

    /// `-1` means "derive from tickTime"; other negative values would be nonsense timeouts.
    fn session_timeout(&self) -> Result<i32, ConfigError> {
        let number: i64 = self.text.parse().map_err(|_| self.error("is not a valid integer"))?;
        if number == -1 || (0..=I32_MAX).contains(&number) {
            return Ok(number as i32);
        }
        Err(self.error("must be -1 (derive from tickTime) or a non-negative number of milliseconds"))
    }

    fn non_empty(&self) -> Result<String, ConfigError> {
        if self.text.is_empty() {
            return Err(self.error("must not be empty"));
        }
        Ok(self.text.to_string())
    }

    fn path(&self) -> Result<PathBuf, ConfigError> {
        Ok(PathBuf::from(self.non_empty()?))
    }

    /// `user:base64(sha1(user:password))`; DigestAuthenticationProvider compares it with the digest of the
    /// presented credentials, so a value without `:` can never match and is rejected.
    fn super_digest(&self, warnings: &mut Vec<String>) -> Result<String, ConfigError> {
        let Some((user, digest)) = self.text.split_once(':') else {
            return Err(self.error("is not of the form user:base64-digest"));
        };
        if user.is_empty() || digest.is_empty() {
            return Err(self.error("is not of the form user:base64-digest"));
        }
        let is_base64 = |c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '=';
        // A SHA-1 digest is 20 bytes, 28 base64 characters.
        if digest.len() != 28 || !digest.chars().all(is_base64) {
            warnings.push(format!(
                "{}: {}: digest {:?} is not 28 base64 characters (a SHA-1); no password will match it",
                self.location, self.key, digest
            ));
        }
        Ok(self.text.to_string())
    }
}
