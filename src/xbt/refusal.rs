//! Whether XBT lets an announce through, and what it says when it does not: its refusals, with
//! its texts, in its order (offline message, pass, torrent, leeching, wait time, peers limit).

use crate::time::UnixTime;

/// Why an announce is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XbtRefusal {
    /// `offline_message` is set: every announce fails with it.
    Offline(String),
    UnregisteredPass,
    UnregisteredTorrent,
    LeechingForbidden,
    WaitTime,
    PeersLimit,
}

impl XbtRefusal {
    /// The `failure reason`, as XBT words it (a site's users and scripts know these).
    pub fn reason(&self) -> &str {
        match self {
            XbtRefusal::Offline(message) => message,
            XbtRefusal::UnregisteredPass => "unregistered torrent pass",
            XbtRefusal::UnregisteredTorrent => "unregistered torrent",
            XbtRefusal::LeechingForbidden => {
                "access denied, leeching forbidden, you are only allowed to seed"
            }
            XbtRefusal::WaitTime => "access denied, wait time in effect",
            XbtRefusal::PeersLimit => "access denied, peers limit reached",
        }
    }
}

/// The site's settings that decide refusals (`xbt_tracker.conf` and `xbt_config`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    pub offline_message: String,
    pub anonymous_announce: bool,
    pub auto_register: bool,
}

/// A user's limits, from the optional columns of `xbt_users` (`None`: no such column).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserLimits {
    pub can_leech: Option<bool>,
    /// Seconds after a torrent's creation before the user may leech it.
    pub wait_time: Option<u32>,
    /// Leeching peers of the user in one torrent at most (0: no limit).
    pub peers_limit: Option<u32>,
}

/// One announce, as far as refusals go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Asking {
    /// The user the pass named, with their limits; `None`: no known pass.
    pub user: Option<UserLimits>,
    /// The torrent's creation time (`ctime`) if the site registered it.
    pub torrent_created: Option<UnixTime>,
    /// `left > 0`.
    pub leeching: bool,
    /// Whether the peer is new to the swarm (limits count new leeching peers only).
    pub new_peer: bool,
    /// The user's leeching peers in this torrent before this announce.
    pub leeching_peers: u32,
}

/// XBT's verdict on an announce at `now`.
pub fn check(settings: &Settings, a: &Asking, now: UnixTime) -> Result<(), XbtRefusal> {
    if !settings.offline_message.is_empty() {
        return Err(XbtRefusal::Offline(settings.offline_message.clone()));
    }
    if a.user.is_none() && !settings.anonymous_announce {
        return Err(XbtRefusal::UnregisteredPass);
    }
    if a.torrent_created.is_none() && !settings.auto_register {
        return Err(XbtRefusal::UnregisteredTorrent);
    }
    let (Some(user), true) = (a.user, a.leeching) else {
        return Ok(());
    };
    if user.can_leech == Some(false) {
        return Err(XbtRefusal::LeechingForbidden);
    }
    if let (Some(wait), Some(created)) = (user.wait_time, a.torrent_created)
        && wait > 0
        && now.since(created) < wait
    {
        return Err(XbtRefusal::WaitTime);
    }
    if let Some(limit) = user.peers_limit
        && limit > 0
        && a.new_peer
        && a.leeching_peers >= limit
    {
        return Err(XbtRefusal::PeersLimit);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const NOW: UnixTime = UnixTime(1_000_000);

    fn asking(user: Option<UserLimits>) -> Asking {
        Asking {
            user,
            torrent_created: Some(UnixTime(0)),
            leeching: true,
            new_peer: true,
            leeching_peers: 0,
        }
    }

    #[test]
    fn refusals_come_in_xbts_order_with_its_words() {
        let settings = Settings::default();
        let refused =
            |s: &Settings, a: &Asking| check(s, a, NOW).err().map(|r| r.reason().to_string());
        let offline = Settings {
            offline_message: "down for maintenance".into(),
            ..Settings::default()
        };
        assert_eq!(
            refused(&offline, &asking(None)).as_deref(),
            Some("down for maintenance")
        );
        assert_eq!(
            refused(&settings, &asking(None)).as_deref(),
            Some("unregistered torrent pass")
        );
        let unregistered = Asking {
            torrent_created: None,
            ..asking(Some(UserLimits::default()))
        };
        assert_eq!(
            refused(&settings, &unregistered).as_deref(),
            Some("unregistered torrent")
        );
        let open = Settings {
            anonymous_announce: true,
            auto_register: true,
            ..Settings::default()
        };
        assert_eq!(
            refused(
                &open,
                &Asking {
                    torrent_created: None,
                    ..asking(None)
                }
            ),
            None
        );
        let seed_only = UserLimits {
            can_leech: Some(false),
            wait_time: Some(10_000_000),
            ..UserLimits::default()
        };
        assert_eq!(
            refused(&settings, &asking(Some(seed_only))).as_deref(),
            Some("access denied, leeching forbidden, you are only allowed to seed"),
            "before the wait time"
        );
        assert_eq!(
            refused(
                &settings,
                &Asking {
                    leeching: false,
                    ..asking(Some(seed_only))
                }
            ),
            None,
            "seeding is allowed"
        );
        let waiting = UserLimits {
            wait_time: Some(3600),
            ..UserLimits::default()
        };
        let fresh = Asking {
            torrent_created: Some(UnixTime(NOW.secs() - 60)),
            ..asking(Some(waiting))
        };
        assert_eq!(
            refused(&settings, &fresh).as_deref(),
            Some("access denied, wait time in effect")
        );
        assert_eq!(
            refused(&settings, &asking(Some(waiting))),
            None,
            "an old torrent"
        );
        let limited = UserLimits {
            peers_limit: Some(2),
            ..UserLimits::default()
        };
        let third = Asking {
            leeching_peers: 2,
            ..asking(Some(limited))
        };
        assert_eq!(
            refused(&settings, &third).as_deref(),
            Some("access denied, peers limit reached")
        );
        assert_eq!(
            refused(
                &settings,
                &Asking {
                    new_peer: false,
                    ..third
                }
            ),
            None,
            "a known peer announces"
        );
    }
}
