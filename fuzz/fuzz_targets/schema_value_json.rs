//! Values of a namespace with a schema and `encoding: json` (the proto3
//! JSON mapping), as clients write them (Put, Mutate) and as stored values
//! are masked for callers without `pii:read`.
//!
//! Checks (see `prism_fuzz::check_value`): no panic; a value is withheld
//! from a masked read exactly when it does not decode; a value that decodes
//! masks to one the strict schema accepts.

#![no_main]

use libfuzzer_sys::fuzz_target;
use prism_proxy::schema::ValueEncoding;

fuzz_target!(|value: &[u8]| {
    prism_fuzz::check_value(ValueEncoding::Json, value);
});
