//! A unified line diff of two YAML texts, for `apply` and its dry run.

/// `before` → `after` as unified-diff hunks (`-` removed, `+` added, two
/// lines of context), headed `--- serving` / `+++ applied`. Empty when the
/// texts are equal.
pub fn unified(before: &str, after: &str) -> String {
    if before == after {
        return String::new();
    }
    let a: Vec<&str> = before.lines().collect();
    let b: Vec<&str> = after.lines().collect();
    let ops = edit_script(&a, &b);
    const CONTEXT: usize = 2;
    let mut out = String::from("--- serving\n+++ applied\n");
    // Indices into `ops` of changed lines, grouped into hunks.
    let changed: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, op)| !matches!(op, Op::Same(..)))
        .map(|(i, _)| i)
        .collect();
    let mut i = 0;
    while i < changed.len() {
        let start = changed[i].saturating_sub(CONTEXT);
        let mut end = changed[i];
        while i < changed.len() && changed[i] <= end + 2 * CONTEXT + 1 {
            end = changed[i];
            i += 1;
        }
        let end = (end + CONTEXT).min(ops.len() - 1);
        let (mut a_start, mut b_start) = (0, 0);
        for op in &ops[..start] {
            match op {
                Op::Same(..) => {
                    a_start += 1;
                    b_start += 1;
                }
                Op::Del(_) => a_start += 1,
                Op::Add(_) => b_start += 1,
            }
        }
        let (mut a_len, mut b_len) = (0, 0);
        let mut body = String::new();
        for op in &ops[start..=end] {
            match op {
                Op::Same(line) => {
                    a_len += 1;
                    b_len += 1;
                    body.push_str(&format!(" {line}\n"));
                }
                Op::Del(line) => {
                    a_len += 1;
                    body.push_str(&format!("-{line}\n"));
                }
                Op::Add(line) => {
                    b_len += 1;
                    body.push_str(&format!("+{line}\n"));
                }
            }
        }
        out.push_str(&format!(
            "@@ -{},{a_len} +{},{b_len} @@\n{body}",
            a_start + usize::from(a_len > 0),
            b_start + usize::from(b_len > 0)
        ));
    }
    out
}

enum Op<'a> {
    Same(&'a str),
    Del(&'a str),
    Add(&'a str),
}

/// The shortest edit script by longest common subsequence (namespace
/// files are small: quadratic is fine).
fn edit_script<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<Op<'a>> {
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut ops = Vec::with_capacity(n + m);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push(Op::Same(a[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(Op::Del(a[i]));
            i += 1;
        } else {
            ops.push(Op::Add(b[j]));
            j += 1;
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_have_no_diff() {
        assert_eq!(unified("a\nb\n", "a\nb\n"), "");
    }

    #[test]
    fn a_changed_line_shows_with_context() {
        let before =
            "name: x\ndal: keyvalue\nbackend:\n  kind: memstore\nlimits:\n  max_key_bytes: 10\n";
        let after =
            "name: x\ndal: keyvalue\nbackend:\n  kind: memstore\nlimits:\n  max_key_bytes: 20\n";
        let d = unified(before, after);
        assert_eq!(
            d,
            "--- serving\n+++ applied\n@@ -4,3 +4,3 @@\n   kind: memstore\n limits:\n-  max_key_bytes: 10\n+  max_key_bytes: 20\n"
        );
    }

    #[test]
    fn a_new_file_is_all_additions() {
        let d = unified("", "name: x\ndal: keyvalue\n");
        assert_eq!(
            d,
            "--- serving\n+++ applied\n@@ -0,0 +1,2 @@\n+name: x\n+dal: keyvalue\n"
        );
    }

    #[test]
    fn distant_changes_make_two_hunks() {
        let a: String = (0..20).map(|i| format!("l{i}\n")).collect();
        let b = a.replace("l1\n", "L1\n").replace("l18\n", "L18\n");
        let d = unified(&a, &b);
        assert_eq!(d.matches("@@ -").count(), 2, "{d}");
        assert!(d.contains("-l1\n+L1\n") && d.contains("-l18\n+L18\n"));
    }
}
