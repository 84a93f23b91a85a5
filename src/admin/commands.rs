//! ZooKeeper's AdminServer commands (`org.apache.zookeeper.server.admin.Commands`, PROTOCOL.md §7.1):
//! names, aliases, and the JSON each returns. Runs inside the core task, like the four-letter words,
//! and returns a `serde_json` map whose key order is the order ZooKeeper's `CommandResponse.toMap`
//! produces: the command's own keys, then `command`, then `error` (a key a command set itself keeps
//! its place, which is why `leader` on a standalone server prints `error` first).

use serde_json::{json, Map, Value};

use crate::admin::four_letter::{
    avg_latency, dir_sizes, environment_entries, java_double_4, sorted_conns, version_dir, version_string, AdminState,
    MemberView,
};
use crate::admin::monitor::{MonitorSnapshot, MonitorValue};
use crate::server::core::{Conn, Core, Now};

/// A question the HTTP side asks the core task.
#[derive(Debug)]
pub enum AdminQuery {
    /// `GET <commandURL>/<name>?<args>`.
    Command {
        /// Name or alias as requested.
        name: String,
        /// Query arguments.
        args: Vec<(String, String)>,
    },
    /// A metrics snapshot for a Prometheus scrape.
    Metrics,
}

/// The core task's answer.
#[derive(Debug)]
pub enum AdminAnswer {
    /// A command's response map (rendered to JSON off the core task).
    Command(Map<String, Value>),
    /// Every metric at one instant (encoded off the core task).
    Metrics(MonitorSnapshot),
}

/// Answers `query` from inside the core task. A standalone ferrokeeper serves from the moment the
/// core task runs, so `serving` is always true here.
pub fn answer(query: AdminQuery, core: &mut Core, admin: &mut AdminState, now: Now) -> AdminAnswer {
    match query {
        AdminQuery::Command { name, args } => AdminAnswer::Command(run(&name, &args, true, core, admin, now)),
        AdminQuery::Metrics => AdminAnswer::Metrics(MonitorSnapshot::take(core, admin, now, false)),
    }
}

/// The host of a `host:port` (an IPv6 host in brackets stays in them).
fn host_of(address: &str) -> &str {
    address.rsplit_once(':').map_or(address, |(host, _)| host)
}

/// A `MultipleAddresses` as ZooKeeper's AdminServer serialises it (its bean getters), for one
/// `host:port`.
fn addresses_json(address: &str) -> Value {
    let port: u16 = address.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or(0);
    json!({
        "empty": address.is_empty(),
        "all_addresses": [address],
        "all_reachable_addresses": [address],
        "one": address,
        "reachable_address": address,
        "wildcard_addresses": [format!("0.0.0.0:{port}")],
        "all_ports": [port],
        "all_host_strings": [host_of(address)],
        "all_reachable_addresses_or_all": [address],
        "reachable_or_one": address,
    })
}

/// What a command needs from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    /// Answers even when the server is not serving (`CommandBase(names, serverRequired=false)`).
    Nothing,
    /// Answers "not currently serving" unless the server runs.
    Serving,
}

/// Primary name, aliases, and whether the server must be serving; sorted by primary name, as the
/// `/commands` index lists them.
const COMMANDS: [(&str, &[&str], Needs); 26] = [
    ("configuration", &["conf", "config"], Needs::Serving),
    ("connection_stat_reset", &["crst"], Needs::Serving),
    ("connections", &["cons"], Needs::Serving),
    ("dirs", &[], Needs::Serving),
    ("dump", &[], Needs::Serving),
    ("environment", &["env", "envi"], Needs::Nothing),
    ("get_trace_mask", &["gtmk"], Needs::Nothing),
    ("hash", &[], Needs::Serving),
    ("initial_configuration", &["icfg"], Needs::Serving),
    ("is_read_only", &["isro"], Needs::Serving),
    ("last_snapshot", &["lsnp"], Needs::Serving),
    ("leader", &["lead"], Needs::Serving),
    ("monitor", &["mntr"], Needs::Nothing),
    ("observer_connection_stat_reset", &["orst"], Needs::Serving),
    ("observers", &["obsr"], Needs::Serving),
    ("ruok", &[], Needs::Serving),
    ("server_stats", &["srvr"], Needs::Serving),
    ("set_trace_mask", &["stmk"], Needs::Nothing),
    ("stat_reset", &["srst"], Needs::Serving),
    ("stats", &["stat"], Needs::Serving),
    ("system_properties", &["sysp"], Needs::Nothing),
    ("voting_view", &[], Needs::Serving),
    ("watch_summary", &["wchs"], Needs::Serving),
    ("watches", &["wchc"], Needs::Serving),
    ("watches_by_path", &["wchp"], Needs::Serving),
    ("zabstate", &[], Needs::Nothing),
];

/// `ZooKeeperServer`'s "not serving" message, shared with the 4lw.
pub const NOT_SERVING: &str = "This ZooKeeper instance is not currently serving requests";

/// The primary names, sorted (the `/commands` index).
pub fn primary_names() -> impl Iterator<Item = &'static str> {
    COMMANDS.iter().map(|(name, _, _)| *name)
}

/// The primary name for a name or alias.
pub fn resolve(name: &str) -> Option<&'static str> {
    COMMANDS
        .iter()
        .find(|(primary, aliases, _)| *primary == name || aliases.contains(&name))
        .map(|(p, _, _)| *p)
}

/// The HTML index ZooKeeper serves at the command URL: one link per primary name.
pub fn index_html(command_url: &str) -> String {
    let mut out = String::new();
    for name in primary_names() {
        out.push_str(&format!("<a href=\"{command_url}/{name}\">{name}</a>\n<br/>\n"));
    }
    out
}

/// Runs the command `name` (or an alias) with the query arguments `args`. `serving` is false while
/// the server cannot answer clients (then most commands only report that).
pub fn run(
    name: &str,
    args: &[(String, String)],
    serving: bool,
    core: &mut Core,
    admin: &mut AdminState,
    now: Now,
) -> Map<String, Value> {
    let Some((primary, _, needs)) = COMMANDS
        .iter()
        .find(|(p, aliases, _)| *p == name || aliases.contains(&name))
    else {
        return finish(Map::new(), name, Some(format!("Unknown command: {name}")));
    };
    if *needs == Needs::Serving && !serving {
        return finish(Map::new(), primary, Some(NOT_SERVING.to_string()));
    }
    let mut r = Map::new();
    // Errors these commands report themselves go into their data (`response.put("error", …)`).
    let mut error = None;
    match *primary {
        "configuration" => configuration(&mut r, admin),
        "connection_stat_reset" => core.reset_connection_stats(),
        "connections" => {
            r.insert(
                "connections".into(),
                Value::Array(sorted_conns(core).iter().map(|(_, c)| conn_json(c, true)).collect()),
            );
            r.insert("secure_connections".into(), json!([]));
        }
        "dirs" => {
            let (data, log) = dir_sizes(&admin.config);
            r.insert("datadir_size".into(), json!(data));
            r.insert("logdir_size".into(), json!(log));
        }
        "dump" => {
            let mut expiry = Map::new();
            for (expires_at_mono, ids) in core.sessions.buckets() {
                expiry.insert(expires_at_mono.to_string(), json!(ids));
            }
            let mut ephemerals: Vec<_> = core.tree.ephemerals().iter().collect();
            ephemerals.sort_by_key(|(id, _)| **id);
            let mut by_session = Map::new();
            for (id, paths) in ephemerals {
                by_session.insert(id.to_string(), json!(paths));
            }
            r.insert("expiry_time_to_session_ids".into(), Value::Object(expiry));
            r.insert("session_id_to_ephemeral_paths".into(), Value::Object(by_session));
        }
        "environment" => {
            for (k, v) in environment_entries() {
                r.insert(k.into(), json!(v));
            }
        }
        "get_trace_mask" => {
            r.insert("tracemask".into(), json!(admin.trace_mask));
        }
        // Tree digests are not recorded yet; ZooKeeper lists none until it has some.
        "hash" => {
            r.insert("digests".into(), json!([]));
        }
        "initial_configuration" => {
            r.insert("initial_configuration".into(), json!(admin.config.raw_text()));
        }
        "is_read_only" => {
            r.insert("read_only".into(), json!(false));
        }
        "last_snapshot" => {
            // Java's Long.toHexString: lower-case hex of the two's complement, so "no snapshot yet"
            // (-1) reads ffffffffffffffff, as in ZooKeeper.
            let (zxid, timestamp) = admin.last_snapshot.unwrap_or((-1, -1));
            r.insert("zxid".into(), json!(format!("{:x}", zxid as u64)));
            r.insert("timestamp".into(), json!(timestamp));
        }
        "leader" => match &admin.quorum {
            Some(q) => {
                let leader_ip = q
                    .members
                    .iter()
                    .find(|m| m.sid == q.leader_sid)
                    .map_or(String::new(), |m| host_of(&m.quorum_address).to_string());
                r.insert("is_leader".into(), json!(q.leader.is_some()));
                r.insert("leader_id".into(), json!(q.leader_sid));
                r.insert("leader_ip".into(), json!(leader_ip));
            }
            None => error = Some("server is not initialized".to_string()),
        },
        "monitor" => {
            let snapshot = MonitorSnapshot::take(core, admin, now, false);
            for (key, value) in snapshot.entries(admin.prometheus_enabled()) {
                r.insert(key, monitor_json(value));
            }
        }
        "observer_connection_stat_reset" | "ruok" => {}
        "observers" => {
            r.insert("synced_observers".into(), json!(0));
            r.insert("observers".into(), json!([]));
        }
        "server_stats" => server_stats(&mut r, core, admin, now),
        "set_trace_mask" => match args.iter().find(|(k, _)| k == "traceMask") {
            None => error = Some("setTraceMask requires long traceMask argument".to_string()),
            Some((_, v)) => match v.parse::<i64>() {
                Ok(mask) => {
                    admin.trace_mask = mask;
                    r.insert("tracemask".into(), json!(mask));
                }
                Err(_) => error = Some(format!("setTraceMask requires long traceMask argument, got {v}")),
            },
        },
        "stat_reset" => {
            core.stats.reset();
            core.metrics.reset();
        }
        "stats" => {
            server_stats(&mut r, core, admin, now);
            r.insert(
                "connections".into(),
                Value::Array(sorted_conns(core).iter().map(|(_, c)| conn_json(c, false)).collect()),
            );
            r.insert("secure_connections".into(), json!([]));
        }
        "system_properties" => system_properties(&mut r, admin),
        "voting_view" => {
            let mut view = Map::new();
            for m in admin.quorum.iter().flat_map(|q| &q.members) {
                view.insert(
                    m.sid.to_string(),
                    json!({
                        "server_addresses": [m.quorum_address],
                        "election_addresses": [m.election_address],
                        "client_address": m.client_address,
                        "learner_type": m.learner_type,
                    }),
                );
            }
            r.insert("current_config".into(), Value::Object(view));
        }
        "watch_summary" => {
            let (connections, paths, watches) = core.watches.data_summary();
            r.insert("num_connections".into(), json!(connections));
            r.insert("num_paths".into(), json!(paths));
            r.insert("num_total_watches".into(), json!(watches));
        }
        "watches" => {
            let mut by_session = Map::new();
            for (watcher, paths) in core.watches.data_by_watcher() {
                let session = core.conns.get(&watcher).map_or(0, |c| c.session_id);
                by_session.insert(session.to_string(), json!(paths));
            }
            r.insert("session_id_to_watched_paths".into(), Value::Object(by_session));
        }
        "watches_by_path" => {
            let mut by_path = Map::new();
            for (path, watchers) in core.watches.data_by_path() {
                let sessions: Vec<i64> = watchers
                    .iter()
                    .map(|w| core.conns.get(w).map_or(0, |c| c.session_id))
                    .collect();
                by_path.insert(path, json!(sessions));
            }
            r.insert("path_to_session_ids".into(), Value::Object(by_path));
        }
        "zabstate" => match &admin.quorum {
            Some(q) => {
                let me = q.members.iter().find(|m| m.sid == q.my_sid);
                let address = |pick: fn(&MemberView) -> &String| me.map_or(String::new(), |m| pick(m).clone());
                let zxid = core.last_processed_zxid();
                r.insert("myid".into(), json!(q.my_sid));
                r.insert("is_leader".into(), json!(q.leader.is_some()));
                r.insert("quorum_address".into(), addresses_json(&address(|m| &m.quorum_address)));
                r.insert("election_address".into(), addresses_json(&address(|m| &m.election_address)));
                r.insert("client_address".into(), json!(address(|m| &m.client_address)));
                r.insert("voting".into(), json!(true));
                r.insert("last_zxid".into(), json!(format!("0x{zxid:x}")));
                r.insert("zab_epoch".into(), json!(zxid >> 32));
                r.insert("zab_counter".into(), json!(zxid & 0xffff_ffff));
                r.insert("zabstate".into(), json!("broadcast"));
            }
            None => {
                r.insert("voting".into(), json!(false));
                r.insert("zabstate".into(), json!(""));
            }
        },
        other => unreachable!("command {other} in the table but not handled"),
    }
    if let Some(message) = error {
        r.insert("error".into(), json!(message));
    }
    finish(r, primary, None)
}

/// Appends `command` and `error` (`CommandResponse.toMap`). `error` is the framework's (unknown
/// command, not serving); a command that reports its own error puts it into its data first, where
/// it keeps its place.
fn finish(mut r: Map<String, Value>, command: &str, error: Option<String>) -> Map<String, Value> {
    r.insert("command".into(), json!(command));
    match error {
        Some(message) => {
            r.insert("error".into(), json!(message));
        }
        None => {
            r.entry("error").or_insert(Value::Null);
        }
    }
    r
}

fn monitor_json(value: MonitorValue) -> Value {
    match value {
        MonitorValue::Int(v) => json!(v),
        // Jackson quotes non-finite doubles (QUOTE_NON_NUMERIC_NUMBERS).
        MonitorValue::Double(v) if !v.is_finite() => json!(crate::admin::monitor::java_double(v)),
        MonitorValue::Double(v) => json!(v),
        MonitorValue::Text(s) => json!(s),
    }
}

fn configuration(r: &mut Map<String, Value>, admin: &AdminState) {
    let c = &admin.config;
    r.insert("client_port".into(), json!(c.client_port.unwrap_or(0)));
    r.insert("data_dir".into(), json!(version_dir(&c.data_dir).display().to_string()));
    r.insert(
        "data_log_dir".into(),
        json!(version_dir(&c.data_log_dir).display().to_string()),
    );
    r.insert("tick_time".into(), json!(c.tick_time_ms));
    r.insert("max_client_cnxns".into(), json!(c.max_client_cnxns));
    r.insert("min_session_timeout".into(), json!(c.min_session_timeout_ms));
    r.insert("max_session_timeout".into(), json!(c.max_session_timeout_ms));
    // Standalone servers report server id 0.
    r.insert("server_id".into(), json!(0));
    r.insert(
        "client_port_listen_backlog".into(),
        json!(c.client_port_listen_backlog.map_or(-1, |b| b as i64)),
    );
}

/// A connection as `ServerCnxn.getConnectionInfo(brief)` maps it.
fn conn_json(conn: &Conn, full: bool) -> Value {
    let s = &conn.stats;
    let mut m = Map::new();
    m.insert("remote_socket_address".into(), json!(conn.remote.to_string()));
    m.insert("interest_ops".into(), json!(1));
    m.insert("outstanding_requests".into(), json!(conn.outstanding));
    m.insert("packets_received".into(), json!(s.packets_received));
    m.insert("packets_sent".into(), json!(s.packets_sent));
    if full && conn.session_id != 0 {
        m.insert("session_id".into(), json!(conn.session_id));
        m.insert("last_operation".into(), json!(s.last_op));
        m.insert("established".into(), json!(conn.established_wall_ms));
        m.insert("session_timeout".into(), json!(conn.timeout_ms));
        m.insert("last_cxid".into(), json!(s.last_cxid));
        m.insert("last_zxid".into(), json!(s.last_zxid));
        m.insert("last_response_time".into(), json!(s.last_response_mono_ms));
        m.insert("last_latency".into(), json!(s.last_latency_ms));
        m.insert("min_latency".into(), json!(s.min_latency_ms));
        m.insert(
            "avg_latency".into(),
            json!(avg_latency(s.total_latency_ms, s.latency_count) as i64),
        );
        m.insert("max_latency".into(), json!(s.max_latency_ms));
    }
    Value::Object(m)
}

fn server_stats(r: &mut Map<String, Value>, core: &Core, admin: &AdminState, now: Now) {
    let st = &core.stats;
    let no_response = st.packets_sent == 0;
    let client_response = json!({
        "last_buffer_size": if no_response { -1 } else { st.last_response_size },
        "min_buffer_size": if no_response { -1 } else { st.min_response_size },
        "max_buffer_size": if no_response { -1 } else { st.max_response_size },
    });
    let (data_size, log_size) = dir_sizes(&admin.config);
    let avg: f64 = java_double_4(avg_latency(st.total_latency_ms, st.latency_count))
        .parse()
        .unwrap_or(0.0);
    let local = core.metrics.counter("non_mtls_local_conn_count");
    let remote = core.metrics.counter("non_mtls_remote_conn_count");
    r.insert("version".into(), json!(version_string()));
    r.insert("read_only".into(), json!(false));
    r.insert(
        "server_stats".into(),
        json!({
            "packets_sent": st.packets_sent,
            "packets_received": st.packets_received,
            "fsync_threshold_exceed_count": st.fsync_threshold_exceed_count,
            "client_response_stats": client_response.clone(),
            "data_dir_size": data_size,
            "log_dir_size": log_size,
            "provider_null": false,
            "server_state": admin.server_state,
            "last_processed_zxid": core.last_processed_zxid(),
            "outstanding_requests": core.outstanding(),
            "avg_latency": avg,
            "max_latency": st.max_latency_ms,
            "min_latency": st.min_latency_ms,
            "num_alive_client_connections": core.conns.len(),
            "uptime": now.mono_ms - admin.started_mono_ms,
            "auth_failed_count": st.auth_failed_count,
            "non_mtlsremote_conn_count": remote,
            "non_mtlslocal_conn_count": local,
        }),
    );
    r.insert("client_response".into(), client_response);
    r.insert("node_count".into(), json!(core.tree.node_count()));
}

/// The JVM's system properties have no equivalent here; report the process facts a JVM would put
/// there, plus the `-D`/zoo.cfg properties the configuration was built with (ZooKeeper turns unknown
/// zoo.cfg keys into `zookeeper.<key>` properties).
fn system_properties(r: &mut Map<String, Value>, admin: &AdminState) {
    let mut props: Vec<(String, String)> = environment_entries()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("os.memory") && *k != "host.name" && *k != "zookeeper.version")
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    props.push(("file.separator".into(), "/".into()));
    props.push(("line.separator".into(), "\n".into()));
    props.push(("path.separator".into(), ":".into()));
    for (k, v) in admin.config.system_properties() {
        props.push((k.clone(), v.clone()));
    }
    props.sort();
    props.dedup_by(|a, b| a.0 == b.0);
    for (k, v) in props {
        r.insert(k, json!(v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::node::core_settings;

    fn fixture() -> (Core, AdminState) {
        let config = Config::default_with_system_properties(&[])
            .expect("default config")
            .config;
        let core = Core::new(core_settings(&config, 1), 0);
        (core, AdminState::new(config))
    }

    fn keys(m: &Map<String, Value>) -> Vec<&str> {
        m.keys().map(String::as_str).collect()
    }

    #[test]
    fn aliases_resolve_and_unknown_commands_say_so() {
        let (mut core, mut admin) = fixture();
        assert_eq!(resolve("mntr"), Some("monitor"));
        assert_eq!(resolve("srvr"), Some("server_stats"));
        assert_eq!(resolve("nosuch"), None);
        let r = run("nosuch", &[], true, &mut core, &mut admin, Now::default());
        assert_eq!(keys(&r), ["command", "error"]);
        assert_eq!(r["error"], "Unknown command: nosuch");
        let r = run("wchs", &[], true, &mut core, &mut admin, Now::default());
        assert_eq!(
            keys(&r),
            ["num_connections", "num_paths", "num_total_watches", "command", "error"]
        );
        assert_eq!(r["command"], "watch_summary");
    }

    /// A follower of leader 2 in the ensemble 1..=3 on 127.0.50.x, as the capture below had it.
    fn quorum_member(admin: &mut AdminState) {
        let members = (1..=3)
            .map(|sid| MemberView {
                sid,
                quorum_address: format!("127.0.50.{sid}:2888"),
                election_address: format!("127.0.50.{sid}:3888"),
                client_address: if sid == 3 { "127.0.50.3:2181".into() } else { String::new() },
                learner_type: "participant",
            })
            .collect();
        admin.server_state = "follower";
        admin.quorum = Some(crate::admin::four_letter::QuorumInfo {
            my_sid: 3,
            leader_sid: 2,
            epoch: 1,
            quorum_size: 3,
            members,
            leader: None,
        });
    }

    // Shapes captured from a follower (sid 3) of a real ZooKeeper 3.8.0 ensemble's AdminServer.
    #[test]
    fn quorum_commands_are_shaped_as_a_zookeeper_followers() {
        let (mut core, mut admin) = fixture();
        quorum_member(&mut admin);
        core.tree.last_processed_zxid = 0x1_0000_0000;
        let r = run("leader", &[], true, &mut core, &mut admin, Now::default());
        assert_eq!(keys(&r), ["is_leader", "leader_id", "leader_ip", "command", "error"]);
        assert_eq!((&r["is_leader"], &r["leader_id"], &r["leader_ip"]), (&json!(false), &json!(2), &json!("127.0.50.2")));
        let r = run("voting_view", &[], true, &mut core, &mut admin, Now::default());
        assert_eq!(
            r["current_config"]["3"],
            json!({
                "server_addresses": ["127.0.50.3:2888"],
                "election_addresses": ["127.0.50.3:3888"],
                "client_address": "127.0.50.3:2181",
                "learner_type": "participant",
            })
        );
        assert_eq!(r["current_config"]["1"]["client_address"], "");
        let r = run("zabstate", &[], true, &mut core, &mut admin, Now::default());
        assert_eq!(
            keys(&r),
            [
                "myid", "is_leader", "quorum_address", "election_address", "client_address", "voting", "last_zxid",
                "zab_epoch", "zab_counter", "zabstate", "command", "error"
            ]
        );
        assert_eq!(
            r["quorum_address"],
            json!({
                "empty": false,
                "all_addresses": ["127.0.50.3:2888"],
                "all_reachable_addresses": ["127.0.50.3:2888"],
                "one": "127.0.50.3:2888",
                "reachable_address": "127.0.50.3:2888",
                "wildcard_addresses": ["0.0.0.0:2888"],
                "all_ports": [2888],
                "all_host_strings": ["127.0.50.3"],
                "all_reachable_addresses_or_all": ["127.0.50.3:2888"],
                "reachable_or_one": "127.0.50.3:2888",
            })
        );
        assert_eq!((&r["last_zxid"], &r["zab_epoch"], &r["zab_counter"]), (&json!("0x100000000"), &json!(1), &json!(0)));
        assert_eq!(r["zabstate"], "broadcast");
        let r = run("monitor", &[], true, &mut core, &mut admin, Now::default());
        assert_eq!((&r["server_state"], &r["peer_state"], &r["quorum_size"]), (&json!("follower"), &json!("following - broadcast"), &json!(3)));
    }

    #[test]
    fn errors_set_by_a_command_come_first() {
        let (mut core, mut admin) = fixture();
        let r = run("lead", &[], true, &mut core, &mut admin, Now::default());
        assert_eq!(keys(&r), ["error", "command"]);
        let r = run(
            "stmk",
            &[("traceMask".into(), "abc".into())],
            true,
            &mut core,
            &mut admin,
            Now::default(),
        );
        assert_eq!(r["error"], "setTraceMask requires long traceMask argument, got abc");
        let r = run(
            "stmk",
            &[("traceMask".into(), "400".into())],
            true,
            &mut core,
            &mut admin,
            Now::default(),
        );
        assert_eq!(r["tracemask"], 400);
        assert_eq!(
            run("gtmk", &[], true, &mut core, &mut admin, Now::default())["tracemask"],
            400
        );
    }

    #[test]
    fn not_serving_spares_the_commands_zookeeper_spares() {
        let (mut core, mut admin) = fixture();
        let r = run("srvr", &[], false, &mut core, &mut admin, Now::default());
        assert_eq!(r["error"], NOT_SERVING);
        let r = run("envi", &[], false, &mut core, &mut admin, Now::default());
        assert_eq!(r["error"], Value::Null);
    }

    #[test]
    fn index_lists_primary_names_sorted() {
        let names: Vec<&str> = primary_names().collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        assert!(index_html("/commands").starts_with("<a href=\"/commands/configuration\">configuration</a>\n<br/>\n"));
    }
}
