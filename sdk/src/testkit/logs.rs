//! Natively, [`log`](crate::log) lines are kept per thread, for tests to assert on.

use std::cell::RefCell;
use std::fmt;

use crate::log::Level;

thread_local! {
    static LINES: RefCell<Vec<LogLine>> = const { RefCell::new(Vec::new()) };
}

/// One line a plugin logged with [`log`](crate::log).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogLine {
    /// Its level.
    pub level: Level,
    /// The message.
    pub message: String,
}

impl fmt::Display for LogLine {
    /// `[Info] message`, as printed to stderr.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:?}] {}", self.level, self.message)
    }
}

pub(crate) fn capture(level: Level, message: &str) {
    // `try_with`: logging from a thread-local's destructor must not panic.
    let _ = LINES.try_with(|lines| {
        lines.borrow_mut().push(LogLine {
            level,
            message: message.to_string(),
        });
    });
}

/// The lines logged on this thread so far (each test runs on its own thread), oldest first.
pub fn logs() -> Vec<LogLine> {
    LINES.with(|lines| lines.borrow().clone())
}

/// The lines logged on this thread so far, forgetting them: the next call returns only what is
/// logged after this one.
pub fn take_logs() -> Vec<LogLine> {
    LINES.with(|lines| std::mem::take(&mut *lines.borrow_mut()))
}
