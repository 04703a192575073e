//! Pieces the controllers share: watch-fed caches, a work queue, controller
//! expectations, label selectors, pod helpers and template hashing.

pub mod events;
pub mod expectations;
pub mod hash;
pub mod informer;
pub mod pods;
pub mod queue;
pub mod raw;
pub mod selector;
