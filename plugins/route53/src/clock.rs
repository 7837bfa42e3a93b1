//! The time, for signatures, and waiting, between polls. Unit tests replace both: a clock that
//! starts at a fixed time and moves only when the plugin waits, which it records instead.

#[cfg(test)]
pub(crate) use fake::{take_waits, unix_time, wait};

/// Seconds since the Unix epoch.
#[cfg(not(test))]
pub(crate) fn unix_time() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};

    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Blocks for `duration` (the host counts it against the call's wall-clock limit only).
#[cfg(not(test))]
pub(crate) fn wait(duration: std::time::Duration) {
    std::thread::sleep(duration);
}

#[cfg(test)]
mod fake {
    use std::cell::{Cell, RefCell};
    use std::time::Duration;

    /// 2027-01-15T08:00:00Z.
    const START: u64 = 1_800_000_000;

    thread_local! {
        static NOW: Cell<u64> = const { Cell::new(START) };
        static WAITS: RefCell<Vec<Duration>> = const { RefCell::new(Vec::new()) };
    }

    pub(crate) fn unix_time() -> u64 {
        NOW.with(Cell::get)
    }

    /// Records the wait and moves the clock on, without blocking.
    pub(crate) fn wait(duration: Duration) {
        WAITS.with(|waits| waits.borrow_mut().push(duration));
        NOW.with(|now| now.set(now.get() + duration.as_secs()));
    }

    /// The waits so far on this thread, forgotten.
    pub(crate) fn take_waits() -> Vec<Duration> {
        WAITS.with(|waits| std::mem::take(&mut *waits.borrow_mut()))
    }
}
