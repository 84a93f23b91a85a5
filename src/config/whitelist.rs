//! `4lw.commands.whitelist`: which four-letter words the server answers.
//!
//! Semantics of `FourLetterCommands.isEnabled` (3.8): the list is split on `,`, each item trimmed, empty
//! items skipped; an item `*` enables every known command; `srvr` is always enabled (zkServer.sh needs it);
//! `isro` is also enabled when `readonlymode.enabled=true`. Names are compared case-sensitively.

use std::collections::BTreeSet;
use std::fmt;

/// Every four-letter word ZooKeeper 3.8 knows (`FourLetterCommands.cmd2String`, minus "telnet close").
pub const KNOWN_FOUR_LETTER_WORDS: [&str; 18] = [
    "conf", "cons", "crst", "dirs", "dump", "envi", "gtmk", "hash", "isro", "mntr", "ruok", "srst", "srvr", "stat",
    "stmk", "wchc", "wchp", "wchs",
];

/// The set of enabled four-letter words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FourLetterWordWhitelist {
    /// `*` was given: every known command is enabled.
    all: bool,
    /// Explicitly enabled commands (always contains `srvr`).
    commands: BTreeSet<String>,
}

impl FourLetterWordWhitelist {
    /// ZooKeeper's default when the property is absent: only `srvr`.
    pub fn srvr_only() -> Self {
        let mut commands = BTreeSet::new();
        commands.insert("srvr".to_string());
        FourLetterWordWhitelist { all: false, commands }
    }

    /// Every known command (`4lw.commands.whitelist=*`).
    pub fn all() -> Self {
        FourLetterWordWhitelist {
            all: true,
            ..Self::srvr_only()
        }
    }

    /// Parses a property value such as `"stat, ruok ,conf"` or `"*"`. Unknown names are kept (they can
    /// never match a command) and also returned so the caller can warn about typos.
    pub fn parse(list: &str) -> (Self, Vec<String>) {
        let mut whitelist = Self::srvr_only();
        let mut unknown = Vec::new();
        for item in list.split(',').map(str::trim).filter(|item| !item.is_empty()) {
            if item == "*" {
                whitelist.all = true;
                continue;
            }
            if !KNOWN_FOUR_LETTER_WORDS.contains(&item) {
                unknown.push(item.to_string());
            }
            whitelist.commands.insert(item.to_string());
        }
        (whitelist, unknown)
    }

    /// Enables one more command (used for `isro` under `readonlymode.enabled`).
    pub fn enable(&mut self, command: &str) {
        self.commands.insert(command.to_string());
    }

    /// Whether `cmd` (e.g. `"ruok"`) may be executed. `srvr` always may.
    pub fn allows(&self, cmd: &str) -> bool {
        if cmd == "srvr" || self.commands.contains(cmd) {
            return true;
        }
        self.all && KNOWN_FOUR_LETTER_WORDS.contains(&cmd)
    }

    /// Whether `*` was given.
    pub fn allows_all(&self) -> bool {
        self.all
    }
}

impl Default for FourLetterWordWhitelist {
    fn default() -> Self {
        Self::srvr_only()
    }
}

/// Prints the effective list as a property value: `*` or the sorted, comma-separated names.
impl fmt::Display for FourLetterWordWhitelist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.all {
            return f.write_str("*");
        }
        let names: Vec<&str> = self.commands.iter().map(String::as_str).collect();
        f.write_str(&names.join(","))
    }
}
