//! Set-up shared by Prism's fuzz targets: the schemas values are checked
//! against, the authenticator tokens are verified by, and the page token
//! checksum a client can compute.
//!
//! Everything a target needs is built once per process, from keys and
//! files made at start-up (nothing secret is committed), and the files are
//! removed again once read.

use std::sync::{Arc, OnceLock};

use prism_proxy::schema::{Schema, SchemaConfig, ValueEncoding};
use prost_reflect::{DynamicMessage, ReflectMessage, Value};

/// The schema of the `schema_value_*` targets.
pub const VALUE_PROTO: &str = include_str!("../value.proto");

/// The message every value is checked as.
pub const VALUE_MESSAGE: &str = "prism.fuzz.v1.Profile";

/// One encoding's schemas: `strict` refuses undeclared fields (the
/// default), `lenient` accepts them (`schema.allow_unknown_fields`).
pub struct Schemas {
    pub strict: Schema,
    pub lenient: Schema,
}

/// The schemas for `encoding`, compiled from [`VALUE_PROTO`] once.
pub fn schemas(encoding: ValueEncoding) -> &'static Schemas {
    static PROTOBUF: OnceLock<Schemas> = OnceLock::new();
    static JSON: OnceLock<Schemas> = OnceLock::new();
    let cell = match encoding {
        ValueEncoding::Protobuf => &PROTOBUF,
        ValueEncoding::Json => &JSON,
    };
    cell.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(dir.path().join("value.proto"), VALUE_PROTO).expect("write value.proto");
        let load = |allow_unknown_fields| {
            let config = SchemaConfig {
                proto: "value.proto".into(),
                message: VALUE_MESSAGE.into(),
                encoding,
                allow_unknown_fields,
            };
            Schema::load(&config, dir.path()).expect("fuzz/value.proto compiles")
        };
        Schemas {
            strict: load(false),
            lenient: load(true),
        }
    })
}

/// Checks what the proxy promises of a value of a namespace with a schema:
///
/// - validating and masking never panic;
/// - a value is withheld from a masked read exactly when it does not
///   decode with that schema (in protobuf, undeclared fields decode and
///   are kept as unknown; in JSON, the strict schema refuses them while
///   decoding);
/// - a value that decodes masks to a value the strict schema accepts
///   (masking drops undeclared fields), and that masks again without
///   being withheld;
/// - no address street (`Address.street`, PII kind address, masked to
///   `***`) survives masking, wherever the address is: nested, in a list,
///   a map, a oneof or inside a `google.protobuf.Any`.
pub fn check_value(encoding: ValueEncoding, value: &[u8]) {
    let Schemas { strict, lenient } = schemas(encoding);
    let lenient_decodes = lenient.validate(value).is_ok();
    let strict_valid = strict.validate(value).is_ok();
    if strict_valid {
        assert!(
            lenient_decodes,
            "a value the strict schema accepts must decode"
        );
    }
    let strict_decodes = match encoding {
        ValueEncoding::Protobuf => lenient_decodes,
        ValueEncoding::Json => strict_valid,
    };
    for (schema, decodes) in [(strict, strict_decodes), (lenient, lenient_decodes)] {
        let outcome = schema.mask(value);
        // JSON has one exception: `Any` values nested deeper than masking
        // goes are emptied, and a JSON value with a typeless `Any` in it is
        // withheld.
        let deep_anys = encoding == ValueEncoding::Json
            && String::from_utf8_lossy(value)
                .matches("google.protobuf.Any")
                .count()
                > 8;
        if !deep_anys {
            assert_eq!(
                outcome.withheld, !decodes,
                "a value is withheld exactly when it does not decode"
            );
        }
        if outcome.withheld {
            assert_eq!(outcome.replacement.as_deref(), Some(&[][..]));
            continue;
        }
        let masked = outcome.replacement.as_deref().unwrap_or(value);
        if let Err(e) = strict.validate(masked) {
            panic!("the masked value is refused by its own schema: {}", e.0);
        }
        assert_streets_masked(strict, masked);
        let again = schema.mask(masked);
        assert!(!again.withheld, "a masked value masks again");
    }
}

/// Decodes a masked value and checks every `Address.street` in it.
fn assert_streets_masked(schema: &Schema, masked: &[u8]) {
    let descriptor = schema.descriptor().clone();
    let message = match schema.encoding() {
        ValueEncoding::Protobuf => DynamicMessage::decode(descriptor, masked)
            .expect("a masked value decodes (it was just validated)"),
        ValueEncoding::Json => {
            let mut de = serde_json::Deserializer::from_slice(masked);
            DynamicMessage::deserialize(descriptor, &mut de)
                .expect("a masked value decodes (it was just validated)")
        }
    };
    walk_streets(&message, 0);
}

/// `anys`: how many `Any` values `message` is inside (masking empties those
/// nested deeper than a few).
fn walk_streets(message: &DynamicMessage, anys: usize) {
    let descriptor = message.descriptor();
    match descriptor.full_name() {
        "prism.fuzz.v1.Address" => {
            if let Some(street) = message.get_field_by_name("street")
                && let Some(street) = street.as_str()
            {
                assert!(
                    street.is_empty() || street == "***",
                    "an address street survived masking: {street:?}"
                );
            }
        }
        "google.protobuf.Any" => {
            let type_url = message.get_field_by_name("type_url");
            let name = type_url
                .as_deref()
                .and_then(Value::as_str)
                .and_then(|url| url.rsplit('/').next())
                .unwrap_or_default();
            let value = message.get_field_by_name("value");
            if let (Some(inner), Some(bytes)) = (
                descriptor.parent_pool().get_message_by_name(name),
                value.as_deref().and_then(Value::as_bytes),
            ) && anys < 16
                && let Ok(inner) = DynamicMessage::decode(inner, bytes.as_ref())
            {
                walk_streets(&inner, anys + 1);
            }
        }
        _ => {}
    }
    for (_, value) in message.fields() {
        walk_value(value, anys);
    }
}

fn walk_value(value: &Value, anys: usize) {
    match value {
        Value::Message(m) => walk_streets(m, anys),
        Value::List(items) => items.iter().for_each(|v| walk_value(v, anys)),
        Value::Map(entries) => entries.values().for_each(|v| walk_value(v, anys)),
        _ => {}
    }
}

/// The server's page token checksum over `body`: a keyed-by-nothing
/// fingerprint, so any client can compute it (it detects corruption, not
/// forgery; the fingerprint binding and the decoding must hold on their
/// own).
pub fn page_token_checksum(body: &[u8]) -> u32 {
    let mut fp = pattern_core::idempotency::Fingerprint::new("token");
    fp.bytes(body);
    let h = fp.finish();
    (h ^ (h >> 32)) as u32
}

/// Lowercase hex, as page tokens are written.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The issuer and audience the fuzzed authenticator expects.
pub const JWT_ISSUER: &str = "https://issuer.fuzz.test/";
pub const JWT_AUDIENCE: &str = "prism";
/// `auth.jwt.leeway_secs` of the fuzzed authenticator.
pub const JWT_LEEWAY_SECS: u64 = 30;

/// An authenticator with JWT enabled, an HS256 secret and a JWKS with one
/// ES256 key (`kid` "fuzz-es256"), all generated at start-up; and the
/// runtime to call it on.
pub struct Auth {
    pub runtime: tokio::runtime::Runtime,
    pub authenticator: Arc<prism_proxy::auth::Authenticator>,
    /// Signs HS256 tokens with the authenticator's secret.
    pub hs256: jsonwebtoken::EncodingKey,
}

/// The shared [`Auth`].
pub fn auth() -> &'static Auth {
    static AUTH: OnceLock<Auth> = OnceLock::new();
    AUTH.get_or_init(|| {
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use prism_proxy::config::{AuthConfig, JwksLocation, JwtConfig};

        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut secret = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
            .expect("random bytes");
        // A secret file is text: 64 hex digits.
        let secret = hex(&secret).into_bytes();
        std::fs::write(dir.path().join("hs256.secret"), &secret).expect("write the secret");
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("a key");
        let point = pair.public_key_raw();
        let jwks = serde_json::json!({ "keys": [{
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": "fuzz-es256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }]});
        std::fs::write(dir.path().join("jwks.json"), jwks.to_string()).expect("write the JWKS");
        let config = AuthConfig {
            enabled: true,
            jwt: Some(JwtConfig {
                issuer: JWT_ISSUER.into(),
                audience: JWT_AUDIENCE.into(),
                jwks: Some(JwksLocation::File(dir.path().join("jwks.json"))),
                hs256_secret_file: Some(dir.path().join("hs256.secret")),
                leeway_secs: JWT_LEEWAY_SECS,
                groups_claim: "groups".into(),
            }),
            tls: None,
            admins: Vec::new(),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let authenticator = runtime
            .block_on(prism_proxy::auth::Authenticator::new(&config))
            .expect("the authenticator starts");
        // The keys are in memory now; a token with an unknown `kid` makes
        // the JWKS be read again, finds no file and keeps the loaded keys.
        drop(dir);
        Auth {
            runtime,
            authenticator,
            hs256: jsonwebtoken::EncodingKey::from_secret(&secret),
        }
    })
}

impl Auth {
    /// Authenticates a call whose `authorization` header is `value`
    /// (`None` when it is not a valid header value: the transport refuses
    /// it before the proxy sees it).
    pub fn authenticate(
        &self,
        value: &[u8],
    ) -> Option<Result<prism_proxy::auth::Principal, prism_proxy::auth::AuthError>> {
        use tonic::codegen::http::{HeaderMap, HeaderValue, header::AUTHORIZATION};
        let value = HeaderValue::from_bytes(value).ok()?;
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, value);
        Some(
            self.runtime
                .block_on(self.authenticator.authenticate(&headers, None)),
        )
    }
}
