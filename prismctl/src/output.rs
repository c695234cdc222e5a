//! Rendering of command results: aligned tables, one JSON document or one
//! YAML document on stdout, with keys and values shown as text or hex.

use std::fmt::Write as _;
use std::io::{self, Write};

use clap::ValueEnum;
use prism_proto::keyvalue::v1::Item;
use serde::Serialize;

/// The `--output` format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned plain-text columns with a header.
    Table,
    /// One JSON document.
    Json,
    /// One YAML document (the JSON document's fields, as YAML).
    Yaml,
}

/// A command result that can be printed in either format. Its `Serialize`
/// form is the JSON document.
pub trait Report: Serialize {
    /// The result as a table.
    fn table(&self) -> Table;
}

/// Prints `report` to stdout in `format`.
pub fn print(format: OutputFormat, report: &impl Report) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    match format {
        OutputFormat::Table => report.table().write_to(&mut out)?,
        OutputFormat::Json | OutputFormat::Yaml => print_document(&mut out, format, report)?,
    }
    out.flush()?;
    Ok(())
}

/// Writes `value` as one pretty JSON document or one YAML document. The
/// YAML carries the same fields as the JSON.
pub fn print_document(
    out: &mut impl Write,
    format: OutputFormat,
    value: &impl Serialize,
) -> anyhow::Result<()> {
    match format {
        OutputFormat::Yaml => out.write_all(to_yaml(value)?.as_bytes())?,
        _ => writeln!(out, "{}", serde_json::to_string_pretty(value)?)?,
    }
    Ok(())
}

/// `value` as a YAML document ending in a newline: the same fields, in the
/// same order, as its JSON form.
pub fn to_yaml(value: &impl Serialize) -> anyhow::Result<String> {
    let mut text = yaml_serde::to_string(value)?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// Plain-text columns, each as wide as its widest cell.
#[derive(Debug)]
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: Vec<&'static str>) -> Self {
        Self {
            header,
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<String>) {
        debug_assert_eq!(row.len(), self.header.len(), "row width");
        self.rows.push(row);
    }

    /// Writes the header and the rows, columns separated by two spaces and
    /// without trailing whitespace.
    pub fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let header = self.header.iter().map(|h| (*h).to_owned()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<width$}  ");
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// How a key or value is shown.
#[derive(Debug, PartialEq, Eq)]
pub enum Rendered<'a> {
    /// Valid UTF-8 without control characters.
    Text(&'a str),
    /// Anything else, as lowercase hex digits without a prefix.
    Hex(String),
}

/// Shows `bytes` as text when they are valid UTF-8 without control
/// characters, otherwise as hex.
pub fn render_bytes(bytes: &[u8]) -> Rendered<'_> {
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.chars().any(char::is_control) => Rendered::Text(text),
        _ => Rendered::Hex(hex(bytes)),
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// Bytes as a JSON pair of optional fields: `text` when printable, else
/// `hex`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TextOrHex {
    pub text: Option<String>,
    pub hex: Option<String>,
}

impl TextOrHex {
    pub fn new(bytes: &[u8]) -> Self {
        match render_bytes(bytes) {
            Rendered::Text(text) => Self {
                text: Some(text.to_owned()),
                hex: None,
            },
            Rendered::Hex(hex) => Self {
                text: None,
                hex: Some(hex),
            },
        }
    }

    /// The table cell: the text, or `0x` and the hex digits. Empty bytes
    /// show as `0x` so that a cell is never blank.
    pub fn cell(&self) -> String {
        match (&self.text, &self.hex) {
            (Some(text), _) if !text.is_empty() => text.clone(),
            (_, Some(hex)) => format!("0x{hex}"),
            _ => "0x".to_owned(),
        }
    }
}

/// One item as printed by `kv get` and `kv scan`.
#[derive(Debug, Serialize)]
pub struct ItemView {
    /// The record id; set by `kv scan` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_hex: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_hex: Option<String>,
    pub version: u64,
    /// RFC 3339 UTC; `null` if the item never expires.
    pub expires_at: Option<String>,
    pub expires_at_unix_ms: Option<i64>,
}

impl ItemView {
    pub fn new(id: Option<&str>, item: &Item) -> Self {
        let key = TextOrHex::new(&item.key);
        let value = TextOrHex::new(&item.value);
        Self {
            id: id.map(str::to_owned),
            key: key.text,
            key_hex: key.hex,
            value: value.text,
            value_hex: value.hex,
            version: item.version,
            expires_at: item.expires_at.as_ref().map(rfc3339),
            expires_at_unix_ms: item.expires_at.as_ref().map(unix_ms),
        }
    }

    /// The header matching [`ItemView::row`].
    pub fn header(with_id: bool) -> Vec<&'static str> {
        let mut header = if with_id { vec!["ID"] } else { Vec::new() };
        header.extend(["KEY", "VALUE", "VERSION", "EXPIRES (UTC)"]);
        header
    }

    /// The table row; starts with the id when the view has one.
    pub fn row(&self) -> Vec<String> {
        let key = TextOrHex {
            text: self.key.clone(),
            hex: self.key_hex.clone(),
        };
        let value = TextOrHex {
            text: self.value.clone(),
            hex: self.value_hex.clone(),
        };
        let mut row: Vec<String> = self.id.iter().cloned().collect();
        row.extend([
            key.cell(),
            value.cell(),
            self.version.to_string(),
            self.expires_at
                .clone()
                .unwrap_or_else(|| "never".to_owned()),
        ]);
        row
    }
}

/// Milliseconds since the Unix epoch, saturating.
pub fn unix_ms(ts: &prost_types::Timestamp) -> i64 {
    let millis = i64::from(ts.nanos.clamp(0, 999_999_999) / 1_000_000);
    ts.seconds.saturating_mul(1_000).saturating_add(millis)
}

/// RFC 3339 in UTC, e.g. `2024-05-01T12:00:00Z`, with milliseconds when
/// they are not zero.
pub fn rfc3339(ts: &prost_types::Timestamp) -> String {
    let days = ts.seconds.div_euclid(86_400);
    let secs_of_day = ts.seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (
        secs_of_day / 3_600,
        secs_of_day % 3_600 / 60,
        secs_of_day % 60,
    );
    let millis = ts.nanos.clamp(0, 999_999_999) / 1_000_000;
    let mut out = format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}");
    if millis != 0 {
        let _ = write!(out, ".{millis:03}");
    }
    out.push('Z');
    out
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::Timestamp;

    fn ts(seconds: i64, nanos: i32) -> Timestamp {
        Timestamp { seconds, nanos }
    }

    #[test]
    fn printable_utf8_is_text() {
        assert_eq!(render_bytes(b"hello"), Rendered::Text("hello"));
        assert_eq!(
            render_bytes("héllo ✓".as_bytes()),
            Rendered::Text("héllo ✓")
        );
        assert_eq!(render_bytes(b""), Rendered::Text(""));
    }

    #[test]
    fn binary_or_control_characters_are_hex() {
        assert_eq!(
            render_bytes(&[0xde, 0xad, 0xbe, 0xef]),
            Rendered::Hex("deadbeef".into())
        );
        assert_eq!(render_bytes(b"a\nb"), Rendered::Hex("610a62".into()));
        assert_eq!(render_bytes(b"tab\t"), Rendered::Hex("74616209".into()));
        assert_eq!(render_bytes(&[0x00]), Rendered::Hex("00".into()));
        assert_eq!(render_bytes(&[0xc3]), Rendered::Hex("c3".into()));
    }

    #[test]
    fn cells_prefix_hex_and_never_are_blank() {
        assert_eq!(TextOrHex::new(b"v1").cell(), "v1");
        assert_eq!(TextOrHex::new(&[0xff, 0x01]).cell(), "0xff01");
        assert_eq!(TextOrHex::new(b"").cell(), "0x");
    }

    #[test]
    fn item_json_uses_separate_hex_fields() {
        let item = Item {
            key: b"k".to_vec(),
            value: vec![0xff],
            version: 7,
            expires_at: Some(ts(1_700_000_000, 250_000_000)),
        };
        let json = serde_json::to_value(ItemView::new(None, &item)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "key": "k",
                "value_hex": "ff",
                "version": 7,
                "expires_at": "2023-11-14T22:13:20.250Z",
                "expires_at_unix_ms": 1_700_000_000_250_i64,
            })
        );
        let never = Item {
            key: b"k".to_vec(),
            ..Item::default()
        };
        let json = serde_json::to_value(ItemView::new(Some("r1"), &never)).unwrap();
        assert_eq!(json["id"], "r1");
        assert_eq!(json["value"], "");
        assert!(json["expires_at"].is_null());
        assert!(json["expires_at_unix_ms"].is_null());
    }

    #[test]
    fn item_rows_match_headers() {
        let item = Item {
            key: vec![0x00, 0x01],
            value: b"v".to_vec(),
            version: 3,
            expires_at: None,
        };
        let row = ItemView::new(Some("r"), &item).row();
        assert_eq!(row, ["r", "0x0001", "v", "3", "never"]);
        assert_eq!(row.len(), ItemView::header(true).len());
        assert_eq!(
            ItemView::new(None, &item).row().len(),
            ItemView::header(false).len()
        );
    }

    #[test]
    fn formats_timestamps_in_utc() {
        assert_eq!(rfc3339(&ts(0, 0)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(&ts(951_782_400, 0)), "2000-02-29T00:00:00Z");
        assert_eq!(
            rfc3339(&ts(1_700_000_000, 5_000_000)),
            "2023-11-14T22:13:20.005Z"
        );
        assert_eq!(rfc3339(&ts(253_402_300_799, 0)), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(&ts(-1, 0)), "1969-12-31T23:59:59Z");
        assert_eq!(unix_ms(&ts(1_700_000_000, 999_999)), 1_700_000_000_000);
        assert_eq!(unix_ms(&ts(i64::MAX, 0)), i64::MAX);
    }

    #[test]
    fn yaml_carries_the_json_fields() {
        let item = Item {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            version: 2,
            expires_at: None,
        };
        let yaml = to_yaml(&ItemView::new(Some("r"), &item)).unwrap();
        assert_eq!(
            yaml,
            "id: r\nkey: k\nvalue: v\nversion: 2\nexpires_at: null\nexpires_at_unix_ms: null\n"
        );
        let mut out = Vec::new();
        print_document(&mut out, OutputFormat::Json, &serde_json::json!({"a": 1})).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "{\n  \"a\": 1\n}\n");
    }

    #[test]
    fn tables_align_columns_without_trailing_spaces() {
        let mut table = Table::new(vec!["KEY", "VALUE", "VERSION"]);
        table.push(vec!["a".into(), "longer value".into(), "1".into()]);
        table.push(vec!["longer-key".into(), "".into(), "22".into()]);
        let mut out = Vec::new();
        table.write_to(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "KEY         VALUE         VERSION\n\
             a           longer value  1\n\
             longer-key                22\n"
        );
    }
}
