//! Tests of the config module as a whole (syntax-only cases live in `properties.rs`).

use super::*;

const MINIMAL: &str = "dataDir=/var/lib/zk\nclientPort=2181\n";

fn parse(text: &str) -> Config {
    match Config::parse(text) {
        Ok(loaded) => loaded.config,
        Err(error) => panic!("unexpected error: {error}"),
    }
}

fn parse_err(text: &str) -> ConfigError {
    match Config::parse(text) {
        Ok(loaded) => panic!("expected an error, got {:?}", loaded.config),
        Err(error) => error,
    }
}

fn warnings(text: &str) -> Vec<String> {
    Config::parse(text).unwrap().warnings
}

fn props(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Asserts `text` fails with InvalidValue at `line` for `key`, and returns the message.
fn assert_invalid_value(text: &str, line: usize, key: &str) -> String {
    let error = parse_err(text);
    match &error {
        ConfigError::InvalidValue { location, key: k, .. } => {
            assert_eq!(*location, Location::Line(line), "{error}");
            assert_eq!(k, key, "{error}");
        }
        other => panic!("expected InvalidValue, got {other:?}"),
    }
    error.to_string()
}

// ---------------------------------------------------------------- real configs

/// The relevant lines of /etc/zookeeper/conf_example/zoo.cfg (Debian's zookeeper 3.8.0 package), comments kept.
const DEBIAN_EXAMPLE: &str = "\
# The number of milliseconds of each tick
tickTime=2000
# The number of ticks that the initial 
# synchronization phase can take
initLimit=10
# The number of ticks that can pass between 
# sending a request and getting an acknowledgement
syncLimit=5
# the directory where the snapshot is stored.
# do not use /tmp for storage, /tmp here is just 
# example sakes.
dataDir=/tmp/zookeeper
# the port at which the clients will connect
clientPort=2181
# the maximum number of client connections.
# increase this if you need to handle more clients
#maxClientCnxns=60
#
# The number of snapshots to retain in dataDir
#autopurge.snapRetainCount=3
# Purge task interval in hours
# Set to \"0\" to disable auto purge feature
#autopurge.purgeInterval=1

## Metrics Providers
#
# https://prometheus.io Metrics Exporter
#metricsProvider.className=org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider
#metricsProvider.httpHost=0.0.0.0
#metricsProvider.httpPort=7000
#metricsProvider.exportJvmInfo=true
";

#[test]
fn debian_example_config_parses() {
    let loaded = Config::parse(DEBIAN_EXAMPLE).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = loaded.config;
    assert_eq!(c.tick_time_ms, 2000);
    assert_eq!(c.init_limit_ticks, Some(10));
    assert_eq!(c.sync_limit_ticks, Some(5));
    assert_eq!(c.data_dir, PathBuf::from("/tmp/zookeeper"));
    assert_eq!(c.data_log_dir, PathBuf::from("/tmp/zookeeper"));
    assert_eq!(c.client_port, Some(2181));
    assert_eq!(c.max_client_cnxns, 60);
    assert_eq!((c.min_session_timeout_ms, c.max_session_timeout_ms), (4000, 40000));
    assert_eq!(c.metrics_provider_class_name, DEFAULT_METRICS_PROVIDER_CLASS_NAME);
    assert!(!c.is_quorum());
    assert_eq!(c.raw_text(), DEBIAN_EXAMPLE);
}

#[test]
fn debian_example_file_loads_when_installed() {
    let path = Path::new("/etc/zookeeper/conf_example/zoo.cfg");
    if !path.exists() {
        return;
    }
    let c = Config::load(path).unwrap().config;
    assert_eq!(c.client_port, Some(2181));
    assert_eq!(c.data_dir, PathBuf::from("/tmp/zookeeper"));
}

#[test]
fn load_reads_file_and_reports_missing_file() {
    let dir = std::env::temp_dir().join(format!("ferrokeeper-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("zoo.cfg");
    // Not UTF-8: read as ISO-8859-1 like Properties.load(InputStream).
    std::fs::write(&path, b"dataDir=/data/\xe9\nclientPort=2182\n").unwrap();
    let c = Config::load(&path).unwrap().config;
    assert_eq!(c.data_dir, PathBuf::from("/data/\u{e9}"));
    assert_eq!(c.client_port, Some(2182));
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(matches!(Config::load(&path), Err(ConfigError::Io { .. })));
}

// ---------------------------------------------------------------- defaults

#[test]
fn default_is_standalone_ferrokeeper() {
    let c = Config::default();
    assert_eq!(c.client_port, Some(2181));
    assert_eq!(c.data_dir, PathBuf::from("./data"));
    assert_eq!(c.data_log_dir, PathBuf::from("./data"));
    assert_eq!(c.tick_time_ms, 2000);
    assert_eq!((c.min_session_timeout_ms, c.max_session_timeout_ms), (4000, 40000));
    assert!(c.four_letter_word_whitelist.allows("srvr"));
    assert!(!c.four_letter_word_whitelist.allows("ruok"));
    assert!(!c.is_quorum());
    assert_eq!(c.raw_text(), "");
    assert_eq!(c.client_address_for(None).unwrap().unwrap().to_string(), "0.0.0.0:2181");
    // The same thing through the builder.
    let built = Config::default_with_system_properties(&[]).unwrap();
    assert!(built.warnings.is_empty());
    assert_eq!(built.config, c);
}

#[test]
fn zookeeper_defaults_apply_to_parsed_files() {
    let c = parse(MINIMAL);
    assert_eq!(c.tick_time_ms, 3000);
    assert_eq!((c.min_session_timeout_ms, c.max_session_timeout_ms), (6000, 60000));
    assert_eq!(c.max_client_cnxns, 60);
    assert_eq!(c.global_outstanding_limit, 1000);
    assert_eq!(c.jute_max_buffer_bytes, 1_048_575);
    assert_eq!(c.jute_max_buffer_extra_size_bytes, 1_048_575);
    assert_eq!(c.four_letter_word_whitelist, FourLetterWordWhitelist::srvr_only());
    assert!(!c.extended_types_enabled);
    assert!(!c.emulate_353_ttl_nodes);
    assert_eq!(c.container_check_interval_ms, 60_000);
    assert_eq!(c.container_max_per_minute, 10_000);
    assert_eq!(c.container_max_never_used_interval_ms, 0);
    assert_eq!(c.super_digest, None);
    assert!(!c.skip_acl);
    assert_eq!(c.snap_count, 100_000);
    assert_eq!(c.autopurge_snap_retain_count, 3);
    assert_eq!(c.autopurge_purge_interval_hours, 0);
    assert!(c.force_sync);
    assert!(!c.reconfig_enabled);
    assert!(c.standalone_enabled);
    assert!(c.admin_enable_server);
    assert_eq!(c.admin_server_address, "0.0.0.0");
    assert_eq!(c.admin_server_port, 8080);
    assert_eq!(c.metrics_provider_http_host, "0.0.0.0");
    assert_eq!(c.metrics_provider_http_port, 7000);
    assert!(!c.local_sessions_enabled);
    assert_eq!(c.nio_sessionless_cnxn_timeout_ms, 10_000);
    assert_eq!(c.fsync_warning_threshold_ms, 1000);
    assert_eq!(c.client_port_listen_backlog, None);
    assert!(c.digest_enabled);
    assert!(!c.read_only_mode_enabled);
}

#[test]
fn every_key_is_read() {
    let text = "\
dataDir=/d
dataLogDir=/l
clientPort=2281
clientPortAddress=127.0.0.1
clientPortListenBacklog=50
tickTime=1000
maxClientCnxns=0
minSessionTimeout=1500
maxSessionTimeout=90000
globalOutstandingLimit=5
jute.maxbuffer=4096
extendedTypesEnabled=true
emulate353TTLNodes=true
znode.container.checkIntervalMs=100
znode.container.maxPerMinute=7
znode.container.maxNeverUsedIntervalMs=9000
DigestAuthenticationProvider.superDigest=super:D/InIHSb7yEEbrWz8b9l71RjZJU=
skipACL=yes
snapCount=5000
autopurge.snapRetainCount=5
autopurge.purgeInterval=24
forceSync=no
reconfigEnabled=true
standaloneEnabled=false
admin.enableServer=false
admin.serverAddress=127.0.0.1
admin.serverPort=9090
metricsProvider.className=org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider
metricsProvider.httpHost=127.0.0.2
metricsProvider.httpPort=7001
metricsProvider.exportJvmInfo=false
metricsProvider.numWorkerThreads=4
localSessionsEnabled=true
nio.sessionlessCnxnTimeout=2000
fsync.warningthresholdms=50
readonlymode.enabled=true
digest.enabled=false
electionAlg=3
syncEnabled=false
peerType=observer
initLimit=10
syncLimit=5
connectToLearnerMasterLimit=20
server.1=a:2888:3888
server.2=b:2888:3888:observer
";
    let loaded = Config::parse(text).unwrap();
    let c = loaded.config;
    assert_eq!(c.data_log_dir, PathBuf::from("/l"));
    assert_eq!(c.client_port_address.as_deref(), Some("127.0.0.1"));
    assert_eq!(c.client_port_listen_backlog, Some(50));
    assert_eq!(c.tick_time_ms, 1000);
    assert_eq!(c.max_client_cnxns, 0);
    assert_eq!((c.min_session_timeout_ms, c.max_session_timeout_ms), (1500, 90000));
    assert_eq!(c.global_outstanding_limit, 5);
    assert_eq!(c.jute_max_buffer_bytes, 4096);
    assert_eq!(c.jute_max_buffer_extra_size_bytes, 4096);
    assert!(c.extended_types_enabled && c.emulate_353_ttl_nodes);
    assert_eq!(c.container_check_interval_ms, 100);
    assert_eq!(c.container_max_per_minute, 7);
    assert_eq!(c.container_max_never_used_interval_ms, 9000);
    assert_eq!(c.super_digest.as_deref(), Some("super:D/InIHSb7yEEbrWz8b9l71RjZJU="));
    assert!(c.skip_acl);
    assert_eq!(c.snap_count, 5000);
    assert_eq!(
        (c.autopurge_snap_retain_count, c.autopurge_purge_interval_hours),
        (5, 24)
    );
    assert!(!c.force_sync);
    assert!(c.reconfig_enabled && !c.standalone_enabled);
    assert!(!c.admin_enable_server);
    assert_eq!(
        (c.admin_server_address.as_str(), c.admin_server_port),
        ("127.0.0.1", 9090)
    );
    assert_eq!(c.metrics_provider_class_name, PROMETHEUS_METRICS_PROVIDER_CLASS_NAME);
    assert_eq!(
        (c.metrics_provider_http_host.as_str(), c.metrics_provider_http_port),
        ("127.0.0.2", 7001)
    );
    assert!(!c.metrics_provider_export_jvm_info);
    assert_eq!(
        c.metrics_provider_properties
            .get("numWorkerThreads")
            .map(String::as_str),
        Some("4")
    );
    assert!(c.local_sessions_enabled);
    assert_eq!(c.nio_sessionless_cnxn_timeout_ms, 2000);
    assert_eq!(c.fsync_warning_threshold_ms, 50);
    assert!(c.read_only_mode_enabled);
    assert!(c.four_letter_word_whitelist.allows("isro"), "readonlymode enables isro");
    assert!(!c.digest_enabled && !c.sync_enabled);
    assert_eq!(c.peer_type, LearnerType::Observer);
    assert_eq!(c.connect_to_learner_master_limit_ticks, Some(20));
    assert!(
        c.is_quorum(),
        "standaloneEnabled=false with one participant is a quorum"
    );
}

// ---------------------------------------------------------------- derived defaults

#[test]
fn session_timeouts_derive_from_tick_time() {
    let c = parse("dataDir=/d\nclientPort=1\ntickTime=500\n");
    assert_eq!((c.min_session_timeout_ms, c.max_session_timeout_ms), (1000, 10000));
    // -1 means "default" too.
    let c = parse("dataDir=/d\nclientPort=1\ntickTime=500\nminSessionTimeout=-1\nmaxSessionTimeout=-1\n");
    assert_eq!((c.min_session_timeout_ms, c.max_session_timeout_ms), (1000, 10000));
    // The derivation uses the final tickTime, whatever the order of the lines.
    let c = parse("maxSessionTimeout=7000\ndataDir=/d\nclientPort=1\ntickTime=100\n");
    assert_eq!((c.min_session_timeout_ms, c.max_session_timeout_ms), (200, 7000));
}

#[test]
fn data_log_dir_defaults_to_data_dir() {
    let c = parse("dataLogDir=/logs\ndataDir=/data\nclientPort=1\n");
    assert_eq!(
        (c.data_dir, c.data_log_dir),
        (PathBuf::from("/data"), PathBuf::from("/logs"))
    );
}

#[test]
fn clamped_values_warn() {
    let loaded =
        Config::parse("dataDir=/d\nclientPort=1\nautopurge.snapRetainCount=1\nsnapCount=1\nmaxClientCnxns=-5\n")
            .unwrap();
    assert_eq!(loaded.config.autopurge_snap_retain_count, 3);
    assert_eq!(loaded.config.snap_count, 2);
    assert_eq!(loaded.config.max_client_cnxns, 0);
    assert_eq!(loaded.warnings.len(), 3, "{:?}", loaded.warnings);
    assert!(
        loaded.warnings[0].starts_with("zoo.cfg line 3: autopurge.snapRetainCount"),
        "{:?}",
        loaded.warnings
    );
    // purgeInterval <= 0 just means "off".
    assert_eq!(
        parse("dataDir=/d\nclientPort=1\nautopurge.purgeInterval=-3\n").autopurge_purge_interval_hours,
        0
    );
}

#[test]
fn zero_means_unset_for_client_port_and_limits() {
    let error = parse_err("dataDir=/d\nclientPort=0\n");
    assert_eq!(error.to_string(), "zoo.cfg: clientPort is not set");
    let c = parse("dataDir=/d\nclientPort=1\ninitLimit=0\n");
    assert_eq!(c.init_limit_ticks, None);
}

#[test]
fn jute_extrasize_defaults_and_floor() {
    let c = parse("dataDir=/d\nclientPort=1\njute.maxbuffer=100\n");
    assert_eq!(
        (c.jute_max_buffer_bytes, c.jute_max_buffer_extra_size_bytes),
        (100, 1024)
    );
    let c = parse("dataDir=/d\nclientPort=1\njute.maxbuffer.extrasize=5000\n");
    assert_eq!(c.jute_max_buffer_extra_size_bytes, 5000);
}

#[test]
fn integer_syntax_of_system_property_keys() {
    // Integer.getInteger uses Integer.decode: hex, '#', octal.
    let c = parse("dataDir=/d\nclientPort=1\njute.maxbuffer=0xfffff\nsnapCount=#10\nglobalOutstandingLimit=010\n");
    assert_eq!(c.jute_max_buffer_bytes, 1_048_575);
    assert_eq!(c.snap_count, 16);
    assert_eq!(c.global_outstanding_limit, 8);
    // zoo.cfg keys use Integer.parseInt: decimal only.
    assert_invalid_value("dataDir=/d\nclientPort=0x10\n", 2, "clientPort");
    assert_eq!(settings::parse_java_decode("-0x10"), Some(-16));
    assert_eq!(settings::parse_java_decode("0"), Some(0));
    assert_eq!(settings::parse_java_decode("+7"), Some(7));
    for bad in ["", "0x", "#", "0x-1", "09", "1e3", " 1", "--1"] {
        assert_eq!(settings::parse_java_decode(bad), None, "{bad:?}");
    }
}

// ---------------------------------------------------------------- spellings and precedence

#[test]
fn both_spellings_are_accepted() {
    let c = parse(
        "dataDir=/d\nclientPort=1\nzookeeper.snapCount=42\nzookeeper.extendedTypesEnabled=true\n\
         zookeeper.4lw.commands.whitelist=ruok\nzookeeper.jute.maxbuffer=2048\nzookeeper.tickTime=1000\n\
         zookeeper.DigestAuthenticationProvider.superDigest=super:D/InIHSb7yEEbrWz8b9l71RjZJU=\n\
         zookeeper.znode.container.checkIntervalMs=5\n",
    );
    assert_eq!(c.snap_count, 42);
    assert!(c.extended_types_enabled);
    assert!(c.four_letter_word_whitelist.allows("ruok"));
    assert_eq!(c.jute_max_buffer_bytes, 2048);
    assert_eq!(c.tick_time_ms, 1000);
    assert!(c.super_digest.is_some());
    assert_eq!(c.container_check_interval_ms, 5);
}

#[test]
fn later_line_wins_between_spellings() {
    assert_eq!(
        parse("dataDir=/d\nclientPort=1\nsnapCount=10\nzookeeper.snapCount=20\n").snap_count,
        20
    );
    assert_eq!(
        parse("dataDir=/d\nclientPort=1\nzookeeper.snapCount=20\nsnapCount=10\n").snap_count,
        10
    );
    assert_eq!(parse("dataDir=/d\nclientPort=1\nclientPort=2\n").client_port, Some(2));
}

#[test]
fn system_properties_apply_under_the_file() {
    let system = props(&[
        ("zookeeper.snapCount", "7"),
        ("jute.maxbuffer", "2048"),
        ("zookeeper.extendedTypesEnabled", "true"),
        ("zookeeper.4lw.commands.whitelist", "*"),
        ("java.net.preferIPv4Stack", "true"),
        ("zookeeper.log.dir", "/var/log/zookeeper"),
    ]);
    let loaded = Config::parse_with_system_properties("dataDir=/d\nclientPort=1\nsnapCount=9\n", &system).unwrap();
    assert!(
        loaded.warnings.is_empty(),
        "unknown -D properties are silent: {:?}",
        loaded.warnings
    );
    let c = loaded.config;
    assert_eq!(
        c.snap_count, 9,
        "zoo.cfg overrides -D like ZooKeeper's System.setProperty"
    );
    assert_eq!(c.jute_max_buffer_bytes, 2048);
    assert!(c.extended_types_enabled);
    assert!(c.four_letter_word_whitelist.allows("mntr"));
    assert_eq!(c.system_properties(), system.as_slice());
}

#[test]
fn apply_system_properties_rebuilds() {
    let mut c = Config::parse("dataDir=/d\nclientPort=1\ntickTime=1000\nsnapCount=9\n")
        .unwrap()
        .config;
    let warnings = c
        .apply_system_properties(&props(&[
            ("zookeeper.tickTime", "3000"),
            ("zookeeper.superDigestJunk", "x"),
        ]))
        .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(c.tick_time_ms, 1000, "the file still wins");
    c.apply_system_properties(&props(&[("zookeeper.skipACL", "yes"), ("zookeeper.snapCount", "5")]))
        .unwrap();
    assert!(c.skip_acl);
    assert_eq!(c.snap_count, 9);
    assert_eq!(c.system_properties().len(), 4);

    // On the default config, properties change derived values too.
    let mut c = Config::default();
    c.apply_system_properties(&props(&[
        ("zookeeper.tickTime", "100"),
        ("zookeeper.admin.serverPort", "0x1f90"),
    ]))
    .unwrap();
    assert_eq!(
        (c.tick_time_ms, c.min_session_timeout_ms, c.max_session_timeout_ms),
        (100, 200, 2000)
    );
    assert_eq!(c.admin_server_port, 8080);
    assert_eq!(c.client_port, Some(2181));
}

#[test]
fn invalid_system_property_is_an_error() {
    let error = Config::default_with_system_properties(&props(&[("zookeeper.snapCount", "many")])).unwrap_err();
    assert_eq!(
        error.to_string(),
        "system property: zookeeper.snapCount: \"many\" is not a valid integer"
    );
}

#[test]
fn jvm_flags_parsing() {
    let flags = "-Xmx512m -Dzookeeper.extendedTypesEnabled=true  -Djute.maxbuffer=4194304\t-Dflag \
                 -Dzookeeper.DigestAuthenticationProvider.superDigest=super:abc= -D -cp x.jar";
    assert_eq!(
        system_properties_from_jvm_flags(flags),
        props(&[
            ("zookeeper.extendedTypesEnabled", "true"),
            ("jute.maxbuffer", "4194304"),
            ("flag", ""),
            ("zookeeper.DigestAuthenticationProvider.superDigest", "super:abc="),
        ])
    );
    assert_eq!(
        system_property_from_arg("-Da=b=c"),
        Some(("a".to_string(), "b=c".to_string()))
    );
    assert_eq!(system_property_from_arg("-Xss1m"), None);
}

// ---------------------------------------------------------------- unknown keys

#[test]
fn unknown_keys_are_warnings() {
    let loaded =
        Config::parse("dataDir=/d\nclientPort=1\nfoo.bar=1\nzookeeper.nonsense=2\njvm.pause.monitor=true\n").unwrap();
    assert_eq!(
        loaded.warnings,
        vec![
            "zoo.cfg line 3: unknown key \"foo.bar\" ignored".to_string(),
            "zoo.cfg line 4: unknown key \"zookeeper.nonsense\" ignored".to_string(),
        ]
    );
}

#[test]
fn unsupported_features_warn_unless_false() {
    let w = warnings("dataDir=/d\nclientPort=1\nsslQuorum=false\nsslQuorum=true\nssl.keyStore.location=/k\n");
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[0].starts_with("zoo.cfg line 4: sslQuorum"), "{w:?}");
    assert!(w[1].starts_with("zoo.cfg line 5: ssl.keyStore.location"), "{w:?}");
}

// ---------------------------------------------------------------- validation errors

#[test]
fn invalid_integer_message_names_line_key_and_value() {
    let message = assert_invalid_value("dataDir=/d\n\n# c\ntickTime=abc\n", 4, "tickTime");
    assert_eq!(message, "zoo.cfg line 4: tickTime: \"abc\" is not a valid integer");
}

#[test]
fn every_validated_key_rejects_bad_values() {
    let cases: &[(&str, &str)] = &[
        ("tickTime", "0"),
        ("tickTime", "-5"),
        ("tickTime", "200000000"),
        ("tickTime", "1.5"),
        ("clientPort", "65536"),
        ("clientPort", "-1"),
        ("clientPortAddress", ""),
        ("clientPortListenBacklog", "-2"),
        ("maxClientCnxns", "lots"),
        ("minSessionTimeout", "-2"),
        ("maxSessionTimeout", "x"),
        ("initLimit", "-1"),
        ("syncLimit", "ten"),
        ("electionAlg", "1"),
        ("peerType", "leader"),
        ("standaloneEnabled", "yes"),
        ("reconfigEnabled", "1"),
        ("localSessionsEnabled", "on"),
        ("extendedTypesEnabled", "enabled"),
        ("zookeeper.extendedTypesEnabled", "enabled"),
        ("emulate353TTLNodes", "yes"),
        ("forceSync", "true"),
        ("skipACL", "false"),
        ("readonlymode.enabled", "no"),
        ("snapCount", "x"),
        ("globalOutstandingLimit", "0"),
        ("jute.maxbuffer", "0"),
        ("jute.maxbuffer", "big"),
        ("znode.container.checkIntervalMs", "0"),
        ("znode.container.maxPerMinute", "-1"),
        ("znode.container.maxNeverUsedIntervalMs", "-1"),
        ("DigestAuthenticationProvider.superDigest", "nocolon"),
        ("DigestAuthenticationProvider.superDigest", "super:"),
        ("autopurge.snapRetainCount", "x"),
        ("autopurge.purgeInterval", "1h"),
        ("admin.enableServer", "no"),
        ("admin.serverPort", "0"),
        ("admin.serverPort", "70000"),
        ("admin.serverAddress", ""),
        ("metricsProvider.httpPort", "port"),
        ("metricsProvider.className", ""),
        ("nio.sessionlessCnxnTimeout", "0"),
        ("fsync.warningthresholdms", "-1"),
        ("snapshotSizeFactor", "NaN"),
        ("dataDir", ""),
        ("server.x", "a:1:2"),
        ("server.-1", "a:1:2"),
        ("group.1", "1:x"),
        ("weight.1", "-1"),
    ];
    for (key, value) in cases {
        let text = format!("dataDir=/d\nclientPort=2181\n{key}={value}\n");
        let message = assert_invalid_value(&text, 3, key);
        assert!(
            message.starts_with(&format!("zoo.cfg line 3: {key}: {value:?} ")),
            "{message}"
        );
    }
}

#[test]
fn range_messages() {
    let message = assert_invalid_value("dataDir=/d\nclientPort=1\ntickTime=-5\n", 3, "tickTime");
    assert!(message.ends_with("must be between 1 and 107374182"), "{message}");
    let message = assert_invalid_value(
        "dataDir=/d\nclientPort=1\nglobalOutstandingLimit=0\n",
        3,
        "globalOutstandingLimit",
    );
    assert!(message.ends_with("must be at least 1"), "{message}");
    let message = assert_invalid_value("dataDir=/d\nclientPort=1\nsnapCount=3000000000\n", 3, "snapCount");
    assert!(message.ends_with("is too large (at most 2147483647)"), "{message}");
    let message = assert_invalid_value("dataDir=/d\nclientPort=1\nclientPort=70000\n", 3, "clientPort");
    assert!(message.ends_with("must be between 0 and 65535"), "{message}");
}

#[test]
fn booleans_are_case_insensitive() {
    let c = parse("dataDir=/d\nclientPort=1\nextendedTypesEnabled=TRUE\nforceSync=No\nskipACL=YES\n");
    assert!(c.extended_types_enabled && !c.force_sync && c.skip_acl);
}

#[test]
fn min_session_timeout_above_max_is_an_error() {
    let error = parse_err("dataDir=/d\nclientPort=1\nminSessionTimeout=50000\nmaxSessionTimeout=40000\n");
    assert_eq!(
        error.to_string(),
        "zoo.cfg line 4: minSessionTimeout (50000 ms) must not be larger than maxSessionTimeout (40000 ms)"
    );
    // Against a derived default: reported at the explicit key's line.
    let error = parse_err("dataDir=/d\nclientPort=1\ntickTime=1000\nminSessionTimeout=30000\n");
    assert!(
        error
            .to_string()
            .starts_with("zoo.cfg line 4: minSessionTimeout (30000 ms)"),
        "{error}"
    );
}

#[test]
fn missing_and_inconsistent_keys() {
    assert_eq!(parse_err("clientPort=1\n").to_string(), "zoo.cfg: dataDir is not set");
    assert_eq!(parse_err("dataDir=/d\n").to_string(), "zoo.cfg: clientPort is not set");
    assert_eq!(
        parse_err("dataDir=/d\nclientPortAddress=127.0.0.1\n").to_string(),
        "zoo.cfg line 2: clientPortAddress is set but clientPort is not set"
    );
    let quorum = "dataDir=/d\nclientPort=1\nserver.1=a:1:2\nserver.2=b:1:2\nserver.3=c:1:2\n";
    assert_eq!(
        parse_err(quorum).to_string(),
        "zoo.cfg: initLimit is not set (required with server.N lines)"
    );
    assert_eq!(
        parse_err(&format!("{quorum}initLimit=5\n")).to_string(),
        "zoo.cfg: syncLimit is not set (required with server.N lines)"
    );
    assert!(Config::parse(&format!("{quorum}initLimit=5\nsyncLimit=2\n")).is_ok());
}

#[test]
fn malformed_escape_is_a_syntax_error_with_line() {
    let error = parse_err("dataDir=/d\nclientPort=1\ndataLogDir=C:\\u00zz\n");
    assert_eq!(error.to_string(), "zoo.cfg line 3: malformed \\uxxxx encoding");
}

// ---------------------------------------------------------------- syntax through the whole pipeline

#[test]
fn syntax_variants_reach_the_config() {
    let text = "  # comment\n! comment\ndataDir : /var/zk\\\n   /data\nclientPort 2181\ntickTime\t=\t1000   \n\
                4lw.commands.whitelist = stat, \\\n   ruok , conf\nserver.1 = [::1]\\:2888:3888\n";
    let c = parse(text);
    assert_eq!(c.data_dir, PathBuf::from("/var/zk/data"));
    assert_eq!(c.client_port, Some(2181));
    assert_eq!(c.tick_time_ms, 1000);
    for cmd in ["stat", "ruok", "conf", "srvr"] {
        assert!(c.four_letter_word_whitelist.allows(cmd), "{cmd}");
    }
    assert_eq!(c.servers[&1].addresses[0].host, "::1");
}

#[test]
fn crlf_files_report_physical_lines() {
    let error = parse_err("dataDir=/d\r\n\r\nclientPort=1\r\ntickTime=x\r\n");
    assert_eq!(
        error.to_string(),
        "zoo.cfg line 4: tickTime: \"x\" is not a valid integer"
    );
}

// ---------------------------------------------------------------- server.N

fn three_servers(extra: &str) -> String {
    format!("dataDir=/d\nclientPort=2181\ninitLimit=10\nsyncLimit=5\n{extra}")
}

#[test]
fn server_lines_parse_fully() {
    let text = three_servers(
        "server.1=zk1.example.com:2888:3888\nserver.2=10.0.0.2:2888:3888:participant;2182\n\
         server.3=[2001:db8::3]:2888:3888:observer;[::1]:2183\nserver.4=zk4:2888:3888:PARTICIPANT;0.0.0.0:2184\n",
    );
    let c = parse(&text);
    assert!(c.is_quorum());
    let s1 = &c.servers[&1];
    assert_eq!(
        s1,
        &ServerSpec {
            id: 1,
            addresses: vec![QuorumAddress {
                host: "zk1.example.com".to_string(),
                quorum_port: 2888,
                election_port: 3888,
            }],
            learner_type: LearnerType::Participant,
            client_address: None,
        }
    );
    assert_eq!(s1.to_string(), "zk1.example.com:2888:3888:participant");
    let s2 = &c.servers[&2];
    assert_eq!(
        s2.client_address,
        Some(HostPort {
            host: "0.0.0.0".to_string(),
            port: 2182
        })
    );
    assert_eq!(s2.to_string(), "10.0.0.2:2888:3888:participant;0.0.0.0:2182");
    let s3 = &c.servers[&3];
    assert_eq!(s3.learner_type, LearnerType::Observer);
    assert_eq!(s3.addresses[0].host, "2001:db8::3");
    assert_eq!(
        s3.client_address,
        Some(HostPort {
            host: "::1".to_string(),
            port: 2183
        })
    );
    assert_eq!(s3.to_string(), "[2001:db8::3]:2888:3888:observer;[::1]:2183");
    assert_eq!(c.servers[&4].learner_type, LearnerType::Participant);
    assert_eq!(LearnerType::Observer.ordinal(), 1);
}

#[test]
fn server_line_errors() {
    let cases: &[(&str, &str)] = &[
        ("a:2888:2888", "must differ"),
        ("a:2888", "does not have the form"),
        ("a:1:2:observer:x", "does not have the form"),
        ("a:1:2:leader", "unrecognised peer type"),
        ("a:x:2", "invalid quorum port"),
        ("a:1:70000", "invalid election port"),
        ("a:0:2", "invalid quorum port"),
        (":1:2", "does not have the form"),
        ("[::1:1:2", "no matching ']'"),
        ("[]:1:2", "empty IPv6 address"),
        ("[::1]1:2", "does not have ':' after ']'"),
        ("::1:2888:3888", "does not have the form"),
        ("a:1:2;x", "invalid client port"),
        ("a:1:2;h:1:2", "does not have the form"),
        ("a:1:2;1;2", "does not have the form"),
        ("a:1:2|b:3:4", "multiAddress.enabled"),
    ];
    for (spec, reason) in cases {
        let text = three_servers(&format!("server.7={spec}\n"));
        let message = assert_invalid_value(&text, 5, "server.7");
        assert!(message.contains(reason), "{spec}: {message}");
    }
}

#[test]
fn multi_address_servers() {
    let c = parse(&three_servers(
        "server.1=a:1:2|b:3:4:observer\nserver.2=c:1:2\nserver.3=d:1:2\nmultiAddress.enabled=true\n",
    ));
    assert_eq!(c.servers[&1].addresses.len(), 2);
    assert_eq!(c.servers[&1].learner_type, LearnerType::Observer);
    assert_eq!(c.servers[&1].to_string(), "a:1:2|b:3:4:observer");
    let error = parse_err(&three_servers(
        "multiAddress.enabled=true\nserver.1=a:1:2:observer|b:3:4:participant\nserver.2=c:1:2\n",
    ));
    assert!(error.to_string().contains("different roles"), "{error}");
}

#[test]
fn member_count_rules() {
    // One participant with standaloneEnabled: standalone, with a warning (ZooKeeper's HBase case).
    let loaded = Config::parse("dataDir=/d\nclientPort=1\nserver.1=a:1:2\n").unwrap();
    assert!(!loaded.config.is_quorum());
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    // Two participants: a quorum that tolerates no failure.
    let loaded = Config::parse(&three_servers("server.1=a:1:2\nserver.2=b:1:2\n")).unwrap();
    assert!(loaded.config.is_quorum());
    assert!(
        loaded.warnings[0].contains("no server failure"),
        "{:?}",
        loaded.warnings
    );
    // Observers need participants.
    let error = parse_err("dataDir=/d\nclientPort=1\nserver.1=a:1:2:observer\n");
    assert!(error.to_string().contains("observers without participants"), "{error}");
    let error = parse_err("dataDir=/d\nclientPort=1\nserver.1=a:1:2\nserver.2=b:1:2:observer\n");
    assert!(error.to_string().contains("observers without a quorum"), "{error}");
    // standaloneEnabled=false needs at least one participant.
    let error = parse_err("dataDir=/d\nclientPort=1\nstandaloneEnabled=false\n");
    assert!(error.to_string().contains("at least one participant"), "{error}");
}

#[test]
fn groups_and_weights() {
    let c = parse(&three_servers(
        "server.1=a:1:2\nserver.2=b:1:2\nserver.3=c:1:2\ngroup.1=1:2\ngroup.2=3\nweight.1=1\nweight.3=0\n",
    ));
    assert_eq!(c.groups[&1], vec![1, 2]);
    assert_eq!(c.weights[&3], 0);
    let error = parse_err(&three_servers(
        "server.1=a:1:2\nserver.2=b:1:2\ngroup.1=1:2\ngroup.2=2\n",
    ));
    assert!(error.to_string().contains("more than one group"), "{error}");
}

#[test]
fn dynamic_config_file_conflicts_with_server_lines() {
    let error = parse_err("dataDir=/d\nclientPort=1\ndynamicConfigFile=/x\nserver.1=a:1:2\n");
    assert_eq!(
        error.to_string(),
        "zoo.cfg line 4: server.N lines must be in the dynamicConfigFile"
    );
    let loaded = Config::parse("dataDir=/d\nclientPort=1\ndynamicConfigFile=/x\n").unwrap();
    assert_eq!(loaded.warnings.len(), 1);
}

#[test]
fn client_address_resolution() {
    let c = parse(&three_servers(
        "server.1=a:1:2;3000\nserver.2=b:1:2\nserver.3=c:1:2;10.0.0.3:2181\nclientPortAddress=10.0.0.3\n",
    ));
    // A wildcard line address with a different port than clientPort conflicts.
    assert!(c.client_address_for(Some(1)).is_err());
    // No client part in the line: clientPort/clientPortAddress.
    assert_eq!(
        c.client_address_for(Some(2)).unwrap().unwrap().to_string(),
        "10.0.0.3:2181"
    );
    // Both given and equal.
    assert_eq!(
        c.client_address_for(Some(3)).unwrap().unwrap().to_string(),
        "10.0.0.3:2181"
    );
    // Only the line gives one.
    let c = parse("dataDir=/d\ninitLimit=1\nsyncLimit=1\nserver.1=a:1:2;[::1]:3000\nserver.2=b:1:2\n");
    assert_eq!(
        c.client_address_for(Some(1)).unwrap().unwrap().to_string(),
        "[::1]:3000"
    );
    assert_eq!(c.client_address_for(Some(2)).unwrap(), None);
    assert!(c.client_address_for(Some(1)).unwrap().is_some_and(|a| !a.is_wildcard()));
}

// ---------------------------------------------------------------- whitelist

#[test]
fn whitelist_semantics() {
    let (w, unknown) = FourLetterWordWhitelist::parse(" stat ,ruok,, bogus ");
    assert!(w.allows("stat") && w.allows("ruok") && w.allows("srvr"));
    assert!(!w.allows("mntr") && !w.allows("STAT"));
    assert_eq!(unknown, vec!["bogus".to_string()]);
    assert_eq!(w.to_string(), "bogus,ruok,srvr,stat");

    let (w, _) = FourLetterWordWhitelist::parse("ruok, *");
    assert!(w.allows_all());
    for cmd in KNOWN_FOUR_LETTER_WORDS {
        assert!(w.allows(cmd), "{cmd}");
    }
    assert!(!w.allows("xyzw"));
    assert_eq!(w.to_string(), "*");

    let (w, _) = FourLetterWordWhitelist::parse("");
    assert_eq!(w, FourLetterWordWhitelist::srvr_only());
    assert!(w.allows("srvr") && !w.allows("isro"));
    assert_eq!(FourLetterWordWhitelist::default(), FourLetterWordWhitelist::srvr_only());
    assert!(FourLetterWordWhitelist::all().allows("dump"));
}

#[test]
fn whitelist_from_config_warns_about_unknown_words() {
    let loaded = Config::parse("dataDir=/d\nclientPort=1\n4lw.commands.whitelist=ruok,stats\n").unwrap();
    assert!(loaded.config.four_letter_word_whitelist.allows("ruok"));
    assert_eq!(loaded.warnings.len(), 1);
    assert!(
        loaded.warnings[0].starts_with("zoo.cfg line 3: 4lw.commands.whitelist"),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn super_digest_shape_warning() {
    let loaded =
        Config::parse("dataDir=/d\nclientPort=1\nDigestAuthenticationProvider.superDigest=super:short\n").unwrap();
    assert_eq!(loaded.config.super_digest.as_deref(), Some("super:short"));
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
}

// ---------------------------------------------------------------- effective properties

#[test]
fn effective_properties_list_every_setting() {
    let c = parse(&three_servers(
        "server.1=a:1:2\nserver.2=b:1:2;2181\nserver.3=c:1:2\nmetricsProvider.numWorkerThreads=2\nskipACL=yes\n",
    ));
    let pairs = c.effective_properties();
    let get = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    assert_eq!(get("tickTime"), Some("3000"));
    assert_eq!(get("minSessionTimeout"), Some("6000"));
    assert_eq!(get("maxSessionTimeout"), Some("60000"));
    assert_eq!(get("clientPort"), Some("2181"));
    assert_eq!(get("clientPortAddress"), None);
    assert_eq!(get("clientPortListenBacklog"), Some("-1"));
    assert_eq!(get("dataDir"), Some("/d"));
    assert_eq!(get("4lw.commands.whitelist"), Some("srvr"));
    assert_eq!(get("skipACL"), Some("yes"));
    assert_eq!(get("forceSync"), Some("yes"));
    assert_eq!(get("jute.maxbuffer"), Some("1048575"));
    assert_eq!(get("metricsProvider.numWorkerThreads"), Some("2"));
    assert_eq!(get("server.2"), Some("b:1:2:participant;0.0.0.0:2181"));
    // Keys are unique.
    let mut keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), pairs.len());
}

#[test]
fn effective_properties_round_trip() {
    // Printing the effective settings as zoo.cfg and parsing them again gives the same settings.
    let c = parse(&three_servers(
        "server.1=a:1:2\nserver.2=[::2]:1:2:observer;2181\nserver.3=c:1:2\nserver.4=d:1:2\n\
         4lw.commands.whitelist=ruok,stat\nsnapSizeLimitInKb=0\nDigestAuthenticationProvider.superDigest=super:D/InIHSb7yEEbrWz8b9l71RjZJU=\n",
    ));
    let text: String = c
        .effective_properties()
        .iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect();
    let again = Config::parse(&text).unwrap();
    assert_eq!(again.config.effective_properties(), c.effective_properties());
}
