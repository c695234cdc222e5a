//! The TimeSeries DAL's descriptor; its service is `crate::timeseries`.

use std::any::TypeId;

use pattern_core::Capability;
use pattern_core::timeseries::TimeSeriesBackend;

use super::{Dal, DalModule, Migration};

/// The TimeSeries DAL.
pub const TIMESERIES: Dal = Dal(&DalModule {
    name: "timeseries",
    service: "prism.timeseries.v1.TimeSeriesService",
    backend_type: TypeId::of::<dyn TimeSeriesBackend>,
    migration: Migration::Supported {
        capability: Some(Capability::Scan),
    },
    reusable: true,
    pattern_modes: true,
    section: Some("timeseries"),
});
