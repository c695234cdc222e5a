//! JSON values checked against a protobuf message beyond what the proto3
//! JSON mapping's parser does, and its errors told without the payload.
//!
//! * **Keys** ([`check_keys`]): serde, like most JSON parsers, keeps the
//!   last of two equal keys, so `{"email": "a@b.c", "email": "real@x.y"}`
//!   would be stored as sent while a parser that keeps the first reads
//!   another value. A key that appears twice in one object, at any depth,
//!   is refused, and so is one field sent under both its JSON name and its
//!   proto name (`fullName` and `full_name`), or one map key spelt twice
//!   (`"1"` and `"01"` of an integer-keyed map). Unless the schema allows
//!   them, a key the message does not declare is refused as well.
//! * **Errors** ([`describe_error`]): a problem is located by the schema's
//!   field path (`home.street`, `previous[]`), never by the payload's own
//!   keys or values: an undeclared key, a map key or a `Struct` key is
//!   data and may be personal. Parser messages that quote the payload are
//!   replaced or have their quoted spans cut out.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::error::Category;

/// What is wrong with the keys of a JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyProblem {
    /// A key appears twice in one object.
    Duplicate(Place),
    /// The message does not declare a key.
    Undeclared(Place),
}

/// Where in the message a key problem is, by schema field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// The key is this field.
    Field(String),
    /// The key is a key of this map field.
    MapKey(String),
    /// The key is in an object inside this field ("": the top-level
    /// object); the schema has no name for the key itself.
    Inside(String),
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Field(path) => write!(f, "at field `{path}`"),
            Place::MapKey(path) => write!(f, "a key of map field `{path}`"),
            Place::Inside(path) if path.is_empty() => f.write_str("in the top-level object"),
            Place::Inside(path) => write!(f, "inside field `{path}`"),
        }
    }
}

impl fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyProblem::Duplicate(place @ Place::Field(_)) => write!(
                f,
                "an object has a duplicate key ({place}); send each field once, under its \
                 JSON name or its proto name"
            ),
            KeyProblem::Duplicate(place) => write!(
                f,
                "an object has a duplicate key ({place}); send each key once"
            ),
            KeyProblem::Undeclared(place) => write!(
                f,
                "an object has a field the schema does not define ({place}); use the field \
                 names of the schema, or set schema.allow_unknown_fields"
            ),
        }
    }
}

/// The first key problem of `json` as a value of `message`, or `None` when
/// there is none or `json` does not parse (the decoder then says why).
pub fn check_keys(
    message: &MessageDescriptor,
    json: &[u8],
    allow_undeclared: bool,
) -> Option<KeyProblem> {
    let found = RefCell::new(None);
    let scan = Scan {
        allow_undeclared,
        found: &found,
    };
    let mut de = serde_json::Deserializer::from_slice(json);
    let _ = Node {
        shape: Shape::Message(message.clone()),
        path: String::new(),
        scan: &scan,
    }
    .deserialize(&mut de);
    found.into_inner()
}

/// What the JSON at one position is expected to be.
#[derive(Clone)]
enum Shape {
    Message(MessageDescriptor),
    List(Box<Shape>),
    Map {
        integer_keys: bool,
        value: Box<Shape>,
    },
    /// A scalar, a well-known type with its own JSON form (`Struct`,
    /// `Any`, `Timestamp`, ...), or the value of an undeclared key: only
    /// duplicate keys are looked for.
    Other,
}

fn kind_shape(kind: Kind) -> Shape {
    match kind {
        Kind::Message(m) if !m.full_name().starts_with("google.protobuf.") => Shape::Message(m),
        _ => Shape::Other,
    }
}

fn field_shape(field: &FieldDescriptor) -> Shape {
    match field.kind() {
        Kind::Message(entry) if field.is_map() => Shape::Map {
            integer_keys: !matches!(
                entry.map_entry_key_field().kind(),
                Kind::String | Kind::Bool
            ),
            value: Box::new(kind_shape(entry.map_entry_value_field().kind())),
        },
        kind if field.is_list() => Shape::List(Box::new(kind_shape(kind))),
        kind => kind_shape(kind),
    }
}

struct Scan<'a> {
    allow_undeclared: bool,
    found: &'a RefCell<Option<KeyProblem>>,
}

impl Scan<'_> {
    /// Records the problem and stops the parse.
    fn fail<E: de::Error>(&self, problem: KeyProblem) -> E {
        *self.found.borrow_mut() = Some(problem);
        E::custom("key problem")
    }
}

/// One JSON value at a schema path (a field path without `[]` for a list
/// or map field itself; its elements and values are at `path[]`).
struct Node<'a> {
    shape: Shape,
    path: String,
    scan: &'a Scan<'a>,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'a> Node<'a> {
    fn child(&self, shape: Shape, path: String) -> Node<'a> {
        Node {
            shape,
            path,
            scan: self.scan,
        }
    }

    fn message<'de, A: MapAccess<'de>>(
        &self,
        message: &MessageDescriptor,
        mut map: A,
    ) -> Result<(), A::Error> {
        let mut fields = HashSet::new();
        let mut others = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let field = message
                .get_field_by_json_name(&key)
                .or_else(|| message.get_field_by_name(&key));
            if let Some(field) = field {
                let path = super::join(&self.path, field.name());
                if !fields.insert(field.number()) {
                    return Err(self.scan.fail(KeyProblem::Duplicate(Place::Field(path))));
                }
                map.next_value_seed(self.child(field_shape(&field), path))?;
                continue;
            }
            let extension = message.get_extension_by_json_name(&key).is_some();
            if !extension && !self.scan.allow_undeclared {
                let place = Place::Inside(self.path.clone());
                return Err(self.scan.fail(KeyProblem::Undeclared(place)));
            }
            if !others.insert(key) {
                let place = Place::Inside(self.path.clone());
                return Err(self.scan.fail(KeyProblem::Duplicate(place)));
            }
            map.next_value_seed(self.child(Shape::Other, self.path.clone()))?;
        }
        Ok(())
    }

    fn map<'de, A: MapAccess<'de>>(
        &self,
        integer_keys: bool,
        value: &Shape,
        mut map: A,
    ) -> Result<(), A::Error> {
        let mut keys = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            // "1", "01" and "+1" are one key of an integer-keyed map.
            let key = match key.parse::<i128>() {
                Ok(n) if integer_keys => n.to_string(),
                _ => key,
            };
            if !keys.insert(key) {
                let place = Place::MapKey(self.path.clone());
                return Err(self.scan.fail(KeyProblem::Duplicate(place)));
            }
            map.next_value_seed(self.child(value.clone(), format!("{}[]", self.path)))?;
        }
        Ok(())
    }

    fn object<'de, A: MapAccess<'de>>(&self, mut map: A) -> Result<(), A::Error> {
        let mut keys = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !keys.insert(key) {
                let place = Place::Inside(self.path.clone());
                return Err(self.scan.fail(KeyProblem::Duplicate(place)));
            }
            map.next_value_seed(self.child(Shape::Other, self.path.clone()))?;
        }
        Ok(())
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        match &self.shape {
            Shape::Message(message) => self.message(message, map),
            Shape::Map {
                integer_keys,
                value,
            } => self.map(*integer_keys, value, map),
            Shape::List(_) | Shape::Other => self.object(map),
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let (element, path) = match &self.shape {
            Shape::List(element) => ((**element).clone(), format!("{}[]", self.path)),
            _ => (Shape::Other, self.path.clone()),
        };
        while seq
            .next_element_seed(self.child(element.clone(), path.clone()))?
            .is_some()
        {}
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// A JSON decoding error of a value, without the payload's keys or
/// values: serde_json's syntax errors are fixed words and a position; the
/// decoder's errors about data are replaced by a fixed sentence when they
/// name a key or value (an undeclared field, an enum value, an `Any` type),
/// and otherwise keep their words with every quoted span cut out
/// (`invalid type: integer `…`, expected a string`).
pub fn describe_error(error: &serde_json::Error) -> String {
    let text = error.to_string();
    if error.classify() != Category::Data {
        return text;
    }
    let position = format!(" at line {} column {}", error.line(), error.column());
    let (what, position) = match text.strip_suffix(&position) {
        Some(what) => (what, position.as_str()),
        None => (text.as_str(), ""),
    };
    let what = if what.starts_with("unrecognized field name") {
        "an object has a field the schema does not define".to_string()
    } else if what.starts_with("unrecognized enum value") {
        "an enum field has a value its enum does not define".to_string()
    } else if what.starts_with("message '") || what.starts_with("unsupported type url") {
        "an `Any` names a message type the schema does not define".to_string()
    } else if what.starts_with("invalid base64") {
        "a bytes field is not valid base64".to_string()
    } else if what.starts_with("multiple fields provided for oneof") {
        // The oneof's name comes from the schema (the fields are declared).
        what.to_string()
    } else {
        redact_quoted(what)
    };
    format!("{what}{position}")
}

/// Replaces every span quoted with `"`, `'` or `` ` `` by `…` in its
/// quotes: serde quotes the offending value (`invalid type: string
/// "jane@…"`, ``integer `4155550142` ``), which may be personal data. A
/// backslash escapes the next character inside `"` (serde shows strings
/// with Rust's escapes); after an unclosed quote nothing more is kept.
fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars();
    while let Some(c) = chars.next() {
        if !matches!(c, '"' | '\'' | '`') {
            out.push(c);
            continue;
        }
        let mut closed = false;
        while let Some(inner) = chars.next() {
            if inner == '\\' && c == '"' {
                chars.next();
            } else if inner == c {
                closed = true;
                break;
            }
        }
        out.push(c);
        out.push('…');
        if !closed {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::ValueEncoding;
    use crate::schema::tests::load;

    const MAPS: &str = r#"
syntax = "proto3";
package t.v1;
import "google/protobuf/struct.proto";
message Item { string name = 1; }
message Box {
  map<int32, Item> by_id = 1;
  map<string, string> labels = 2;
  google.protobuf.Struct extra = 3;
  repeated Item items = 4;
}
"#;

    fn box_schema() -> (tempfile::TempDir, crate::schema::Schema) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("box.proto"), MAPS).unwrap();
        let config = crate::schema::SchemaConfig {
            proto: "box.proto".into(),
            message: "t.v1.Box".into(),
            encoding: ValueEncoding::Json,
            allow_unknown_fields: false,
        };
        let schema = crate::schema::Schema::load(&config, dir.path()).unwrap();
        (dir, schema)
    }

    fn problem(schema: &crate::schema::Schema, json: &str, allow: bool) -> Option<KeyProblem> {
        check_keys(schema.descriptor(), json.as_bytes(), allow)
    }

    #[test]
    fn duplicate_keys_are_found_at_any_depth_by_schema_path() {
        let (_d, s) = load("acme.users.v1.UserProfile", ValueEncoding::Json);
        let dup = |p: Place| Some(KeyProblem::Duplicate(p));
        let field = |p: &str| dup(Place::Field(p.into()));
        assert_eq!(
            problem(&s, r#"{"email":"a@b.c","email":"x@y.z"}"#, false),
            field("email")
        );
        assert_eq!(
            problem(&s, r#"{"fullName":"A","full_name":"B"}"#, false),
            field("full_name")
        );
        assert_eq!(
            problem(&s, r#"{"em\u0061il":"a","email":"b"}"#, false),
            field("email")
        );
        assert_eq!(
            problem(
                &s,
                r#"{"home":{"street":"a","country":"NL","street":"b"}}"#,
                false
            ),
            field("home.street")
        );
        assert_eq!(
            problem(
                &s,
                r#"{"previous":[{},{"street":"a","street":"b"}]}"#,
                false
            ),
            field("previous[].street")
        );
        assert_eq!(
            problem(&s, r#"{"email":"a","plan":"gold","home":{}}"#, false),
            None
        );
        // Undeclared keys: refused by default, deduplicated when allowed.
        assert_eq!(
            problem(&s, r#"{"home":{"jane.doe@example.com":1}}"#, false),
            Some(KeyProblem::Undeclared(Place::Inside("home".into())))
        );
        assert_eq!(problem(&s, r#"{"x":1}"#, true), None);
        assert_eq!(
            problem(&s, r#"{"x":1,"x":2}"#, true),
            dup(Place::Inside(String::new()))
        );
        assert_eq!(
            problem(&s, r#"{"x":{"y":1,"y":2}}"#, true),
            dup(Place::Inside(String::new()))
        );
        // Not JSON: the decoder says why.
        assert_eq!(problem(&s, r#"{"email":"#, false), None);
    }

    #[test]
    fn maps_structs_and_lists_are_checked_too() {
        let (_d, s) = box_schema();
        let dup = |p: Place| Some(KeyProblem::Duplicate(p));
        assert_eq!(
            problem(&s, r#"{"byId":{"1":{},"01":{}}}"#, false),
            dup(Place::MapKey("by_id".into()))
        );
        assert_eq!(
            problem(&s, r#"{"labels":{"a":"1","a":"2"}}"#, false),
            dup(Place::MapKey("labels".into()))
        );
        assert_eq!(problem(&s, r#"{"labels":{"1":"a","01":"b"}}"#, false), None);
        assert_eq!(
            problem(&s, r#"{"byId":{"7":{"name":"a","name":"b"}}}"#, false),
            dup(Place::Field("by_id[].name".into()))
        );
        assert_eq!(
            problem(&s, r#"{"extra":{"k":{"deep":[{"z":1,"z":2}]}}}"#, false),
            dup(Place::Inside("extra".into()))
        );
        assert_eq!(
            problem(&s, r#"{"extra":{"anything":{"goes":1}}}"#, false),
            None
        );
        assert_eq!(
            problem(&s, r#"{"items":[{"name":"a"},{"nme":"b"}]}"#, false),
            Some(KeyProblem::Undeclared(Place::Inside("items[]".into())))
        );
    }

    #[test]
    fn messages_name_the_place_and_what_to_do() {
        let p = KeyProblem::Duplicate(Place::Field("home.street".into()));
        assert_eq!(
            p.to_string(),
            "an object has a duplicate key (at field `home.street`); send each field once, \
             under its JSON name or its proto name"
        );
        let p = KeyProblem::Undeclared(Place::Inside(String::new()));
        assert!(p.to_string().contains("(in the top-level object)"), "{p}");
        assert!(p.to_string().contains("allow_unknown_fields"), "{p}");
    }

    #[test]
    fn quoted_spans_are_cut_out_escapes_included() {
        assert_eq!(
            redact_quoted(r#"invalid type: string "jane@x.y", expected a number"#),
            r#"invalid type: string "…", expected a number"#
        );
        assert_eq!(
            redact_quoted(r#"invalid type: string "a\"jane\"b", expected x"#),
            r#"invalid type: string "…", expected x"#
        );
        assert_eq!(
            redact_quoted("invalid type: integer `4155550142`, expected a string"),
            "invalid type: integer `…`, expected a string"
        );
        assert_eq!(redact_quoted("unclosed 'jane doe"), "unclosed '…");
    }
}
