//! XBT Tracker's settings: the keys a site's `xbt_tracker.conf` and its `xbt_config` table set,
//! with XBT's defaults, read as XBT reads them (`name = value` lines split at the first `=`,
//! both sides trimmed; a line without `=` is no setting, nor one starting with `#`). The file is
//! read, then the table, then the file again, so the file wins; that order is the home's, which
//! reads both.
//!
//! Where XBT differs from what an operator would expect, this does the expected thing and says
//! so: a value that is not a number where one is wanted is refused with a message naming the key
//! (XBT takes it as 0), and an unknown key is reported (XBT logs it too, and goes on).

/// XBT's settings. Defaults are XBT's code defaults (its old web page lists others).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XbtSettings {
    pub anonymous_announce: bool,
    pub anonymous_scrape: bool,
    pub auto_register: bool,
    pub full_scrape: bool,
    pub gzip_scrape: bool,
    pub debug: bool,
    pub daemon: bool,
    pub log_access: bool,
    pub log_announce: bool,
    pub log_scrape: bool,
    pub announce_interval: u32,
    pub clean_up_interval: u32,
    pub read_config_interval: u32,
    pub read_db_interval: u32,
    pub write_db_interval: u32,
    pub scrape_interval: u32,
    /// `listen_port`, which may be given several times; none given: 2710.
    pub listen_ports: Vec<u16>,
    pub offline_message: String,
    pub redirect_url: String,
    pub torrent_pass_private_key: String,
    pub pid_file: String,
    pub query_log: String,
    pub mysql_host: String,
    pub mysql_user: String,
    pub mysql_password: String,
    pub mysql_database: String,
    pub mysql_table_prefix: String,
    /// Extensions: XBT takes these from the MySQL client library's option file.
    pub mysql_port: Option<u16>,
    pub mysql_socket: String,
    /// Table renames (`table_files`, …; empty: prefix + the usual name).
    pub table_files: String,
    pub table_files_users: String,
    pub table_users: String,
    pub table_announce_log: String,
    pub table_scrape_log: String,
    /// Column renames.
    pub column_files_fid: String,
    pub column_files_seeders: String,
    pub column_files_leechers: String,
    pub column_files_completed: String,
    pub column_users_uid: String,
}

impl Default for XbtSettings {
    fn default() -> Self {
        XbtSettings {
            anonymous_announce: false,
            anonymous_scrape: false,
            auto_register: false,
            full_scrape: false,
            gzip_scrape: true,
            debug: false,
            daemon: true,
            log_access: false,
            log_announce: false,
            log_scrape: false,
            announce_interval: 1800,
            clean_up_interval: 60,
            read_config_interval: 60,
            read_db_interval: 60,
            write_db_interval: 15,
            scrape_interval: 0,
            listen_ports: Vec::new(),
            offline_message: String::new(),
            redirect_url: String::new(),
            torrent_pass_private_key: String::new(),
            pid_file: String::new(),
            query_log: String::new(),
            mysql_host: String::new(),
            mysql_user: String::new(),
            mysql_password: String::new(),
            mysql_database: "xbt".into(),
            mysql_table_prefix: "xbt_".into(),
            mysql_port: None,
            mysql_socket: String::new(),
            table_files: String::new(),
            table_files_users: String::new(),
            table_users: String::new(),
            table_announce_log: String::new(),
            table_scrape_log: String::new(),
            column_files_fid: "tid".into(),
            column_files_seeders: "seeders".into(),
            column_files_leechers: "leechers".into(),
            column_files_completed: "completed".into(),
            column_users_uid: "uid".into(),
        }
    }
}

/// Why a setting was not taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetError {
    Unknown(String),
    Invalid { name: String, value: String },
}

impl std::fmt::Display for SetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SetError::Unknown(name) => write!(f, "unknown setting {name:?}"),
            SetError::Invalid { name, value } => {
                write!(f, "{name} = {value:?} is not a number XBT would take")
            }
        }
    }
}

impl XbtSettings {
    /// Sets `name` to `value` (both as read, trimmed).
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), SetError> {
        let invalid = || SetError::Invalid {
            name: name.to_string(),
            value: value.to_string(),
        };
        let number = || value.parse::<u32>().map_err(|_| invalid());
        let flag = || match value {
            "1" | "true" => Ok(true),
            "0" | "false" | "" => Ok(false),
            _ => Err(invalid()),
        };
        let text = || value.to_string();
        match name {
            "anonymous_announce" => self.anonymous_announce = flag()?,
            "anonymous_scrape" => self.anonymous_scrape = flag()?,
            "auto_register" => self.auto_register = flag()?,
            "full_scrape" => self.full_scrape = flag()?,
            "gzip_scrape" => self.gzip_scrape = flag()?,
            "debug" => self.debug = flag()?,
            "daemon" => self.daemon = flag()?,
            "log_access" => self.log_access = flag()?,
            "log_announce" => self.log_announce = flag()?,
            "log_scrape" => self.log_scrape = flag()?,
            "announce_interval" => self.announce_interval = number()?,
            "clean_up_interval" => self.clean_up_interval = number()?,
            "read_config_interval" => self.read_config_interval = number()?,
            "read_db_interval" => self.read_db_interval = number()?,
            "write_db_interval" => self.write_db_interval = number()?,
            "scrape_interval" => self.scrape_interval = number()?,
            "listen_port" => {
                let port = value.parse::<u16>().map_err(|_| invalid())?;
                if !self.listen_ports.contains(&port) {
                    self.listen_ports.push(port);
                }
            }
            "offline_message" => self.offline_message = text(),
            "redirect_url" => self.redirect_url = text(),
            "torrent_pass_private_key" => self.torrent_pass_private_key = text(),
            "pid_file" => self.pid_file = text(),
            "query_log" => self.query_log = text(),
            "mysql_host" => self.mysql_host = text(),
            "mysql_user" => self.mysql_user = text(),
            "mysql_password" => self.mysql_password = text(),
            "mysql_database" => self.mysql_database = text(),
            "mysql_table_prefix" => self.mysql_table_prefix = text(),
            "mysql_port" => self.mysql_port = Some(value.parse().map_err(|_| invalid())?),
            "mysql_socket" => self.mysql_socket = text(),
            "table_files" => self.table_files = text(),
            "table_files_users" => self.table_files_users = text(),
            "table_users" => self.table_users = text(),
            "table_announce_log" => self.table_announce_log = text(),
            "table_scrape_log" => self.table_scrape_log = text(),
            "column_files_fid" => self.column_files_fid = text(),
            "column_files_seeders" => self.column_files_seeders = text(),
            "column_files_leechers" => self.column_files_leechers = text(),
            "column_files_completed" => self.column_files_completed = text(),
            "column_users_uid" => self.column_users_uid = text(),
            _ => return Err(SetError::Unknown(name.to_string())),
        }
        Ok(())
    }

    /// Reads `xbt_tracker.conf` text: every `name = value` line, in order. Returns what it could
    /// not take, with line numbers (from 1); everything else is set.
    pub fn read_conf(&mut self, text: &str) -> Vec<(usize, SetError)> {
        text.lines()
            .enumerate()
            .filter_map(|(i, line)| {
                // A `#` line names no key XBT has, with or without `=`: a comment.
                if line.trim_start().starts_with('#') {
                    return None;
                }
                let (name, value) = line.split_once('=')?;
                self.set(name.trim(), value.trim())
                    .err()
                    .map(|e| (i + 1, e))
            })
            .collect()
    }

    /// The ports to serve: those given, or XBT's 2710.
    pub fn ports(&self) -> Vec<u16> {
        if self.listen_ports.is_empty() {
            vec![2710]
        } else {
            self.listen_ports.clone()
        }
    }

    /// A table's name: its rename if set, else the prefix and `usual` (`files`, `users`, …).
    pub fn table(&self, usual: &str) -> String {
        let renamed = match usual {
            "files" | "torrents" => &self.table_files,
            "files_users" | "peers" => &self.table_files_users,
            "users" => &self.table_users,
            "announce_log" => &self.table_announce_log,
            "scrape_log" => &self.table_scrape_log,
            _ => "",
        };
        if renamed.is_empty() {
            format!("{}{usual}", self.mysql_table_prefix)
        } else {
            renamed.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn a_sites_conf_file_reads_as_xbt_reads_it() {
        let mut s = XbtSettings::default();
        let problems = s.read_conf(
            "mysql_host = db.example\n\
             mysql_user=xbt\n\
             mysql_password =  s3cret = with equals  \n\
             # a comment has no setting unless it has =\n\
             listen_port = 2710\n\
             listen_port = 6969\n\
             anonymous_announce = 1\n\
             announce_interval = half an hour\n\
             no_such_key = 1\n\
             \n\
             offline_message = back at noon\n",
        );
        assert_eq!(s.mysql_host, "db.example");
        assert_eq!(s.mysql_user, "xbt");
        assert_eq!(
            s.mysql_password, "s3cret = with equals",
            "split at the first ="
        );
        assert_eq!(s.ports(), [2710, 6969]);
        assert!(s.anonymous_announce);
        assert_eq!(s.announce_interval, 1800, "a bad value changes nothing");
        assert_eq!(s.offline_message, "back at noon");
        assert_eq!(
            problems,
            [
                (
                    8,
                    SetError::Invalid {
                        name: "announce_interval".into(),
                        value: "half an hour".into()
                    }
                ),
                (9, SetError::Unknown("no_such_key".into())),
            ]
        );
    }

    #[test]
    fn defaults_and_table_names_are_xbts() {
        let s = XbtSettings::default();
        assert_eq!(s.ports(), [2710]);
        assert!(s.gzip_scrape && !s.auto_register && !s.anonymous_announce);
        assert_eq!((s.write_db_interval, s.read_db_interval), (15, 60));
        assert_eq!(s.table("users"), "xbt_users");
        let renamed = XbtSettings {
            mysql_table_prefix: "site_".into(),
            table_users: "members".into(),
            ..XbtSettings::default()
        };
        assert_eq!(renamed.table("users"), "members");
        assert_eq!(renamed.table("files"), "site_files");
    }
}
