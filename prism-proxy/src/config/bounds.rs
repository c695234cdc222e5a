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
    // Whether the next line may start a scalar: always in block context;
    // inside a flow collection only after `[`, `{`, `,` or `: ` (else the
    // line continues a plain scalar, in which a quote is text).
    let mut scalar_start = true;
    // A lone CR breaks lines in YAML too.
    for line in text.split(['\n', '\r']) {
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
        let starts = flow == 0 || scalar_start;
        let (line_flow_max, after_flow, ends_block, ends_at_start) =
            scan_flow(content, flow, starts);
        flow = after_flow;
        scalar_start = ends_at_start;
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
/// comments, starting at depth `flow` (`at_start`: the content may begin
/// with a scalar): the deepest flow depth on the line, the depth after it,
/// whether the line starts a block scalar, and whether it ends where a
/// scalar may start.
///
/// A quote opens a quoted scalar only where a scalar starts: at the start
/// of the content, or after `[`, `{`, `,` or `: ` (spaces between
/// allowed). Elsewhere it is part of a plain scalar (`[a 'b, [[...]]]`), and
/// skipping to the next quote would leave the brackets behind it uncounted.
/// Where YAML would read a quoted scalar that this does not (e.g. after
/// `? ` or `-` inside a flow), the brackets in it are counted: the bound
/// errs only towards refusing.
fn scan_flow(content: &str, mut flow: usize, mut at_start: bool) -> (usize, usize, bool, bool) {
    let mut deepest = flow;
    let mut quote: Option<char> = None;
    let mut prev = ' ';
    for c in content.chars() {
        match quote {
            Some(q) => {
                if c == q {
                    quote = None;
                }
                at_start = false;
            }
            None => {
                match c {
                    '"' | '\'' if at_start => quote = Some(c),
                    '#' if prev == ' ' => break,
                    '[' | '{' => {
                        flow += 1;
                        deepest = deepest.max(flow);
                    }
                    ']' | '}' => flow = flow.saturating_sub(1),
                    _ => {}
                }
                at_start = match c {
                    '[' | '{' | ',' => true,
                    ' ' => at_start || prev == ':',
                    _ => false,
                };
            }
        }
        prev = c;
    }
    // A line ending in `:` may have its value on the next line.
    let at_start = at_start || prev == ':';
    let trimmed = content.split(" #").next().unwrap_or("").trim_end();
    let ends_block = trimmed
        .rsplit([' ', ':'])
        .next()
        .is_some_and(|t| t.starts_with(['|', '>']) && t.len() <= 3);
    (deepest, flow, ends_block, at_start)
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
    fn a_quote_inside_a_plain_scalar_does_not_hide_brackets() {
        // In a flow collection `a 'b` is one plain scalar: the quote is text,
        // and the brackets after it nest (20 000 deep parsed in seconds).
        let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
        for yaml in [
            format!("x: [a 'b, {deep}]\n"),
            format!("x: [a \"b, {deep}]\n"),
            format!("x: [a:'b, {deep}]\n"),
            format!("x: [a -'b, {deep}]\n"),
            format!("x: [a\n  'b, {deep}]\n"),
            format!("x: {{k: v 'w, {deep}}}\n"),
        ] {
            let e = check_yaml_bounds(&yaml).unwrap_err();
            assert!(e.contains("limit of 32 levels"), "{yaml}: {e}");
        }
        // Quoted scalars still hide their brackets.
        let shallow = format!("x: ['{deep}', \"{deep}\", k: '{deep}']\ny: [\n  '{deep}']\n");
        assert_eq!(check_yaml_bounds(&shallow), Ok(()));
    }

    #[test]
    fn a_lone_carriage_return_breaks_lines() {
        let dashes = format!("k:\r{}x\r", "- ".repeat(40));
        assert!(check_yaml_bounds(&dashes).is_err());
        let mut block = String::new();
        for i in 0..40 {
            block.push_str(&format!("{}k{i}:\r", "  ".repeat(i)));
        }
        assert!(check_yaml_bounds(&block).is_err());
        let crlf = "name: orders\r\ndal: keyvalue\r\nbackend:\r\n  kind: sqlite\r\n";
        assert_eq!(check_yaml_bounds(crlf), Ok(()));
    }

    #[test]
    fn large_text_is_refused_naming_the_limit() {
        let big = format!("description: {}\n", "x".repeat(MAX_YAML_BYTES));
        let e = check_yaml_bounds(&big).unwrap_err();
        assert!(e.contains("262144 bytes"), "{e}");
    }
}
