//! zoo.cfg → validated, typed [`Config`].
//!
//! Owns: Java-properties parsing of zoo.cfg ([`properties`]), the meaning and defaults of every
//! ZooKeeper 3.8 key this server honours (PROTOCOL.md §6), `server.N` lines ([`ServerSpec`]), the 4lw
//! whitelist ([`FourLetterWordWhitelist`]), and `-Dkey=value` system properties passed in as strings.
//!
//! Must not touch: the environment (the caller reads `JVMFLAGS`/`SERVER_JVMFLAGS` and hands the strings
//! to [`system_properties_from_jvm_flags`]), `myid` (the caller reads it and asks
//! [`Config::client_address_for`]), sockets, DNS (hosts stay strings), clocks. The only IO is reading the
//! file in [`Config::load`]. Depends on std and `thiserror` only.
//!
//! Invariants of a `Config` returned by a constructor here: `tick_time_ms > 0`,
//! `min_session_timeout_ms <= max_session_timeout_ms` (both fit an i32), the whitelist allows `srvr`,
//! every `server.N` line parsed and its quorum and election ports differ, a standalone config has a
//! client port, a quorum config has `initLimit` and `syncLimit`.
//!
//! Precedence (later wins): defaults < system properties < zoo.cfg lines in file order. Every key is
//! accepted both plain (`snapCount`) and in its system-property spelling (`zookeeper.snapCount`), in the
//! file and as a `-D` flag. That is ZooKeeper's order: zoo.cfg keys it does not parse itself become
//! `System.setProperty("zookeeper." + key)` at startup, overriding `-D` flags. Unknown zoo.cfg keys are
//! warnings; unknown `-D` properties are ignored (JVM flags carry many unrelated ones).

mod error;
pub mod properties;
mod server;
mod settings;
mod whitelist;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use self::error::{ConfigError, Location};
pub use self::server::{HostPort, LearnerType, QuorumAddress, ServerSpec};
use self::settings::{Settings, Source};
pub use self::whitelist::{FourLetterWordWhitelist, KNOWN_FOUR_LETTER_WORDS};

/// ZooKeeper's default metrics provider class (no HTTP endpoint).
pub const DEFAULT_METRICS_PROVIDER_CLASS_NAME: &str = "org.apache.zookeeper.metrics.impl.DefaultMetricsProvider";

/// The Prometheus provider class; with it, metrics are served on `metricsProvider.httpHost:httpPort`.
pub const PROMETHEUS_METRICS_PROVIDER_CLASS_NAME: &str =
    "org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider";

/// A parsed configuration plus the warnings found on the way (unknown keys, clamped values, ...).
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The validated configuration.
    pub config: Config,
    /// Human-readable warnings, each starting with its location (`zoo.cfg line 7: ...`).
    pub warnings: Vec<String>,
}

/// Which defaults a configuration starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Base {
    /// ZooKeeper's own defaults: `tickTime=3000`, no client port, `dataDir` required.
    ZooKeeper,
    /// ferrokeeper without a config file: the zoo.cfg ZooKeeper ships (`tickTime=2000`, `clientPort=2181`)
    /// with `dataDir=./data`.
    Standalone,
}

/// A validated server configuration. Field names follow the zoo.cfg keys, with units last.
///
/// Fields are public so callers and tests can adjust them, but [`Config::apply_system_properties`]
/// rebuilds from the original text and forgets such edits.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    // ---- directories ----
    /// `dataDir`: snapshots, `myid`, epoch files.
    pub data_dir: PathBuf,
    /// `dataLogDir`: transaction logs; defaults to `data_dir`.
    pub data_log_dir: PathBuf,

    // ---- client connections ----
    /// `clientPort`; `None` when unset (0 in zoo.cfg also means unset). In a quorum the `server.N` line of
    /// this server may supply it instead, see [`Config::client_address_for`].
    pub client_port: Option<u16>,
    /// `clientPortAddress`: bind address; `None` = all interfaces.
    pub client_port_address: Option<String>,
    /// `clientPortListenBacklog`; `None` (ZooKeeper's -1) = OS default.
    pub client_port_listen_backlog: Option<u32>,
    /// `maxClientCnxns`: concurrent connections per client IP; 0 = unlimited.
    pub max_client_cnxns: u32,
    /// `tickTime`: the basic time unit, in ms.
    pub tick_time_ms: u32,
    /// `minSessionTimeout`; defaults to `2 * tick_time_ms`.
    pub min_session_timeout_ms: u32,
    /// `maxSessionTimeout`; defaults to `20 * tick_time_ms`.
    pub max_session_timeout_ms: u32,
    /// `globalOutstandingLimit`: requests in flight before the server stops reading client sockets.
    pub global_outstanding_limit: u32,
    /// `jute.maxbuffer`: largest client frame and the base of the per-field length cap (PROTOCOL.md §1.3).
    pub jute_max_buffer_bytes: u32,
    /// `jute.maxbuffer.extrasize`: added to `jute_max_buffer_bytes` for in-record length checks; defaults to
    /// `jute_max_buffer_bytes`, never below 1024.
    pub jute_max_buffer_extra_size_bytes: u32,
    /// `nio.sessionlessCnxnTimeout`: how long a connection may stay without a session (4lw, handshake).
    pub nio_sessionless_cnxn_timeout_ms: u32,
    /// `4lw.commands.whitelist` (plus `isro` when `readonlymode.enabled`).
    pub four_letter_word_whitelist: FourLetterWordWhitelist,
    /// `readonlymode.enabled`: serve reads when partitioned from the quorum.
    pub read_only_mode_enabled: bool,
    /// `localSessionsEnabled`.
    pub local_sessions_enabled: bool,
    /// `localSessionsUpgradingEnabled`.
    pub local_sessions_upgrading_enabled: bool,

    // ---- quorum ----
    /// `server.N` lines by id.
    pub servers: BTreeMap<u64, ServerSpec>,
    /// `group.N` lines (hierarchical quorums): group id → server ids.
    pub groups: BTreeMap<u64, Vec<u64>>,
    /// `weight.N` lines (hierarchical quorums): server id → weight.
    pub weights: BTreeMap<u64, u64>,
    /// `initLimit` in ticks; required in a quorum.
    pub init_limit_ticks: Option<u32>,
    /// `syncLimit` in ticks; required in a quorum.
    pub sync_limit_ticks: Option<u32>,
    /// `connectToLearnerMasterLimit` in ticks; `None` = use `init_limit_ticks`.
    pub connect_to_learner_master_limit_ticks: Option<u32>,
    /// `quorumListenOnAllIPs`: bind peer ports on all interfaces instead of the configured host.
    pub quorum_listen_on_all_ips: bool,
    /// `peerType`; the role in this server's `server.N` line wins when they disagree.
    pub peer_type: LearnerType,
    /// `syncEnabled`: observers log and snapshot transactions.
    pub sync_enabled: bool,
    /// `standaloneEnabled`: with at most one participant, run standalone.
    pub standalone_enabled: bool,
    /// `reconfigEnabled`: allow the reconfig operation.
    pub reconfig_enabled: bool,
    /// `observerMasterPort`: followers accept observers here.
    pub observer_master_port: Option<u16>,
    /// `multiAddress.enabled`: allow `|`-separated addresses in `server.N`.
    pub multi_address_enabled: bool,
    /// `dynamicConfigFile` (not supported; kept so it can be reported).
    pub dynamic_config_file: Option<PathBuf>,

    // ---- data tree and access control ----
    /// `extendedTypesEnabled`: TTL nodes and the extended session-id layout.
    pub extended_types_enabled: bool,
    /// `emulate353TTLNodes`: the 3.5.3 TTL bit layout.
    pub emulate_353_ttl_nodes: bool,
    /// `znode.container.checkIntervalMs`: how often containers and TTL nodes are checked.
    pub container_check_interval_ms: u32,
    /// `znode.container.maxPerMinute`: most container deletions per minute.
    pub container_max_per_minute: u32,
    /// `znode.container.maxNeverUsedIntervalMs`: delete never-used containers after this long; 0 = never.
    pub container_max_never_used_interval_ms: u64,
    /// `DigestAuthenticationProvider.superDigest`: `super:<base64 sha1>` of the super user.
    pub super_digest: Option<String>,
    /// `skipACL` (`yes`/`no`): disable ACL checks.
    pub skip_acl: bool,
    /// `digest.enabled`: write TxnDigest and snapshot digests.
    pub digest_enabled: bool,
    /// `closeSessionTxn.enabled`: CloseSessionTxn carries the ephemeral paths.
    pub close_session_txn_enabled: bool,
    /// `enforceQuota`: reject writes over quota instead of only logging.
    pub enforce_quota: bool,

    // ---- persistence ----
    /// `snapCount`: txns between snapshots (randomised by ZooKeeper within [snapCount/2, snapCount]).
    pub snap_count: u32,
    /// `snapSizeLimitInKb`: log bytes between snapshots; `None` = no size trigger.
    pub snap_size_limit_kb: Option<u64>,
    /// `txnLogSizeLimitInKb`: roll the txn log after this size; `None` = no limit.
    pub txn_log_size_limit_kb: Option<u64>,
    /// `preAllocSize`: txn log preallocation block, KiB.
    pub pre_alloc_size_kb: u64,
    /// `maxBatchSize`: most txns per group commit.
    pub max_batch_size: u32,
    /// `flushDelay`: wait this long to batch a group commit; 0 = flush when idle.
    pub flush_delay_ms: u64,
    /// `commitLogCount`: committed proposals kept in memory for DIFF sync.
    pub commit_log_count: u32,
    /// `snapshotSizeFactor`: prefer DIFF while the log to send is below this fraction of the snapshot.
    pub snapshot_size_factor: f64,
    /// `forceSync` (`yes`/`no`): fsync the txn log before acknowledging.
    pub force_sync: bool,
    /// `fsync.warningthresholdms`: warn when an fsync takes longer.
    pub fsync_warning_threshold_ms: u64,
    /// `autopurge.snapRetainCount`: snapshots kept by the purge task (at least 3).
    pub autopurge_snap_retain_count: u32,
    /// `autopurge.purgeInterval`: hours between purges; 0 = never.
    pub autopurge_purge_interval_hours: u32,

    // ---- admin server and metrics ----
    /// `admin.enableServer`.
    pub admin_enable_server: bool,
    /// `admin.serverAddress`.
    pub admin_server_address: String,
    /// `admin.serverPort`.
    pub admin_server_port: u16,
    /// `admin.idleTimeout`.
    pub admin_idle_timeout_ms: u32,
    /// `admin.commandURL`: path prefix of the command endpoints.
    pub admin_command_url: String,
    /// `metricsProvider.className`.
    pub metrics_provider_class_name: String,
    /// `metricsProvider.httpHost` (Prometheus provider).
    pub metrics_provider_http_host: String,
    /// `metricsProvider.httpPort` (Prometheus provider).
    pub metrics_provider_http_port: u16,
    /// `metricsProvider.exportJvmInfo` (Prometheus provider; no JVM here, kept for `conf`).
    pub metrics_provider_export_jvm_info: bool,
    /// Other `metricsProvider.<x>` keys, without the prefix.
    pub metrics_provider_properties: BTreeMap<String, String>,

    // ---- logging (ferrokeeper's own keys; ZooKeeper configures logback instead) ----
    /// `log.level`: a level (`info`, `debug`, …) or a `tracing` filter directive; `RUST_LOG` wins.
    pub log_level: String,
    /// `log.format`: `text` (default) or `json` (one JSON object per line).
    pub log_format: String,
    /// `slowRequestThresholdMs`: requests answered slower than this are logged at WARN with their op
    /// and path; 0 turns it off.
    pub slow_request_threshold_ms: u64,

    // ---- provenance (rebuild inputs for `apply_system_properties`) ----
    base: Base,
    raw_text: Option<String>,
    system_properties: Vec<(String, String)>,
}

impl Default for Config {
    /// ferrokeeper with no arguments: standalone on port 2181, `dataDir=./data`, `tickTime=2000` (the
    /// zoo.cfg ZooKeeper ships), whitelist `srvr`, everything else ZooKeeper's defaults.
    fn default() -> Self {
        Config::defaults(Base::Standalone)
    }
}

impl Config {
    fn defaults(base: Base) -> Self {
        let (tick_time_ms, client_port, data_dir) = match base {
            Base::ZooKeeper => (3000, None, PathBuf::new()),
            Base::Standalone => (2000, Some(2181), PathBuf::from("./data")),
        };
        Config {
            data_log_dir: data_dir.clone(),
            data_dir,
            client_port,
            client_port_address: None,
            client_port_listen_backlog: None,
            max_client_cnxns: 60,
            tick_time_ms,
            min_session_timeout_ms: 2 * tick_time_ms,
            max_session_timeout_ms: 20 * tick_time_ms,
            global_outstanding_limit: 1000,
            jute_max_buffer_bytes: 0xfffff,
            jute_max_buffer_extra_size_bytes: 0xfffff,
            nio_sessionless_cnxn_timeout_ms: 10_000,
            four_letter_word_whitelist: FourLetterWordWhitelist::srvr_only(),
            read_only_mode_enabled: false,
            local_sessions_enabled: false,
            local_sessions_upgrading_enabled: false,
            servers: BTreeMap::new(),
            groups: BTreeMap::new(),
            weights: BTreeMap::new(),
            init_limit_ticks: None,
            sync_limit_ticks: None,
            connect_to_learner_master_limit_ticks: None,
            quorum_listen_on_all_ips: false,
            peer_type: LearnerType::Participant,
            sync_enabled: true,
            standalone_enabled: true,
            reconfig_enabled: false,
            observer_master_port: None,
            multi_address_enabled: false,
            dynamic_config_file: None,
            extended_types_enabled: false,
            emulate_353_ttl_nodes: false,
            container_check_interval_ms: 60_000,
            container_max_per_minute: 10_000,
            container_max_never_used_interval_ms: 0,
            super_digest: None,
            skip_acl: false,
            digest_enabled: true,
            close_session_txn_enabled: true,
            enforce_quota: false,
            snap_count: 100_000,
            snap_size_limit_kb: Some(4_194_304),
            txn_log_size_limit_kb: None,
            pre_alloc_size_kb: 65_536,
            max_batch_size: 1000,
            flush_delay_ms: 0,
            commit_log_count: 500,
            snapshot_size_factor: 0.33,
            force_sync: true,
            fsync_warning_threshold_ms: 1000,
            autopurge_snap_retain_count: 3,
            autopurge_purge_interval_hours: 0,
            admin_enable_server: true,
            admin_server_address: "0.0.0.0".to_string(),
            admin_server_port: 8080,
            admin_idle_timeout_ms: 30_000,
            admin_command_url: "/commands".to_string(),
            metrics_provider_class_name: DEFAULT_METRICS_PROVIDER_CLASS_NAME.to_string(),
            metrics_provider_http_host: "0.0.0.0".to_string(),
            metrics_provider_http_port: 7000,
            metrics_provider_export_jvm_info: true,
            metrics_provider_properties: BTreeMap::new(),
            log_level: "info".to_string(),
            log_format: "text".to_string(),
            slow_request_threshold_ms: 1000,
            base,
            raw_text: None,
            system_properties: Vec::new(),
        }
    }

    /// Defaults, then `system_properties`, then the lines of `text`; then validation.
    fn build(
        base: Base,
        text: Option<String>,
        system_properties: Vec<(String, String)>,
    ) -> Result<Loaded, ConfigError> {
        let mut settings = Settings::new(Config::defaults(base), base == Base::Standalone);
        for (key, value) in &system_properties {
            settings.apply(key.trim(), properties::java_trim(value), Source::SystemProperty)?;
        }
        if let Some(text) = &text {
            for entry in properties::parse(text)? {
                settings.apply(&entry.key, &entry.value, Source::File(entry.line))?;
            }
        }
        let (mut config, warnings) = settings.finish()?;
        config.raw_text = text;
        config.system_properties = system_properties;
        Ok(Loaded { config, warnings })
    }

    /// Parses zoo.cfg text with ZooKeeper's defaults (`dataDir` required, `tickTime` 3000).
    pub fn parse(text: &str) -> Result<Loaded, ConfigError> {
        Config::build(Base::ZooKeeper, Some(text.to_string()), Vec::new())
    }

    /// Like [`Config::parse`], with `-D` system properties applied first (zoo.cfg lines override them).
    pub fn parse_with_system_properties(
        text: &str,
        system_properties: &[(String, String)],
    ) -> Result<Loaded, ConfigError> {
        Config::build(Base::ZooKeeper, Some(text.to_string()), system_properties.to_vec())
    }

    /// Reads and parses a zoo.cfg. The bytes are taken as UTF-8, or as ISO-8859-1 (what
    /// `Properties.load(InputStream)` assumes) if they are not valid UTF-8.
    pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
        Config::load_with_system_properties(path, &[])
    }

    /// Like [`Config::load`], with `-D` system properties applied first (zoo.cfg lines override them).
    pub fn load_with_system_properties(
        path: &Path,
        system_properties: &[(String, String)],
    ) -> Result<Loaded, ConfigError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(error) => error.into_bytes().iter().map(|&byte| char::from(byte)).collect(),
        };
        Config::build(Base::ZooKeeper, Some(text), system_properties.to_vec())
    }

    /// [`Config::default`] with `-D` system properties applied (for running without a zoo.cfg).
    pub fn default_with_system_properties(system_properties: &[(String, String)]) -> Result<Loaded, ConfigError> {
        Config::build(Base::Standalone, None, system_properties.to_vec())
    }

    /// Adds system properties and rebuilds this configuration from its defaults, all system properties
    /// given so far, and its original zoo.cfg text (which still wins over them). Field edits made since
    /// construction are lost. Returns every warning of the rebuilt configuration, the file's included;
    /// prefer [`Config::load_with_system_properties`] when the properties are known up front.
    pub fn apply_system_properties(
        &mut self,
        system_properties: &[(String, String)],
    ) -> Result<Vec<String>, ConfigError> {
        let mut all = self.system_properties.clone();
        all.extend_from_slice(system_properties);
        let loaded = Config::build(self.base, self.raw_text.clone(), all)?;
        *self = loaded.config;
        Ok(loaded.warnings)
    }

    /// The zoo.cfg text exactly as read (the `icfg` admin command prints it); empty without a file.
    pub fn raw_text(&self) -> &str {
        self.raw_text.as_deref().unwrap_or_default()
    }

    /// The system properties this configuration was built with.
    pub fn system_properties(&self) -> &[(String, String)] {
        &self.system_properties
    }

    /// Whether this runs as a quorum member (ZooKeeper's `isDistributed`): some `server.N` lines and
    /// either more than one participant or `standaloneEnabled=false`.
    pub fn is_quorum(&self) -> bool {
        let participants = self
            .servers
            .values()
            .filter(|s| s.learner_type == LearnerType::Participant)
            .count();
        !self.servers.is_empty() && (participants > 1 || !self.standalone_enabled)
    }

    /// The client listen address for the server whose `myid` is `server_id` (`None` = standalone).
    ///
    /// Port of `QuorumPeerConfig.setupClientPort`: the `;[host:]port` suffix of the server's own line wins;
    /// if `clientPort`/`clientPortAddress` are also set they must agree with it (only the port when
    /// `clientPortAddress` is a wildcard). `Ok(None)` means no client port at all.
    pub fn client_address_for(&self, server_id: Option<u64>) -> Result<Option<HostPort>, ConfigError> {
        let from_static = self.client_port.map(|port| HostPort {
            host: self
                .client_port_address
                .clone()
                .unwrap_or_else(|| "0.0.0.0".to_string()),
            port,
        });
        let from_line = server_id
            .and_then(|id| self.servers.get(&id))
            .and_then(|s| s.client_address.clone());
        match (from_static, from_line) {
            (Some(static_address), Some(line_address)) => {
                let agree = if static_address.is_wildcard() {
                    static_address.port == line_address.port
                } else {
                    static_address == line_address
                };
                if !agree {
                    return Err(ConfigError::invalid(
                        Location::File,
                        format!(
                            "client address for this server (id = {}) is {static_address} from clientPort but \
                             {line_address} in its server line",
                            server_id.unwrap_or_default()
                        ),
                    ));
                }
                Ok(Some(line_address))
            }
            (None, line_address @ Some(_)) => Ok(line_address),
            (static_address, None) => Ok(static_address),
        }
    }

    /// Every effective setting as `(zoo.cfg key, value)`, in a stable order, for `conf`-style output and
    /// debugging. Unset optional settings are omitted; `server.N` lines use the quorum-config form.
    pub fn effective_properties(&self) -> Vec<(String, String)> {
        fn opt<T: ToString>(value: &Option<T>) -> Option<String> {
            value.as_ref().map(ToString::to_string)
        }
        fn yes_no(value: bool) -> String {
            if value { "yes" } else { "no" }.to_string()
        }
        let path = |p: &Path| Some(p.display().to_string());
        let s = |value: &dyn ToString| Some(value.to_string());
        let pairs: Vec<(&str, Option<String>)> = vec![
            ("dataDir", path(&self.data_dir)),
            ("dataLogDir", path(&self.data_log_dir)),
            ("clientPort", opt(&self.client_port)),
            ("clientPortAddress", opt(&self.client_port_address)),
            (
                "clientPortListenBacklog",
                Some(
                    self.client_port_listen_backlog
                        .map_or("-1".to_string(), |b| b.to_string()),
                ),
            ),
            ("tickTime", s(&self.tick_time_ms)),
            ("maxClientCnxns", s(&self.max_client_cnxns)),
            ("minSessionTimeout", s(&self.min_session_timeout_ms)),
            ("maxSessionTimeout", s(&self.max_session_timeout_ms)),
            ("initLimit", opt(&self.init_limit_ticks)),
            ("syncLimit", opt(&self.sync_limit_ticks)),
            (
                "connectToLearnerMasterLimit",
                opt(&self.connect_to_learner_master_limit_ticks),
            ),
            ("electionAlg", s(&3)),
            ("quorumListenOnAllIPs", s(&self.quorum_listen_on_all_ips)),
            ("peerType", s(&self.peer_type.as_str())),
            ("syncEnabled", s(&self.sync_enabled)),
            ("standaloneEnabled", s(&self.standalone_enabled)),
            ("reconfigEnabled", s(&self.reconfig_enabled)),
            ("observerMasterPort", opt(&self.observer_master_port)),
            ("multiAddress.enabled", s(&self.multi_address_enabled)),
            ("dynamicConfigFile", self.dynamic_config_file.as_deref().and_then(path)),
            ("localSessionsEnabled", s(&self.local_sessions_enabled)),
            (
                "localSessionsUpgradingEnabled",
                s(&self.local_sessions_upgrading_enabled),
            ),
            ("readonlymode.enabled", s(&self.read_only_mode_enabled)),
            ("4lw.commands.whitelist", s(&self.four_letter_word_whitelist)),
            ("globalOutstandingLimit", s(&self.global_outstanding_limit)),
            ("jute.maxbuffer", s(&self.jute_max_buffer_bytes)),
            ("jute.maxbuffer.extrasize", s(&self.jute_max_buffer_extra_size_bytes)),
            ("nio.sessionlessCnxnTimeout", s(&self.nio_sessionless_cnxn_timeout_ms)),
            ("extendedTypesEnabled", s(&self.extended_types_enabled)),
            ("emulate353TTLNodes", s(&self.emulate_353_ttl_nodes)),
            ("znode.container.checkIntervalMs", s(&self.container_check_interval_ms)),
            ("znode.container.maxPerMinute", s(&self.container_max_per_minute)),
            (
                "znode.container.maxNeverUsedIntervalMs",
                s(&self.container_max_never_used_interval_ms),
            ),
            ("DigestAuthenticationProvider.superDigest", opt(&self.super_digest)),
            ("skipACL", Some(yes_no(self.skip_acl))),
            ("digest.enabled", s(&self.digest_enabled)),
            ("closeSessionTxn.enabled", s(&self.close_session_txn_enabled)),
            ("enforceQuota", s(&self.enforce_quota)),
            ("snapCount", s(&self.snap_count)),
            (
                "snapSizeLimitInKb",
                Some(self.snap_size_limit_kb.map_or("-1".to_string(), |kb| kb.to_string())),
            ),
            (
                "txnLogSizeLimitInKb",
                Some(self.txn_log_size_limit_kb.map_or("-1".to_string(), |kb| kb.to_string())),
            ),
            ("preAllocSize", s(&self.pre_alloc_size_kb)),
            ("maxBatchSize", s(&self.max_batch_size)),
            ("flushDelay", s(&self.flush_delay_ms)),
            ("commitLogCount", s(&self.commit_log_count)),
            ("snapshotSizeFactor", s(&self.snapshot_size_factor)),
            ("forceSync", Some(yes_no(self.force_sync))),
            ("fsync.warningthresholdms", s(&self.fsync_warning_threshold_ms)),
            ("autopurge.snapRetainCount", s(&self.autopurge_snap_retain_count)),
            ("autopurge.purgeInterval", s(&self.autopurge_purge_interval_hours)),
            ("admin.enableServer", s(&self.admin_enable_server)),
            ("admin.serverAddress", s(&self.admin_server_address)),
            ("admin.serverPort", s(&self.admin_server_port)),
            ("admin.idleTimeout", s(&self.admin_idle_timeout_ms)),
            ("admin.commandURL", s(&self.admin_command_url)),
            ("metricsProvider.className", s(&self.metrics_provider_class_name)),
            ("metricsProvider.httpHost", s(&self.metrics_provider_http_host)),
            ("metricsProvider.httpPort", s(&self.metrics_provider_http_port)),
            (
                "metricsProvider.exportJvmInfo",
                s(&self.metrics_provider_export_jvm_info),
            ),
            ("log.level", s(&self.log_level)),
            ("log.format", s(&self.log_format)),
            ("slowRequestThresholdMs", s(&self.slow_request_threshold_ms)),
        ];
        let mut out: Vec<(String, String)> = pairs
            .into_iter()
            .filter_map(|(key, value)| Some((key.to_string(), value?)))
            .collect();
        for (key, value) in &self.metrics_provider_properties {
            out.push((format!("metricsProvider.{key}"), value.clone()));
        }
        for (id, spec) in &self.servers {
            out.push((format!("server.{id}"), spec.to_string()));
        }
        for (id, members) in &self.groups {
            let members: Vec<String> = members.iter().map(u64::to_string).collect();
            out.push((format!("group.{id}"), members.join(":")));
        }
        for (id, weight) in &self.weights {
            out.push((format!("weight.{id}"), weight.to_string()));
        }
        out
    }
}

/// Turns one JVM argument `-Dkey=value` into `(key, value)`; `-Dkey` gives an empty value (as the JVM
/// does). Anything that is not a `-D` argument gives `None`.
pub fn system_property_from_arg(arg: &str) -> Option<(String, String)> {
    let definition = arg.strip_prefix("-D")?;
    if definition.is_empty() {
        return None;
    }
    let (key, value) = definition.split_once('=').unwrap_or((definition, ""));
    Some((key.to_string(), value.to_string()))
}

/// Extracts the `-D` system properties from a `JVMFLAGS`/`SERVER_JVMFLAGS` string. zkServer.sh expands
/// these unquoted, so the shell only splits them on whitespace (no quote removal); so does this.
pub fn system_properties_from_jvm_flags(flags: &str) -> Vec<(String, String)> {
    flags.split_whitespace().filter_map(system_property_from_arg).collect()
}
