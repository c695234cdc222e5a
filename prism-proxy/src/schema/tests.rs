use super::*;

pub(crate) const PROFILE: &str = r#"
syntax = "proto3";
package acme.users.v1;
import "prism/options/v1/options.proto";

message Address {
  string street = 1 [(prism.options.v1.pii) = PII_KIND_ADDRESS];
  string country = 2;
}

message UserProfile {
  option (prism.options.v1.backend) = "postgres";
  option (prism.options.v1.consistency) = CONSISTENCY_STRONG;
  option (prism.options.v1.retention_days) = 365;
  option (prism.options.v1.estimated_read_rps) = 500;

  string user_id = 1 [(prism.options.v1.index) = INDEX_KIND_PRIMARY];
  string email = 2 [(prism.options.v1.pii) = PII_KIND_EMAIL,
                    (prism.options.v1.index) = INDEX_KIND_SECONDARY];
  string full_name = 3 [(prism.options.v1.pii) = PII_KIND_NAME];
  repeated string phones = 4 [(prism.options.v1.pii) = PII_KIND_PHONE];
  string ssn = 5 [(prism.options.v1.pii) = PII_KIND_SSN,
                  (prism.options.v1.access_audit) = true];
  Address home = 6;
  repeated Address previous = 7;
  int64 birth_unix_days = 8 [(prism.options.v1.pii) = PII_KIND_DATE_OF_BIRTH];
  string plan = 9;
}

message Order {
  string order_id = 1;
  int64 cents = 2;
  string note = 20;
}
"#;

pub(crate) const JANE: &str = r#"{"userId":"u-1","email":"jane.doe@example.com","fullName":"Jane Doe",
 "phones":["+1 415 555 0142"],"ssn":"123-45-6789","home":{"street":"1 Main St","country":"NL"},
 "previous":[{"street":"9 Old Rd","country":"BE"}],"birthUnixDays":"7411","plan":"gold"}"#;

/// Writes the test schema into a fresh directory and loads `message`.
pub(crate) fn load(message: &str, encoding: ValueEncoding) -> (tempfile::TempDir, Schema) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("profile.proto"), PROFILE).unwrap();
    let config = SchemaConfig {
        proto: "profile.proto".into(),
        message: message.into(),
        encoding,
        allow_unknown_fields: false,
    };
    let schema = Schema::load(&config, dir.path()).unwrap();
    (dir, schema)
}

fn from_json(schema: &Schema, json: &str) -> DynamicMessage {
    let mut de = serde_json::Deserializer::from_str(json);
    DynamicMessage::deserialize(schema.message.clone(), &mut de).unwrap()
}

fn encode(schema: &Schema, json: &str) -> Vec<u8> {
    prost::Message::encode_to_vec(&from_json(schema, json))
}

fn decode_json(schema: &Schema, bytes: &[u8]) -> serde_json::Value {
    let m = DynamicMessage::decode(schema.message.clone(), bytes).unwrap();
    serde_json::to_value(&m).unwrap()
}

#[test]
fn annotations_are_read_at_runtime() {
    let (_dir, schema) = load("acme.users.v1.UserProfile", ValueEncoding::Protobuf);
    let a = schema.annotations();
    assert_eq!(a.backend.as_deref(), Some("postgres"));
    assert_eq!(a.consistency.as_deref(), Some("strong"));
    assert_eq!(a.retention_days, Some(365));
    assert_eq!(a.estimated_read_rps, Some(500));
    assert_eq!(a.estimated_write_rps, None);
    let by_path = |p: &str| schema.fields().iter().find(|f| f.path == p).cloned();
    assert_eq!(
        by_path("user_id").unwrap().index.as_deref(),
        Some("primary")
    );
    let email = by_path("email").unwrap();
    assert_eq!(email.pii, Some(PiiKind::Email));
    assert_eq!(email.index.as_deref(), Some("secondary"));
    assert!(by_path("ssn").unwrap().access_audit);
    assert_eq!(by_path("phones[]").unwrap().pii, Some(PiiKind::Phone));
    assert_eq!(by_path("home.street").unwrap().pii, Some(PiiKind::Address));
    assert_eq!(
        by_path("previous[].street").unwrap().pii,
        Some(PiiKind::Address)
    );
    assert!(
        by_path("plan").is_none(),
        "unannotated fields are not listed"
    );
    assert!(schema.has_pii());
    assert!(schema.has_access_audit());
    let (_dir, order) = load("acme.users.v1.Order", ValueEncoding::Protobuf);
    assert!(!order.has_pii());
    assert_eq!(order.annotations(), &MessageAnnotations::default());
}

#[test]
fn a_value_of_the_message_is_accepted() {
    let (_dir, schema) = load("acme.users.v1.UserProfile", ValueEncoding::Protobuf);
    schema.validate(&encode(&schema, JANE)).unwrap();
    schema.validate(b"").unwrap(); // the empty message is a valid value
}

#[test]
fn bytes_that_do_not_decode_are_refused_without_quoting_them() {
    let (_dir, schema) = load("acme.users.v1.UserProfile", ValueEncoding::Protobuf);
    let err = schema
        .validate(b"jane.doe@example.com is not protobuf")
        .unwrap_err();
    assert!(
        err.0
            .contains("does not decode as acme.users.v1.UserProfile"),
        "{err}"
    );
    assert!(!err.0.contains("jane"), "{err}");
}

#[test]
fn a_value_of_another_type_is_refused() {
    let (_dir, schema) = load("acme.users.v1.UserProfile", ValueEncoding::Protobuf);
    let (_d, order) = load("acme.users.v1.Order", ValueEncoding::Protobuf);
    // Field 1 has the same wire type in both, field 20 is not in UserProfile.
    let value = encode(&order, r#"{"orderId":"o-1","note":"ring twice"}"#);
    let err = schema.validate(&value).unwrap_err();
    assert!(err.0.contains("field number 20"), "{err}");
    assert!(!err.0.contains("ring twice"), "{err}");
    // Field 2 is an int64 in Order and a string in UserProfile.
    let value = encode(
        &order,
        r#"{"orderId":"o-1","cents":"1250","note":"ring twice"}"#,
    );
    let err = schema.validate(&value).unwrap_err();
    assert!(err.0.contains("does not decode"), "{err}");
    assert!(err.0.contains("acme.users.v1.UserProfile"), "{err}");
    assert!(!err.0.contains("ring twice"), "{err}");
}

#[test]
fn unknown_fields_pass_when_the_namespace_allows_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("profile.proto"), PROFILE).unwrap();
    let config = SchemaConfig {
        proto: "profile.proto".into(),
        message: "acme.users.v1.UserProfile".into(),
        encoding: ValueEncoding::Protobuf,
        allow_unknown_fields: true,
    };
    let schema = Schema::load(&config, dir.path()).unwrap();
    let (_d, order) = load("acme.users.v1.Order", ValueEncoding::Protobuf);
    let value = encode(&order, r#"{"orderId":"o-1","note":"ring twice"}"#);
    schema.validate(&value).unwrap();
    // ... and are dropped when the value is masked.
    let masked = schema.mask(&value);
    let json = decode_json(&schema, masked.replacement.as_deref().unwrap());
    assert_eq!(json, serde_json::json!({"userId": "o-1"}));
}

#[test]
fn json_values_follow_the_proto_json_mapping() {
    let (_dir, schema) = load("acme.users.v1.UserProfile", ValueEncoding::Json);
    schema.validate(JANE.as_bytes()).unwrap();
    // proto field names are accepted too
    schema
        .validate(br#"{"user_id":"u-2","full_name":"Al"}"#)
        .unwrap();
    let err = schema.validate(br#"{"email": 12}"#).unwrap_err();
    assert!(
        err.0
            .contains("not valid JSON for acme.users.v1.UserProfile"),
        "{err}"
    );
    let err = schema
        .validate(br#"{"jane.doe@example.com":"Jane Doe"}"#)
        .unwrap_err();
    assert!(
        err.0
            .contains("has a field the schema does not define (in the top-level object)"),
        "{err}"
    );
    assert!(!err.0.contains("jane.doe"), "the key is not quoted: {err}");
    assert!(!err.0.contains("Jane Doe"), "{err}");
    let err = schema.validate(br#"{"email": 4155550142}"#).unwrap_err();
    assert!(
        !err.0.contains("4155550142"),
        "numbers are not quoted: {err}"
    );
    assert!(err.0.contains("expected a string"), "{err}");
    let err = schema
        .validate(br#"{"birthUnixDays":"jane.doe@example.com"}"#)
        .unwrap_err();
    assert!(!err.0.contains("jane.doe"), "values are not quoted: {err}");
    let err = schema
        .validate(b"{\"plan\":\"gold\"} trailing")
        .unwrap_err();
    assert!(err.0.contains("trailing"), "{err}");
    let err = schema.validate(&[0xff, 0xfe]).unwrap_err();
    assert!(err.0.contains("not UTF-8"), "{err}");
}

#[test]
fn masking_hides_every_pii_field_and_keeps_the_rest() {
    let (_dir, schema) = load("acme.users.v1.UserProfile", ValueEncoding::Protobuf);
    let out = schema.mask(&encode(&schema, JANE));
    assert!(!out.withheld);
    let json = decode_json(&schema, out.replacement.as_deref().unwrap());
    assert_eq!(
        json,
        serde_json::json!({
            "userId": "u-1",
            "email": "j***@example.com",
            "fullName": "J.",
            "phones": ["+* *** *** **42"],
            "ssn": "***-**-6789",
            "home": {"street": "***", "country": "NL"},
            "previous": [{"street": "***", "country": "BE"}],
            "plan": "gold"
        }),
        "birthUnixDays (not a string) is cleared"
    );
    let mut fields = out.masked_fields.clone();
    fields.sort();
    assert_eq!(
        fields,
        [
            "birth_unix_days",
            "email",
            "full_name",
            "home.street",
            "phones[]",
            "previous[].street",
            "ssn"
        ]
    );
}

#[test]
fn masking_json_values_returns_json() {
    let (_dir, schema) = load("acme.users.v1.UserProfile", ValueEncoding::Json);
    let out = schema.mask(JANE.as_bytes());
    let json: serde_json::Value =
        serde_json::from_slice(out.replacement.as_deref().unwrap()).unwrap();
    assert_eq!(json["email"], "j***@example.com");
    assert_eq!(json["ssn"], "***-**-6789");
    assert_eq!(json["plan"], "gold");
    let text = String::from_utf8(out.replacement.unwrap()).unwrap();
    for secret in [
        "jane.doe",
        "Jane Doe",
        "0142",
        "123-45",
        "1 Main St",
        "7411",
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
}

#[test]
fn values_without_pii_present_are_still_re_encoded_and_a_value_that_no_longer_decodes_is_withheld()
{
    let (_dir, schema) = load("acme.users.v1.UserProfile", ValueEncoding::Protobuf);
    let out = schema.mask(&encode(&schema, r#"{"plan":"gold"}"#));
    assert!(out.masked_fields.is_empty());
    assert_eq!(
        decode_json(&schema, out.replacement.as_deref().unwrap()),
        serde_json::json!({"plan": "gold"})
    );
    let out = schema.mask(b"\xff\xff garbage");
    assert!(out.withheld);
    assert_eq!(out.replacement.as_deref(), Some(&[][..]));
    let (_dir, order) = load("acme.users.v1.Order", ValueEncoding::Protobuf);
    assert_eq!(
        order.mask(b"anything").replacement,
        None,
        "no PII: unchanged"
    );
}

#[test]
fn load_errors_say_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("profile.proto"), PROFILE).unwrap();
    std::fs::write(
        dir.path().join("broken.proto"),
        "syntax = \"proto3\"; message {",
    )
    .unwrap();
    let config = |proto: &str, message: &str| SchemaConfig {
        proto: proto.into(),
        message: message.into(),
        encoding: ValueEncoding::Protobuf,
        allow_unknown_fields: false,
    };
    let err = Schema::load(&config("missing.proto", "x.Y"), dir.path()).unwrap_err();
    assert!(err.contains("missing.proto does not exist"), "{err}");
    let err = Schema::load(&config("broken.proto", "x.Y"), dir.path()).unwrap_err();
    assert!(err.contains("does not compile"), "{err}");
    let err = Schema::load(&config("profile.proto", "UserProfile"), dir.path()).unwrap_err();
    assert!(err.contains("is not defined"), "{err}");
    assert!(
        err.contains("acme.users.v1.UserProfile"),
        "lists the messages: {err}"
    );
    assert!(!err.contains("google.protobuf"), "{err}");
}

#[test]
fn json_values_with_a_key_twice_are_refused_naming_the_schema_field() {
    let (_dir, schema) = load("acme.users.v1.UserProfile", ValueEncoding::Json);
    let err = schema
        .validate(br#"{"email": "a@b.c", "email": "real@x.y"}"#)
        .unwrap_err();
    assert_eq!(
        err.0,
        "the value is not valid JSON for acme.users.v1.UserProfile: an object has a duplicate \
         key (at field `email`); send each field once, under its JSON name or its proto name"
    );
    let err = schema
        .validate(br#"{"home": {"street": "1 Main St", "street": "2 Side St"}}"#)
        .unwrap_err();
    assert!(err.0.contains("(at field `home.street`)"), "{err}");
    assert!(!err.0.contains("Main"), "{err}");
    let err = schema
        .validate(br#"{"fullName": "Jane Doe", "full_name": "John Roe"}"#)
        .unwrap_err();
    assert!(err.0.contains("(at field `full_name`)"), "{err}");
    // Duplicates are refused even where unknown fields are allowed.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("profile.proto"), PROFILE).unwrap();
    let lenient = Schema::load(
        &SchemaConfig {
            proto: "profile.proto".into(),
            message: "acme.users.v1.UserProfile".into(),
            encoding: ValueEncoding::Json,
            allow_unknown_fields: true,
        },
        dir.path(),
    )
    .unwrap();
    lenient.validate(br#"{"nickname": "JD"}"#).unwrap();
    let err = lenient
        .validate(br#"{"nickname": "JD", "nickname": "Jane"}"#)
        .unwrap_err();
    assert!(
        err.0.contains("duplicate key (in the top-level object)"),
        "{err}"
    );
    assert!(!err.0.contains("nickname"), "{err}");
    // A stored value with a key twice is withheld from masked readers.
    assert!(
        schema
            .mask(br#"{"email": "a@b.c", "email": "real@x.y"}"#)
            .withheld
    );
}

#[test]
fn a_protobuf_value_with_a_singular_field_twice_is_valid_protobuf() {
    // The protobuf encoding defines it (the last one wins, messages
    // merge), so every conforming parser reads the same value.
    let (_dir, schema) = load("acme.users.v1.UserProfile", ValueEncoding::Protobuf);
    let mut value = encode(&schema, r#"{"email":"a@b.c"}"#);
    value.extend(encode(&schema, r#"{"email":"real@x.y"}"#));
    schema.validate(&value).unwrap();
    assert_eq!(
        decode_json(&schema, &value),
        serde_json::json!({"email": "real@x.y"})
    );
}

const ENVELOPE: &str = r#"
syntax = "proto3";
package acme.events.v1;
import "google/protobuf/any.proto";
import "prism/options/v1/options.proto";

message Address {
  string street = 1 [(prism.options.v1.pii) = PII_KIND_ADDRESS];
  string country = 2;
}

message Envelope {
  string id = 1;
  google.protobuf.Any payload = 2;
}
"#;

fn load_envelope(encoding: ValueEncoding) -> (tempfile::TempDir, Schema) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("envelope.proto"), ENVELOPE).unwrap();
    let config = SchemaConfig {
        proto: "envelope.proto".into(),
        message: "acme.events.v1.Envelope".into(),
        encoding,
        allow_unknown_fields: false,
    };
    let schema = Schema::load(&config, dir.path()).unwrap();
    (dir, schema)
}

const IN_ANY: &str = r#"{"id":"e-1","payload":{"@type":"type.googleapis.com/acme.events.v1.Address",
 "street":"1 Main St","country":"NL"}}"#;

/// Protobuf bytes of `field` holding `bytes` (length-delimited).
fn delimited(field: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![field << 3 | 2];
    prost::encoding::encode_varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}

#[test]
fn pii_inside_an_any_is_masked() {
    let (_dir, schema) = load_envelope(ValueEncoding::Protobuf);
    assert!(schema.has_pii(), "an Any may hold an Address");
    let out = schema.mask(&encode(&schema, IN_ANY));
    assert!(!out.withheld);
    let json = decode_json(&schema, out.replacement.as_deref().unwrap());
    assert_eq!(json["payload"]["street"], "***");
    assert_eq!(json["payload"]["country"], "NL");
    assert_eq!(json["id"], "e-1");
    assert_eq!(out.masked_fields, ["payload.street"]);

    let (_dir, schema) = load_envelope(ValueEncoding::Json);
    let out = schema.mask(IN_ANY.as_bytes());
    let text = String::from_utf8(out.replacement.unwrap()).unwrap();
    assert!(!text.contains("1 Main St"), "the street leaked: {text}");
    schema.validate(text.as_bytes()).unwrap();
}

#[test]
fn an_any_of_a_type_the_schema_does_not_define_is_emptied() {
    let (_dir, schema) = load_envelope(ValueEncoding::Protobuf);
    let any = [
        delimited(1, b"type.googleapis.com/acme.other.v1.Secret"),
        delimited(2, &delimited(1, b"1 Main St")),
    ]
    .concat();
    let value = [delimited(1, b"e-1"), delimited(2, &any)].concat();
    schema.validate(&value).unwrap();
    let out = schema.mask(&value);
    assert!(!out.withheld);
    let masked = out.replacement.unwrap();
    assert!(!masked.windows(9).any(|w| w == b"1 Main St"));
    let message = DynamicMessage::decode(schema.descriptor().clone(), masked.as_slice()).unwrap();
    let payload = message.get_field_by_name("payload").unwrap();
    let payload = payload.as_message().unwrap();
    assert_eq!(
        payload.get_field_by_name("type_url").unwrap().as_str(),
        Some("")
    );
    assert_eq!(out.masked_fields, ["payload"]);
}

#[test]
fn nested_anys_are_masked_a_few_deep_without_recursing_on() {
    let (_dir, schema) = load_envelope(ValueEncoding::Protobuf);
    // An Address inside 10 000 Anys: each is decoded on its own, so only
    // a limit on the depth keeps masking from recursing 10 000 deep.
    let mut any = [
        delimited(1, b"type.googleapis.com/acme.events.v1.Address"),
        delimited(2, &delimited(1, b"1 Main St")),
    ]
    .concat();
    for _ in 0..10_000 {
        any = [
            delimited(1, b"type.googleapis.com/google.protobuf.Any"),
            delimited(2, &any),
        ]
        .concat();
    }
    let value = delimited(2, &any);
    let out = schema.mask(&value);
    assert!(!out.withheld);
    let masked = out.replacement.unwrap();
    assert!(masked.len() < 1000, "the deep Anys were emptied");
    assert!(!masked.windows(9).any(|w| w == b"1 Main St"));

    let (_dir, schema) = load_envelope(ValueEncoding::Json);
    let mut json = r#"{"@type":"type.googleapis.com/acme.events.v1.Address","street":"1 Main St"}"#
        .to_string();
    for _ in 0..20 {
        json = format!(r#"{{"@type":"type.googleapis.com/google.protobuf.Any","value":{json}}}"#);
    }
    let out = schema.mask(format!(r#"{{"payload":{json}}}"#).as_bytes());
    assert!(out.withheld, "JSON cannot carry the emptied Any: withheld");
}

#[test]
fn fields_an_any_does_not_declare_are_dropped_by_masking() {
    let (_dir, schema) = load_envelope(ValueEncoding::Protobuf);
    let any = [
        delimited(1, b"type.googleapis.com/acme.events.v1.Address"),
        delimited(2, &delimited(2, b"NL")),
        vec![15 << 3, 1], // field 15, a varint: not a field of Any
    ]
    .concat();
    let value = delimited(2, &any);
    assert!(schema.validate(&value).is_err(), "refused on write");
    let masked = schema.mask(&value).replacement.unwrap();
    schema.validate(&masked).unwrap();
}
