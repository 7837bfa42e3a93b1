//! [`MockMail`]: the host's SMTP relay for notifier tests, as an outbox in memory.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::rc::Rc;

use crate::PluginError;
use crate::mail::{MAX_RECIPIENTS, MailMessage, is_address};

#[derive(Default)]
struct State {
    sent: Vec<MailMessage>,
    failures: VecDeque<PluginError>,
}

thread_local! {
    /// The [`MockMail`] installed on this thread, if any.
    static ACTIVE: RefCell<Option<Rc<RefCell<State>>>> = const { RefCell::new(None) };
}

/// The host's `host-mail` for native tests: while it is installed on a thread,
/// [`mail::send`](crate::mail::send) on that thread checks the message as the host does (1 to
/// [`MAX_RECIPIENTS`] recipients, each an [`is_address`], a one-line subject; same errors, same
/// messages) and keeps it in [`MockMail::sent`] instead of relaying it. [`MockMail::fail_next`]
/// makes the relay refuse instead, with the error a test wants to see handled. Dropping it
/// uninstalls it, and then panics (unless the test is already failing) if a failure queued with
/// `fail_next` was never used: the plugin did not send what the test expected.
///
/// ```
/// # #[cfg(feature = "notifier")] {
/// use certctl_sdk::PluginError;
/// use certctl_sdk::mail::{self, MailMessage};
/// use certctl_sdk::testkit::MockMail;
///
/// let outbox = MockMail::install();
/// let message = MailMessage {
///     to: vec!["ops@example.com".into()],
///     subject: "[certctl] web expires in 7 days".into(),
///     text_body: "web expires in 7 days".into(),
///     html_body: None,
/// };
/// assert_eq!(mail::send(&message), Ok(()));
/// assert_eq!(outbox.sent(), std::slice::from_ref(&message));
///
/// outbox.fail_next(PluginError::transient("the relay answered 421: try again later"));
/// assert!(mail::send(&message).is_err_and(|e| e.is_retryable()));
/// assert_eq!(outbox.sent().len(), 1, "a refused message is not sent");
/// # }
/// ```
pub struct MockMail {
    state: Rc<RefCell<State>>,
}

impl MockMail {
    /// Installs an empty outbox on the current thread, until the returned guard is dropped.
    ///
    /// # Panics
    /// If a `MockMail` is installed on this thread already.
    pub fn install() -> MockMail {
        let state = Rc::new(RefCell::new(State::default()));
        ACTIVE.with(|active| {
            let mut active = active.borrow_mut();
            assert!(
                active.is_none(),
                "MockMail::install: a MockMail is already installed on this thread; use that one (or drop it first)"
            );
            *active = Some(Rc::clone(&state));
        });
        MockMail { state }
    }

    /// The messages the relay accepted, oldest first.
    pub fn sent(&self) -> Vec<MailMessage> {
        self.state.borrow().sent.clone()
    }

    /// Makes the relay refuse the next message that passes the host's checks with `error`, as
    /// the host reports a relay's refusal: [`PluginError::Auth`] for refused credentials,
    /// [`PluginError::Transient`] for a connection failure or a 4xx reply,
    /// [`PluginError::Permanent`] for a 5xx reply, [`PluginError::InvalidConfig`] for a server
    /// without a relay. Calls queue up: two calls refuse the next two messages.
    pub fn fail_next(&self, error: PluginError) {
        self.state.borrow_mut().failures.push_back(error);
    }
}

impl Drop for MockMail {
    fn drop(&mut self) {
        // `try_with`: the thread's locals may already be gone when a guard lives in one.
        let _ = ACTIVE.try_with(|active| {
            if let Ok(mut active) = active.try_borrow_mut()
                && active.as_ref().is_some_and(|a| Rc::ptr_eq(a, &self.state))
            {
                *active = None;
            }
        });
        let unused = self.state.borrow().failures.len();
        if unused > 0 && !std::thread::panicking() {
            panic!("MockMail: {unused} failure(s) queued with fail_next were not used: fewer messages were sent");
        }
    }
}

impl fmt::Debug for MockMail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.borrow();
        f.debug_struct("MockMail")
            .field("sent", &state.sent)
            .field("failures", &state.failures)
            .finish()
    }
}

/// The host's checks of a message, in the host's order, with its messages.
fn check(message: &MailMessage) -> Result<(), PluginError> {
    if message.to.is_empty() || message.to.len() > MAX_RECIPIENTS {
        return Err(PluginError::invalid_config(format!(
            "a message needs 1 to {MAX_RECIPIENTS} recipients"
        )));
    }
    if let Some(bad) = message.to.iter().find(|a| !is_address(a)) {
        return Err(PluginError::invalid_config(format!("{bad:?} is not an e-mail address")));
    }
    if message.subject.contains(['\r', '\n']) {
        return Err(PluginError::permanent("the subject must be one line"));
    }
    Ok(())
}

/// `host-mail.send`, if a [`MockMail`] is installed on this thread.
pub(crate) fn send(message: &MailMessage) -> Option<Result<(), PluginError>> {
    let state = ACTIVE.try_with(|active| active.borrow().clone()).ok().flatten()?;
    if let Err(e) = check(message) {
        return Some(Err(e));
    }
    let mut state = state.borrow_mut();
    if let Some(e) = state.failures.pop_front() {
        return Some(Err(e));
    }
    state.sent.push(message.clone());
    Some(Ok(()))
}
