//! State the running server shares between its parts and changes at runtime.

use std::sync::atomic::{AtomicU8, Ordering};

use crate::config::Logging;

/// The organization-wide logging switch, readable from every session without a lock.
#[derive(Debug)]
pub struct LoggingSwitch(AtomicU8);

impl LoggingSwitch {
    pub fn new(state: Logging) -> Self {
        Self(AtomicU8::new(Self::code(state)))
    }

    fn code(state: Logging) -> u8 {
        match state {
            Logging::On => 0,
            Logging::Paused => 1,
            Logging::Off => 2,
        }
    }

    pub fn get(&self) -> Logging {
        match self.0.load(Ordering::Relaxed) {
            1 => Logging::Paused,
            2 => Logging::Off,
            _ => Logging::On,
        }
    }

    /// Sets the state; returns the previous one.
    pub fn set(&self, state: Logging) -> Logging {
        let old = self.get();
        self.0.store(Self::code(state), Ordering::Relaxed);
        if old != state {
            tracing::info!(from = %old, to = %state, "logging switched");
        }
        old
    }
}
