//! Pieces the controllers share: watch-fed caches, a work queue, controller
//! expectations, label selectors, pod helpers, template hashing and the
//! sync scaffolding of the `Controller`-based workload controllers.

pub mod events;
pub mod expectations;
pub mod hash;
pub mod informer;
pub mod pods;
pub mod queue;
pub mod raw;
pub mod selector;
pub mod workload;
