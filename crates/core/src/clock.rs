//! The local wall clock, as one value jobs can be handed and tests can shift.
//!
//! Nothing that decides whether data may be deleted or a lease taken over should trust this
//! clock alone (see `lease`): it is what the host believes, and hosts can be hours off.

use crate::time::{self, Timestamp};
use std::sync::atomic::{AtomicI64, Ordering};

/// Seconds added to the system clock by [`Clock::process`]; set once at start (only debug
/// builds of the CLI read it from the environment, to test hosts whose clock is wrong).
static PROCESS_OFFSET: AtomicI64 = AtomicI64::new(0);

/// The local clock, possibly shifted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Clock {
    offset_seconds: i64,
}

impl Clock {
    /// The system clock, shifted by the process offset (zero outside tests).
    pub fn process() -> Clock {
        Clock {
            offset_seconds: PROCESS_OFFSET.load(Ordering::Relaxed),
        }
    }

    /// A clock `seconds` ahead of the system clock (behind when negative).
    pub fn shifted(seconds: i64) -> Clock {
        Clock {
            offset_seconds: seconds,
        }
    }

    /// Shifts [`Clock::process`] for the rest of the process.
    pub fn set_process_offset(seconds: i64) {
        PROCESS_OFFSET.store(seconds, Ordering::Relaxed);
    }

    pub fn now(&self) -> Timestamp {
        time::add_secs(Timestamp::now(), self.offset_seconds)
    }
}
