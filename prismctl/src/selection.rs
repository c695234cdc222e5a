//! The `--key`, `--prefix` and `--start/--end` flags of `kv get` and
//! `kv delete`, and their conversion to a `KeySelection`.

use clap::Args;
use prism_proto::keyvalue::v1::{AllKeys, KeyList, KeyRange, KeySelection, key_selection};

/// Which keys of an id a command applies to. The three forms exclude each
/// other; none of them selects every key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct SelectionArgs {
    /// Only this key; repeat for several. Keys that do not exist are skipped.
    #[arg(long = "key", value_name = "KEY", conflicts_with_all = ["prefix", "start", "end"])]
    pub keys: Vec<String>,

    /// Only keys starting with PREFIX.
    #[arg(long, value_name = "PREFIX", conflicts_with_all = ["start", "end"])]
    pub prefix: Option<String>,

    /// Only keys >= START (bytewise). Without --end: no upper bound.
    #[arg(long, value_name = "START")]
    pub start: Option<String>,

    /// Only keys < END (bytewise). Without --start: from the first key.
    #[arg(long, value_name = "END")]
    pub end: Option<String>,
}

impl SelectionArgs {
    /// The `KeySelection` these flags describe; every key when none is given.
    pub fn to_selection(&self) -> KeySelection {
        use key_selection::Selection;
        let selection = if !self.keys.is_empty() {
            Selection::Keys(KeyList {
                keys: self.keys.iter().map(|k| k.as_bytes().to_vec()).collect(),
            })
        } else if let Some(prefix) = &self.prefix {
            Selection::Prefix(prefix.as_bytes().to_vec())
        } else if self.start.is_some() || self.end.is_some() {
            Selection::Range(KeyRange {
                start: self
                    .start
                    .as_deref()
                    .unwrap_or_default()
                    .as_bytes()
                    .to_vec(),
                end: self.end.as_deref().unwrap_or_default().as_bytes().to_vec(),
            })
        } else {
            Selection::All(AllKeys {})
        };
        KeySelection {
            selection: Some(selection),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use key_selection::Selection;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        selection: SelectionArgs,
    }

    fn parse(args: &[&str]) -> Result<Selection, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("test").chain(args.iter().copied()))?;
        Ok(cli.selection.to_selection().selection.expect("always set"))
    }

    #[test]
    fn no_flags_select_every_key() {
        assert_eq!(parse(&[]).unwrap(), Selection::All(AllKeys {}));
    }

    #[test]
    fn repeated_keys_become_a_key_list() {
        assert_eq!(
            parse(&["--key", "a", "--key", "b"]).unwrap(),
            Selection::Keys(KeyList {
                keys: vec![b"a".to_vec(), b"b".to_vec()],
            })
        );
    }

    #[test]
    fn prefix_becomes_a_prefix() {
        assert_eq!(
            parse(&["--prefix", "user:"]).unwrap(),
            Selection::Prefix(b"user:".to_vec())
        );
    }

    #[test]
    fn start_and_end_become_a_range() {
        assert_eq!(
            parse(&["--start", "a", "--end", "m"]).unwrap(),
            Selection::Range(KeyRange {
                start: b"a".to_vec(),
                end: b"m".to_vec(),
            })
        );
        assert_eq!(
            parse(&["--start", "m"]).unwrap(),
            Selection::Range(KeyRange {
                start: b"m".to_vec(),
                end: Vec::new(),
            })
        );
        assert_eq!(
            parse(&["--end", "m"]).unwrap(),
            Selection::Range(KeyRange {
                start: Vec::new(),
                end: b"m".to_vec(),
            })
        );
    }

    #[test]
    fn forms_exclude_each_other() {
        for args in [
            &["--key", "a", "--prefix", "p"][..],
            &["--key", "a", "--start", "s"],
            &["--key", "a", "--end", "e"],
            &["--prefix", "p", "--start", "s"],
            &["--prefix", "p", "--end", "e"],
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::ArgumentConflict,
                "{args:?}"
            );
        }
    }
}
