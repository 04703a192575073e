//! kedge-api owns the description of the Kubernetes API that kedge serves:
//! the resource registry (group, version, kind, plural, scope, verbs, short
//! names), `Status` errors, object-name and label validation, label and field
//! selectors, per-kind strategies (defaulting, validation, status fields) and
//! server-side printing (Tables), and the conversions between the versions
//! of kinds served as views of one storage (Events, HorizontalPodAutoscalers).
//!
//! It works on raw JSON (`serde_json::Value`) and must not touch storage,
//! HTTP or the network.

pub mod crd_schema;
pub mod events;
pub mod fieldsv1;
pub mod hpa;
pub mod meta;
pub mod names;
pub mod patch_meta;
pub mod protobuf;
pub mod registry;
pub mod selectors;
pub mod smp;
pub mod ssa;
pub mod status;
pub mod strategy;
pub mod table;

pub use registry::{ResourceInfo, RESOURCES};
pub use status::{ApiError, Result};
