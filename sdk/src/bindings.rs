#![allow(missing_docs, clippy::all)]

//! wit-bindgen output for `certctl:plugin@0.1.0`. Plugin code never names these types: the SDK
//! converts them at the boundary (see `types.rs`, `error.rs`).
//!
//! `base` holds the shared `types` and the `host-log` import, generated once; each kind's world
//! reuses them through `with`, so there is one `PluginError` type to convert, not three. A
//! kind's world is generated only with its feature: its bindings describe that world's exports,
//! and a component must implement every export its bindings declare.

/// Shared types and `host-log`. Its world imports only, so linking it into any plugin adds no
/// export to implement (and an import that is not called is dropped from the component).
pub mod base {
    wit_bindgen::generate!({
        path: "../wit",
        inline: "
            package certctl:sdk-base;
            world base {
                import certctl:plugin/types@0.1.0;
                import certctl:plugin/host-log@0.1.0;
            }
        ",
        world: "certctl:sdk-base/base",
        generate_unused_types: true,
        generate_all,
    });
}

/// The `dns-solver-plugin` world.
#[cfg(feature = "dns-solver")]
pub mod dns_solver {
    wit_bindgen::generate!({
        path: "../wit",
        world: "certctl:plugin/dns-solver-plugin@0.1.0",
        with: {
            "certctl:plugin/types@0.1.0": crate::bindings::base::certctl::plugin::types,
            "certctl:plugin/host-log@0.1.0": crate::bindings::base::certctl::plugin::host_log,
        },
        pub_export_macro: true,
        export_macro_name: "export_dns_solver",
    });
}

/// The `notifier-plugin` world.
#[cfg(feature = "notifier")]
pub mod notifier {
    wit_bindgen::generate!({
        path: "../wit",
        world: "certctl:plugin/notifier-plugin@0.1.0",
        with: {
            "certctl:plugin/types@0.1.0": crate::bindings::base::certctl::plugin::types,
            "certctl:plugin/host-log@0.1.0": crate::bindings::base::certctl::plugin::host_log,
        },
        pub_export_macro: true,
        export_macro_name: "export_notifier",
    });
}

/// The `issuer-plugin` world, with the issuer-only host imports.
#[cfg(feature = "issuer")]
pub mod issuer {
    wit_bindgen::generate!({
        path: "../wit",
        world: "certctl:plugin/issuer-plugin@0.1.0",
        with: {
            "certctl:plugin/types@0.1.0": crate::bindings::base::certctl::plugin::types,
            "certctl:plugin/host-log@0.1.0": crate::bindings::base::certctl::plugin::host_log,
        },
        pub_export_macro: true,
        export_macro_name: "export_issuer",
    });
}
