//! The `ferrokeeper` command as a user meets it: --version, --help, config errors, and a clean
//! stop on SIGTERM.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferrokeeper"))
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrokeeper-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn version_and_help() {
    let out = bin().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("ferrokeeper {}", env!("CARGO_PKG_VERSION"))
    );
    let out = bin().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("Usage: ferrokeeper [OPTIONS] [CONFIG]"), "{help}");
    assert!(help.contains("import") && help.contains("export"), "{help}");
}

#[test]
fn an_invalid_value_names_the_key_and_line() {
    let dir = temp_dir("bad");
    let cfg = dir.join("zoo.cfg");
    std::fs::write(
        &cfg,
        format!("dataDir={}\nclientPort=2999\n\nmaxClientCnxns=lots\n", dir.display()),
    )
    .unwrap();
    let out = bin().arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 4") && err.contains("maxClientCnxns") && err.contains("lots"),
        "{err}"
    );
}

#[test]
fn unknown_keys_warn_and_sigterm_stops_cleanly() {
    let dir = temp_dir("run");
    let cfg = dir.join("zoo.cfg");
    std::fs::write(
        &cfg,
        format!(
            "dataDir={}\nclientPort=0\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\nno.such.key=1\n",
            dir.display()
        ),
    )
    .unwrap();
    // clientPort=0 is "unset" for ZooKeeper; give a real free port instead.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("clientPort=0", &format!("clientPort={port}"));
    std::fs::write(&cfg, text).unwrap();
    let mut child = bin().arg(&cfg).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "exit status {exit:?}");
    let mut log = String::new();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert!(log.contains("no.such.key"), "unknown key not warned about:\n{log}");
    assert!(log.contains("stopped"), "no clean stop:\n{log}");
    assert!(dir.join("ferrokeeper").join("txnlog").is_dir());
}
