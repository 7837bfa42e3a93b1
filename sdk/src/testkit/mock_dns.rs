//! [`MockDns`]: a stand-in for the host's `host-dns` (DNS solvers that send DNS messages
//! themselves, such as RFC 2136 updates). A test installs a responder that plays the server.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

use crate::PluginError;
use crate::dns::Transport;

type Responder = Box<dyn FnMut(&str, &[u8], Transport) -> Result<Vec<u8>, PluginError>>;

struct State {
    responder: Responder,
    /// (server, message, transport) of every exchange, oldest first.
    seen: Vec<(String, Vec<u8>, Transport)>,
}

thread_local! {
    static ACTIVE: RefCell<Option<Rc<RefCell<State>>>> = const { RefCell::new(None) };
}

/// Answers `certctl_sdk::dns::exchange` on the current thread with `responder`, until dropped.
///
/// ```
/// # #[cfg(feature = "dns-solver")] {
/// use certctl_sdk::dns::{Transport, exchange};
/// use certctl_sdk::testkit::MockDns;
///
/// let dns = MockDns::install(|_server, message, _transport| {
///     let mut answer = message.to_vec();
///     answer[2] |= 0x80; // QR: a response
///     Ok(answer)
/// });
/// let answer = exchange("127.0.0.1:5353", &[0x12, 0x34, 0x28, 0, 0, 1, 0, 0, 0, 0, 0, 0], Transport::Udp).unwrap();
/// assert_eq!(answer[2] & 0x80, 0x80);
/// assert_eq!(dns.seen()[0].0, "127.0.0.1:5353");
/// # }
/// ```
pub struct MockDns {
    state: Rc<RefCell<State>>,
}

impl MockDns {
    /// # Panics
    /// If a `MockDns` is installed on this thread already.
    pub fn install(responder: impl FnMut(&str, &[u8], Transport) -> Result<Vec<u8>, PluginError> + 'static) -> MockDns {
        let state = Rc::new(RefCell::new(State {
            responder: Box::new(responder),
            seen: Vec::new(),
        }));
        ACTIVE.with(|active| {
            let mut active = active.borrow_mut();
            assert!(
                active.is_none(),
                "MockDns::install: a MockDns is already installed on this thread"
            );
            *active = Some(Rc::clone(&state));
        });
        MockDns { state }
    }

    /// Every exchange so far: server, message, transport.
    pub fn seen(&self) -> Vec<(String, Vec<u8>, Transport)> {
        self.state.borrow().seen.clone()
    }
}

impl Drop for MockDns {
    fn drop(&mut self) {
        let _ = ACTIVE.try_with(|active| {
            if let Ok(mut active) = active.try_borrow_mut()
                && active.as_ref().is_some_and(|a| Rc::ptr_eq(a, &self.state))
            {
                *active = None;
            }
        });
    }
}

impl fmt::Debug for MockDns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockDns")
            .field("exchanges", &self.state.borrow().seen.len())
            .finish()
    }
}

pub(crate) fn exchange(server: &str, message: &[u8], transport: Transport) -> Option<Result<Vec<u8>, PluginError>> {
    let state = ACTIVE.try_with(|active| active.borrow().clone()).ok().flatten()?;
    let mut state = state.borrow_mut();
    state.seen.push((server.to_string(), message.to_vec(), transport));
    Some((state.responder)(server, message, transport))
}
