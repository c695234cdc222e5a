//! Namespace schemas: the application's own protobuf message, compiled at
//! runtime from its `.proto` source (protox, pure Rust), read through
//! reflection (prost-reflect).
//!
//! A schema does three things for its namespace:
//!
//! * **validates** every value written: a value that does not decode as the
//!   message (or, by default, that carries field numbers the message does
//!   not declare) is refused before anything reaches the backend;
//! * **describes** the data: the `prism.options.v1` annotations on the
//!   message (backend, consistency, retention, ...) and on its fields
//!   (`index`, `pii`, `access_audit`), see `proto/prism/options/v1`;
//! * **masks** PII on the way out for callers without `pii:read`
//!   ([`mask`]).
//!
//! Error messages never quote a value's content: a decode error names the
//! message type, the field (by its path in the schema) and what was wrong,
//! never the bytes or text that were sent, JSON keys included (they may be
//! personal data). A JSON value with a key twice in one object is refused
//! ([`json_value`]); a protobuf value with a non-repeated field twice is
//! valid protobuf (every parser keeps the last) and accepted.

pub mod json_value;
pub mod mask;

use std::fmt;
use std::path::{Path, PathBuf};

use prism_proto::options::v1 as opts;
use prost_reflect::{
    DescriptorPool, DynamicMessage, ExtensionDescriptor, FieldDescriptor, Kind, MessageDescriptor,
    Value,
};
use serde::Deserialize;

pub use mask::{MaskOutcome, PiiKind};

/// `schema` in a namespace's YAML.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SchemaConfig {
    /// The `.proto` file, relative to the namespace file's directory (or
    /// absolute). Its imports are looked up beside it;
    /// `prism/options/v1/options.proto` and the `google/protobuf` files are
    /// always available.
    pub proto: PathBuf,
    /// The fully qualified message type of every value, e.g.
    /// `acme.users.v1.UserProfile`.
    pub message: String,
    /// How clients send and receive values: `protobuf` (the binary
    /// encoding, the default) or `json` (the proto3 JSON mapping).
    #[serde(default)]
    pub encoding: ValueEncoding,
    /// Accept values with field numbers (or JSON names) the message does not
    /// declare, e.g. from writers on a newer schema. Default false: such a
    /// value is refused, because an undeclared field cannot be classified
    /// as PII or not. Undeclared fields are always dropped from masked
    /// values.
    #[serde(default)]
    pub allow_unknown_fields: bool,
}

/// The encoding of values in a namespace with a schema.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ValueEncoding {
    #[default]
    Protobuf,
    Json,
}

impl ValueEncoding {
    pub fn name(self) -> &'static str {
        match self {
            ValueEncoding::Protobuf => "protobuf",
            ValueEncoding::Json => "json",
        }
    }
}

/// The message-level `prism.options.v1` annotations.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MessageAnnotations {
    pub backend: Option<String>,
    pub consistency: Option<String>,
    pub cache: bool,
    pub cache_ttl_seconds: Option<u32>,
    pub retention_days: Option<u32>,
    pub estimated_read_rps: Option<u64>,
    pub estimated_write_rps: Option<u64>,
    pub estimated_size_bytes: Option<u64>,
}

/// One annotated field, anywhere in the message tree.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldAnnotation {
    /// Dotted path from the namespace's message, e.g. `contact.email`;
    /// `[]` marks a repeated or map field (`addresses[].street`).
    pub path: String,
    pub pii: Option<PiiKind>,
    /// `primary` or `secondary`.
    pub index: Option<String>,
    pub access_audit: bool,
}

/// A compiled namespace schema.
#[derive(Clone)]
pub struct Schema {
    config: SchemaConfig,
    /// Where the `.proto` was read from.
    source: PathBuf,
    message: MessageDescriptor,
    annotations: MessageAnnotations,
    fields: Vec<FieldAnnotation>,
    plan: mask::MaskPlan,
}

impl fmt::Debug for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schema")
            .field("message", &self.message.full_name())
            .field("source", &self.source)
            .field("encoding", &self.config.encoding)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Schema {
    fn eq(&self, other: &Self) -> bool {
        self.config == other.config && self.source == other.source
    }
}

/// Why a value was refused. The message names the type and the problem,
/// never the content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidValue(pub String);

impl fmt::Display for InvalidValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Provides `prism/options/v1/options.proto` to every compilation.
struct OptionsResolver;

impl protox::file::FileResolver for OptionsResolver {
    fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
        if name == opts::OPTIONS_PROTO_PATH {
            protox::file::File::from_source(name, opts::OPTIONS_PROTO)
        } else {
            Err(protox::Error::file_not_found(name))
        }
    }
}

fn extension(pool: &DescriptorPool, name: &str) -> Option<ExtensionDescriptor> {
    pool.get_extension_by_name(&format!("prism.options.v1.{name}"))
}

fn enum_name(ext: &ExtensionDescriptor, value: &Value) -> Option<String> {
    let number = value.as_enum_number()?;
    let Kind::Enum(e) = ext.kind() else {
        return None;
    };
    e.get_value(number).map(|v| v.name().to_string())
}

impl Schema {
    /// Compiles `config.proto` (relative paths resolved against `base`)
    /// and finds `config.message` in it.
    pub fn load(config: &SchemaConfig, base: &Path) -> Result<Schema, String> {
        let source = if config.proto.is_absolute() {
            config.proto.clone()
        } else {
            base.join(&config.proto)
        };
        let dir = source.parent().unwrap_or(Path::new(".")).to_path_buf();
        let file_name = source
            .file_name()
            .ok_or_else(|| format!("{} is not a file name", source.display()))?;
        if !source.is_file() {
            return Err(format!(
                "{} does not exist (relative paths are relative to the namespace file's \
                 directory)",
                source.display()
            ));
        }
        let mut resolver = protox::file::ChainFileResolver::new();
        resolver.add(protox::file::IncludeFileResolver::new(dir));
        resolver.add(OptionsResolver);
        resolver.add(protox::file::GoogleFileResolver::new());
        let mut compiler = protox::Compiler::with_file_resolver(resolver);
        compiler.include_imports(true);
        compiler
            .open_file(Path::new(file_name))
            .map_err(|e| format!("{} does not compile: {e}", source.display()))?;
        let pool = compiler.descriptor_pool();
        let message = pool.get_message_by_name(&config.message).ok_or_else(|| {
            let mut names: Vec<String> = pool
                .all_messages()
                .filter(|m| m.parent_file().name() != opts::OPTIONS_PROTO_PATH)
                .filter(|m| !m.full_name().starts_with("google.protobuf."))
                .map(|m| m.full_name().to_string())
                .collect();
            names.sort();
            format!(
                "message {:?} is not defined in {}; it defines: {} (use the fully qualified \
                 name, package included)",
                config.message,
                source.display(),
                if names.is_empty() {
                    "no messages".to_string()
                } else {
                    names.join(", ")
                }
            )
        })?;
        let annotations = read_message_annotations(&pool, &message);
        let mut fields = Vec::new();
        collect_field_annotations(&pool, &message, "", &mut Vec::new(), &mut fields);
        let plan = mask::MaskPlan::build(&pool);
        Ok(Schema {
            config: config.clone(),
            source,
            message,
            annotations,
            fields,
            plan,
        })
    }

    pub fn config(&self) -> &SchemaConfig {
        &self.config
    }

    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The message type of the namespace's values.
    pub fn descriptor(&self) -> &MessageDescriptor {
        &self.message
    }

    pub fn message_name(&self) -> &str {
        self.message.full_name()
    }

    pub fn encoding(&self) -> ValueEncoding {
        self.config.encoding
    }

    pub fn annotations(&self) -> &MessageAnnotations {
        &self.annotations
    }

    /// Every annotated field, in declaration order, nested ones included.
    pub fn fields(&self) -> &[FieldAnnotation] {
        &self.fields
    }

    /// Whether any field of the message tree holds PII.
    pub fn has_pii(&self) -> bool {
        self.plan.has_pii(&self.message)
    }

    /// Whether any field asks for loss-free access auditing.
    pub fn has_access_audit(&self) -> bool {
        self.fields.iter().any(|f| f.access_audit)
    }

    /// Decodes a value in the namespace's encoding.
    fn decode(&self, value: &[u8]) -> Result<DynamicMessage, InvalidValue> {
        let name = self.message.full_name();
        match self.config.encoding {
            ValueEncoding::Protobuf => {
                DynamicMessage::decode(self.message.clone(), value).map_err(|e| {
                    InvalidValue(format!(
                        "the value does not decode as {name}: {}",
                        describe_decode_error(&e)
                    ))
                })
            }
            ValueEncoding::Json => {
                let text = std::str::from_utf8(value).map_err(|e| {
                    InvalidValue(format!(
                        "the value is not UTF-8 JSON for {name}: invalid byte at offset {}",
                        e.valid_up_to()
                    ))
                })?;
                let allow_unknown = self.config.allow_unknown_fields;
                if let Some(problem) = json_value::check_keys(&self.message, value, allow_unknown) {
                    return Err(InvalidValue(format!(
                        "the value is not valid JSON for {name}: {problem}"
                    )));
                }
                let options =
                    prost_reflect::DeserializeOptions::new().deny_unknown_fields(!allow_unknown);
                let mut de = serde_json::Deserializer::from_str(text);
                let message = DynamicMessage::deserialize_with_options(
                    self.message.clone(),
                    &mut de,
                    &options,
                )
                .and_then(|m| de.end().map(|()| m))
                .map_err(|e| {
                    InvalidValue(format!(
                        "the value is not valid JSON for {name}: {}",
                        json_value::describe_error(&e)
                    ))
                })?;
                Ok(message)
            }
        }
    }

    /// Checks a value before it is written; nothing is written when this
    /// fails.
    pub fn validate(&self, value: &[u8]) -> Result<(), InvalidValue> {
        let message = self.decode(value)?;
        if !self.config.allow_unknown_fields
            && let Some((path, number)) = first_unknown_field(&message, "")
        {
            return Err(InvalidValue(format!(
                "the value does not match {}: it carries field number {number}{}, which the \
                 message does not declare (is it a value of another type, or from a newer \
                 schema? update the namespace's schema, or set schema.allow_unknown_fields)",
                self.message.full_name(),
                if path.is_empty() {
                    String::new()
                } else {
                    format!(" inside `{path}`")
                }
            )));
        }
        Ok(())
    }

    /// Masks the PII fields of a stored value for a caller without
    /// `pii:read`. A value with no PII present comes back unchanged.
    /// A value that no longer decodes (written before the schema changed)
    /// is withheld rather than returned unmasked.
    pub fn mask(&self, value: &[u8]) -> MaskOutcome {
        if !self.has_pii() {
            return MaskOutcome::unchanged();
        }
        let Ok(mut message) = self.decode(value) else {
            return MaskOutcome::withheld();
        };
        let mut fields = Vec::new();
        self.plan.mask(&mut message, "", &mut fields);
        let encoded = match self.config.encoding {
            ValueEncoding::Protobuf => prost::Message::encode_to_vec(&message),
            // A masked value that cannot be written as JSON (an `Any`
            // emptied by masking has no type) is withheld, not sent empty.
            ValueEncoding::Json => match serde_json::to_vec(&message) {
                Ok(json) => json,
                Err(_) => return MaskOutcome::withheld(),
            },
        };
        MaskOutcome::masked(encoded, fields)
    }
}

/// A protobuf decoding error without the payload: prost names the
/// message, the field and the problem, but an invalid key shows the key's
/// varint, which is up to ten bytes of the value itself.
fn describe_decode_error(error: &prost::DecodeError) -> String {
    let text = error.to_string();
    match text.find("invalid key value: ") {
        Some(at) => format!(
            "{}invalid key (not a field number and wire type)",
            &text[..at]
        ),
        None => text,
    }
}

fn first_unknown_field(message: &DynamicMessage, path: &str) -> Option<(String, u32)> {
    if let Some(field) = message.unknown_fields().next() {
        return Some((path.to_string(), field.number()));
    }
    for (field, value) in message.fields() {
        let child = join(path, field.name());
        let found = match value {
            Value::Message(m) => first_unknown_field(m, &child),
            Value::List(items) => items
                .iter()
                .filter_map(Value::as_message)
                .find_map(|m| first_unknown_field(m, &format!("{child}[]"))),
            Value::Map(entries) => entries
                .values()
                .filter_map(Value::as_message)
                .find_map(|m| first_unknown_field(m, &format!("{child}[]"))),
            _ => None,
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

pub(crate) fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn read_message_annotations(
    pool: &DescriptorPool,
    message: &MessageDescriptor,
) -> MessageAnnotations {
    let options = message.options();
    let get = |name: &str| {
        extension(pool, name)
            .filter(|ext| options.has_extension(ext))
            .map(|ext| (ext.clone(), options.get_extension(&ext).into_owned()))
    };
    let u32_of = |name: &str| get(name).and_then(|(_, v)| v.as_u32()).filter(|v| *v > 0);
    let u64_of = |name: &str| get(name).and_then(|(_, v)| v.as_u64()).filter(|v| *v > 0);
    MessageAnnotations {
        backend: get("backend")
            .and_then(|(_, v)| v.as_str().map(str::to_string))
            .filter(|s| !s.is_empty()),
        consistency: get("consistency").and_then(|(ext, v)| {
            enum_name(&ext, &v).map(|n| n.trim_start_matches("CONSISTENCY_").to_lowercase())
        }),
        cache: get("cache").and_then(|(_, v)| v.as_bool()).unwrap_or(false),
        cache_ttl_seconds: u32_of("cache_ttl_seconds"),
        retention_days: u32_of("retention_days"),
        estimated_read_rps: u64_of("estimated_read_rps"),
        estimated_write_rps: u64_of("estimated_write_rps"),
        estimated_size_bytes: u64_of("estimated_size_bytes"),
    }
}

/// The `prism.options.v1` annotations of one field.
pub(crate) struct FieldOptions {
    pub pii: Option<PiiKind>,
    pub index: Option<String>,
    pub access_audit: bool,
}

pub(crate) fn field_options(pool: &DescriptorPool, field: &FieldDescriptor) -> FieldOptions {
    let options = field.options();
    let get = |name: &str| {
        extension(pool, name)
            .filter(|ext| options.has_extension(ext))
            .map(|ext| (ext.clone(), options.get_extension(&ext).into_owned()))
    };
    FieldOptions {
        pii: get("pii")
            .and_then(|(ext, v)| enum_name(&ext, &v))
            .and_then(|n| PiiKind::from_enum_name(&n)),
        index: get("index")
            .and_then(|(ext, v)| enum_name(&ext, &v))
            .map(|n| n.trim_start_matches("INDEX_KIND_").to_lowercase())
            .filter(|n| n != "unspecified"),
        access_audit: get("access_audit")
            .and_then(|(_, v)| v.as_bool())
            .unwrap_or(false),
    }
}

fn collect_field_annotations(
    pool: &DescriptorPool,
    message: &MessageDescriptor,
    path: &str,
    stack: &mut Vec<String>,
    out: &mut Vec<FieldAnnotation>,
) {
    // A recursive message type is described once, at its first use.
    if stack.iter().any(|m| m == message.full_name()) {
        return;
    }
    stack.push(message.full_name().to_string());
    for field in message.fields() {
        let suffix = if field.is_list() || field.is_map() {
            "[]"
        } else {
            ""
        };
        let child = format!("{}{suffix}", join(path, field.name()));
        let o = field_options(pool, &field);
        if o.pii.is_some() || o.index.is_some() || o.access_audit {
            out.push(FieldAnnotation {
                path: child.clone(),
                pii: o.pii,
                index: o.index,
                access_audit: o.access_audit,
            });
        }
        let nested = match field.kind() {
            Kind::Message(m) if field.is_map() => {
                m.map_entry_value_field().kind().as_message().cloned()
            }
            Kind::Message(m) => Some(m),
            _ => None,
        };
        if let Some(nested) = nested {
            collect_field_annotations(pool, &nested, &child, stack, out);
        }
    }
    stack.pop();
}

#[cfg(test)]
pub(crate) mod tests;
