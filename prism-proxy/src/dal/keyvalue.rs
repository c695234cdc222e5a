//! The KeyValue DAL's descriptor; its service is `crate::kv`.

use std::any::TypeId;

use pattern_core::KeyValueBackend;

use super::{Dal, DalModule, Migration};

/// The KeyValue DAL.
pub const KEYVALUE: Dal = Dal(&DalModule {
    name: "keyvalue",
    service: "prism.keyvalue.v1.KeyValueService",
    backend_type: TypeId::of::<dyn KeyValueBackend>,
    migration: Migration::Supported { capability: None },
    reusable: true,
    pattern_modes: true,
    section: None,
});
