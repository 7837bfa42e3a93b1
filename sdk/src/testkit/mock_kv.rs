//! [`MockKv`]: an in-memory `host-kv` for issuer tests.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;

use crate::PluginError;
use crate::kv::{MAX_KEY_BYTES, MAX_KEYS, MAX_VALUE_BYTES};

type Store = Rc<RefCell<BTreeMap<String, Vec<u8>>>>;

thread_local! {
    /// The [`MockKv`] installed on this thread, if any.
    static ACTIVE: RefCell<Option<Store>> = const { RefCell::new(None) };
}

/// An in-memory [`kv`](crate::kv) store for native tests: while it is installed on a thread,
/// `certctl_sdk::kv` on that thread reads and writes it, with the host's limits and messages
/// (keys up to [`MAX_KEY_BYTES`] bytes, values up to [`MAX_VALUE_BYTES`], at most [`MAX_KEYS`]
/// keys). Like the host's store it outlives the calls: install it once per test and call the
/// plugin several times (`begin`, then `resume`). Dropping it uninstalls it.
///
/// ```
/// # #[cfg(feature = "issuer")] {
/// use certctl_sdk::{PluginError, kv};
/// use certctl_sdk::testkit::MockKv;
///
/// let store = MockKv::install();
/// kv::set("account", b"https://ca.example.test/acct/1").expect("stored");
/// assert_eq!(store.get("account").as_deref(), Some(&b"https://ca.example.test/acct/1"[..]));
/// assert_eq!(
///     kv::set("big", &vec![0; 70 * 1024]),
///     Err(PluginError::Permanent("value is 71680 bytes; the limit is 65536".into()))
/// );
/// # }
/// ```
pub struct MockKv {
    store: Store,
}

impl MockKv {
    /// Installs an empty store on the current thread, until the returned guard is dropped.
    ///
    /// # Panics
    /// If a `MockKv` is installed on this thread already.
    pub fn install() -> MockKv {
        let store = Store::default();
        ACTIVE.with(|active| {
            let mut active = active.borrow_mut();
            assert!(
                active.is_none(),
                "MockKv::install: a MockKv is already installed on this thread; use that one (or drop it first)"
            );
            *active = Some(Rc::clone(&store));
        });
        MockKv { store }
    }

    /// The value under `key`, as [`kv::get`](crate::kv::get) would return it.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.store.borrow().get(key).cloned()
    }

    /// Stores a value as [`kv::set`](crate::kv::set) does, limits included: to prepare the
    /// state a call finds.
    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), PluginError> {
        set_in(&self.store, key, value).map_err(PluginError::Permanent)
    }

    /// Everything stored, by key.
    pub fn entries(&self) -> BTreeMap<String, Vec<u8>> {
        self.store.borrow().clone()
    }
}

impl Drop for MockKv {
    fn drop(&mut self) {
        let _ = ACTIVE.try_with(|active| {
            if let Ok(mut active) = active.try_borrow_mut()
                && active.as_ref().is_some_and(|a| Rc::ptr_eq(a, &self.store))
            {
                *active = None;
            }
        });
    }
}

impl fmt::Debug for MockKv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockKv")
            .field("keys", &self.store.borrow().keys().collect::<Vec<_>>())
            .finish()
    }
}

fn active() -> Option<Store> {
    ACTIVE.try_with(|active| active.borrow().clone()).ok().flatten()
}

/// The host's `kv_set`, in memory: the same checks, in the same order, with the same messages.
fn set_in(store: &Store, key: &str, value: &[u8]) -> Result<(), String> {
    if key.len() > MAX_KEY_BYTES {
        return Err(format!("key is {} bytes; the limit is {MAX_KEY_BYTES}", key.len()));
    }
    if value.len() > MAX_VALUE_BYTES {
        return Err(format!(
            "value is {} bytes; the limit is {MAX_VALUE_BYTES}",
            value.len()
        ));
    }
    let mut store = store.borrow_mut();
    if !store.contains_key(key) && store.len() >= MAX_KEYS {
        return Err(format!("this instance already has {MAX_KEYS} keys; delete some first"));
    }
    store.insert(key.to_string(), value.to_vec());
    Ok(())
}

/// `host-kv.get`, if a [`MockKv`] is installed on this thread.
pub(crate) fn get(key: &str) -> Option<Vec<u8>> {
    active()?.borrow().get(key).cloned()
}

/// `host-kv.set`, if a [`MockKv`] is installed on this thread.
pub(crate) fn set(key: &str, value: &[u8]) -> Option<Result<(), String>> {
    Some(set_in(&active()?, key, value))
}

/// `host-kv.delete`, if a [`MockKv`] is installed on this thread.
pub(crate) fn delete(key: &str) {
    if let Some(store) = active() {
        store.borrow_mut().remove(key);
    }
}
