//! Bounds on YAML text before it is parsed: its size and how deeply it
//! nests. A YAML parser's time can grow faster than linearly with nesting
//! (a 160 KB document nested 20 000 deep took seconds), so every YAML the
//! proxy reads — `prism.yaml`, namespace files, and namespaces applied
//! through the admin API — is measured first by a linear scan.

/// The largest YAML text accepted, in bytes: 256 KiB.
pub const MAX_YAML_BYTES: usize = 256 << 10;

/// The deepest nesting accepted (block indentation levels, `- ` sequence
/// entries and `[`/`{` flow collections together): 32. A namespace needs
/// about 6.
pub const MAX_YAML_DEPTH: usize = 32;

/// Refuses text over [`MAX_YAML_BYTES`] or nested deeper than
/// [`MAX_YAML_DEPTH`]; the message names the limit. The depth is an upper
/// bound found without parsing (brackets inside quoted or block scalars
/// are skipped; inside plain scalars they count).
pub fn check_yaml_bounds(text: &str) -> Result<(), String> {
    if text.len() > MAX_YAML_BYTES {
        return Err(format!(
            "the YAML is {} bytes, over the limit of {MAX_YAML_BYTES} bytes (256 KiB) for one \
             document; a namespace needs a few KiB",
            text.len()
        ));
    }
    let depth = max_depth(text);
    if depth > MAX_YAML_DEPTH {
        return Err(format!(
            "the YAML nests {depth} levels deep, over the limit of {MAX_YAML_DEPTH} levels; a \
             namespace nests about 6"
        ));
    }
    Ok(())
}

/// An upper bound of the nesting depth of `text` (stops counting past
/// the limit).
fn max_depth(text: &str) -> usize {
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    let mut deepest = 0usize;
    // Inside a block scalar (`|` or `>`): lines indented deeper than this
    // are its text.
    let mut block_scalar: Option<usize> = None;
    for line in text.lines() {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let rest = line[indent..].trim_end();
        if rest.is_empty() || rest.starts_with('#') {
            continue;
        }
        if let Some(owner) = block_scalar {
            if indent > owner {
                continue;
            }
            block_scalar = None;
        }
        if flow == 0 {
            while indents.last().is_some_and(|&top| top > indent) {
                indents.pop();
            }
            if indents.last() != Some(&indent) {
                indents.push(indent);
            }
        }
        // `- - - x`: each entry marker opens a level.
        let mut dashes = 0;
        let mut content = rest;
        while let Some(after) = content
            .strip_prefix("- ")
            .or_else(|| (content == "-").then_some(""))
        {
            dashes += 1;
            content = after.trim_start();
        }
        let (line_flow_max, after_flow, ends_block) = scan_flow(content, flow);
        flow = after_flow;
        deepest = deepest.max(indents.len() + dashes + line_flow_max);
        if deepest > MAX_YAML_DEPTH {
            return deepest;
        }
        if ends_block && flow == 0 {
            block_scalar = Some(indent);
        }
    }
    deepest
}

/// Scans one line's content for flow brackets outside quotes and
/// comments, starting at depth `flow`: the deepest flow depth on the
/// line, the depth after it, and whether the line starts a block scalar.
fn scan_flow(content: &str, mut flow: usize) -> (usize, usize, bool) {
    let mut deepest = flow;
    let mut quote: Option<char> = None;
    let mut prev = ' ';
    for c in content.chars() {
        match quote {
            Some(q) => {
                if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '\'' if matches!(prev, ' ' | ':' | '[' | '{' | ',' | '-') => quote = Some(c),
                '#' if prev == ' ' => break,
                '[' | '{' => {
                    flow += 1;
                    deepest = deepest.max(flow);
                }
                ']' | '}' => flow = flow.saturating_sub(1),
                _ => {}
            },
        }
        prev = c;
    }
    let trimmed = content.split(" #").next().unwrap_or("").trim_end();
    let ends_block = trimmed
        .rsplit([' ', ':'])
        .next()
        .is_some_and(|t| t.starts_with(['|', '>']) && t.len() <= 3);
    (deepest, flow, ends_block)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_is_shallow() {
        let yaml = "name: orders\ndal: keyvalue\nbackend:\n  kind: sqlite\n  options:\n    \
                    path: orders.db\npolicy:\n  read: ['*']\n  admin:\n    - user:alice\n";
        assert!(max_depth(yaml) <= 4, "{}", max_depth(yaml));
        assert_eq!(check_yaml_bounds(yaml), Ok(()));
    }

    #[test]
    fn deep_flow_and_block_nesting_are_refused() {
        let flow = format!("a: {}{}", "[".repeat(20_000), "]".repeat(20_000));
        let e = check_yaml_bounds(&flow).unwrap_err();
        assert!(e.contains("limit of 32 levels"), "{e}");
        let mut block = String::new();
        for i in 0..40 {
            block.push_str(&format!("{}k{i}:\n", "  ".repeat(i)));
        }
        assert!(check_yaml_bounds(&block).is_err());
        let dashes = format!("{}x\n", "- ".repeat(40));
        assert!(check_yaml_bounds(&dashes).is_err());
    }

    #[test]
    fn brackets_in_quotes_and_block_scalars_do_not_count() {
        let quoted = format!("description: \"{}\"\n", "[".repeat(100));
        assert_eq!(check_yaml_bounds(&quoted), Ok(()));
        let mut literal = String::from("description: |\n");
        for i in 0..60 {
            literal.push_str(&format!("  {}line {i}\n", " ".repeat(i)));
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
