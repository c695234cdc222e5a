//! The PubSub DAL's descriptor; its service is `crate::pubsub`.

use std::any::TypeId;

use pattern_core::pubsub::PubSubBackend;

use super::{Dal, DalModule, Migration};

/// The PubSub DAL.
pub const PUBSUB: Dal = Dal(&DalModule {
    name: "pubsub",
    service: "prism.pubsub.v1.PubSubService",
    backend_type: TypeId::of::<dyn PubSubBackend>,
    migration: Migration::Refused(
        "this namespace serves PubSub, whose messages in flight and consumer positions stay \
         with their backend; a PubSub namespace moves by switching its publishers and \
         subscribers",
    ),
    reusable: false,
    pattern_modes: true,
    section: Some("pubsub"),
});
