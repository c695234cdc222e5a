//! Bounds on YAML text before it is parsed into configuration: its size
//! and how deeply it nests. A YAML parser's time can grow faster than
//! linearly with nesting (a 160 KB document nested 20 000 deep took
//! seconds), so every YAML the proxy reads — `prism.yaml`, namespace files,
//! namespaces applied through the admin API and migration targets — is
//! first walked by a streaming event parser that stops as soon as the
//! nesting passes the limit, so the walk's cost stays linear in the size.

use saphyr_parser::{Event, Parser};

/// The largest YAML text accepted, in bytes: 256 KiB.
pub const MAX_YAML_BYTES: usize = 256 << 10;

/// The deepest nesting of sequences and mappings accepted: 32. A
/// namespace needs about 6.
pub const MAX_YAML_DEPTH: usize = 32;

/// Refuses text over [`MAX_YAML_BYTES`], nested deeper than
/// [`MAX_YAML_DEPTH`], or that the event parser cannot read; the message
/// names the limit (and never quotes the text).
pub fn check_yaml_bounds(text: &str) -> Result<(), String> {
    if text.len() > MAX_YAML_BYTES {
        return Err(format!(
            "the YAML is {} bytes, over the limit of {MAX_YAML_BYTES} bytes (256 KiB) for one \
             document; a namespace needs a few KiB",
            text.len()
        ));
    }
    let mut depth = 0usize;
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| {
            if e.info().contains("recursion limit") {
                // The event parser's own bound on flow nesting, reached
                // while it reads ahead.
                too_deep(e.marker().line())
            } else {
                format!(
                    "the YAML does not parse at line {}, column {}: {}",
                    e.marker().line(),
                    e.marker().col() + 1,
                    e.info()
                )
            }
        })?;
        match event {
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                depth += 1;
                if depth > MAX_YAML_DEPTH {
                    return Err(too_deep(span.start.line()));
                }
            }
            Event::SequenceEnd | Event::MappingEnd => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

fn too_deep(line: usize) -> String {
    format!(
        "the YAML nests more than {MAX_YAML_DEPTH} levels deep (at line {line}), over the limit \
         of {MAX_YAML_DEPTH} levels; a namespace nests about 6"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_is_within_the_bounds() {
        let yaml = "name: orders\ndal: keyvalue\nbackend:\n  kind: sqlite\n  options:\n    \
                    path: orders.db\npolicy:\n  read: ['*']\n  admin:\n    - user:alice\n";
        assert_eq!(check_yaml_bounds(yaml), Ok(()));
    }

    #[test]
    fn deep_nesting_is_refused_in_every_shape() {
        let n = 20_000;
        let shapes = [
            format!("a: {}{}", "[".repeat(n), "]".repeat(n)),
            // A quote inside a plain scalar does not start a string.
            format!("b: [x ', {}{}\n", "[x, ".repeat(n), "]".repeat(n + 1)),
            // A block scalar ends where its indentation does.
            format!(
                "a:\n- k: |\n    text\n  b: {}{}\n",
                "[".repeat(n),
                "]".repeat(n)
            ),
            format!("? {}x\n: y\n", "- ".repeat(100)),
            format!("{}x\n", "- ".repeat(100)),
            (0..40)
                .map(|i| format!("{}k{i}:\r", "  ".repeat(i)))
                .collect::<String>(),
            (0..40)
                .map(|i| format!("{}k{i}:\n", "  ".repeat(i)))
                .collect::<String>(),
        ];
        for (i, yaml) in shapes.iter().enumerate() {
            let e = check_yaml_bounds(yaml).expect_err(&format!("shape {i} passed"));
            assert!(
                e.contains("limit of 32 levels") || e.contains("does not parse"),
                "shape {i}: {e}"
            );
        }
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        let quoted = format!("description: \"{}\"\n", "[".repeat(100));
        assert_eq!(check_yaml_bounds(&quoted), Ok(()));
        let mut literal = String::from("description: |\n");
        for i in 0..60 {
            literal.push_str(&format!("  {}[line {i}\n", " ".repeat(i)));
        }
        literal.push_str("name: x\n");
        assert_eq!(check_yaml_bounds(&literal), Ok(()));
    }

    #[test]
    fn large_text_is_refused_naming_the_limit() {
        let big = format!("description: {}\n", "x".repeat(MAX_YAML_BYTES));
        let e = check_yaml_bounds(&big).unwrap_err();
        assert!(e.contains("262144 bytes"), "{e}");
    }
}
