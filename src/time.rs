//! Time as the core sees it: whole seconds, handed in by the homes.
//!
//! The core reads no clock. A home reads its own (the system clock natively, `Date.now()` in a
//! Worker) and passes a [`UnixTime`] down; durations stay plain `u32` seconds in fields and
//! arguments whose names say what they measure (`peer_timeout`, `announce_interval`). The type
//! keeps an instant from being passed where a duration is meant, or the other way round.

use core::fmt;
use core::ops::{Add, Sub};

/// An instant: seconds since the Unix epoch. `u32` lasts until 2106 and keeps stored stamps
/// small; the homes saturate a clock past that (or before 1970) rather than wrap.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct UnixTime(pub u32);

impl UnixTime {
    /// From a clock's seconds since the epoch, saturating outside `u32`.
    pub fn from_secs(secs: u64) -> UnixTime {
        UnixTime(u32::try_from(secs).unwrap_or(u32::MAX))
    }

    pub fn secs(self) -> u32 {
        self.0
    }

    /// Seconds from `earlier` to `self`; 0 if `earlier` is not earlier (a clock stepped back).
    pub fn since(self, earlier: UnixTime) -> u32 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for UnixTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// `secs` later, saturating (at 2106, not a wrap to 1970).
impl Add<u32> for UnixTime {
    type Output = UnixTime;
    fn add(self, secs: u32) -> UnixTime {
        UnixTime(self.0.saturating_add(secs))
    }
}

/// `secs` earlier, saturating at the epoch.
impl Sub<u32> for UnixTime {
    type Output = UnixTime;
    fn sub(self, secs: u32) -> UnixTime {
        UnixTime(self.0.saturating_sub(secs))
    }
}
