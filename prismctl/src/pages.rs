//! Following `next_page_token` across the pages of a `Get` or `Scan`.

use anyhow::{Result, ensure};

/// Page-token bookkeeping: the first page has an empty token, and the
/// request ends when a page returns no next token.
#[derive(Debug, Default)]
pub struct Pages {
    /// The token of the next page; `None` once the last page was read.
    next: Option<String>,
    started: bool,
}

impl Pages {
    /// The token to request next, or `None` when every page was read.
    pub fn next_token(&mut self) -> Option<String> {
        if !self.started {
            self.started = true;
            return Some(String::new());
        }
        self.next.clone()
    }

    /// Records a page's `next_page_token`; a token that repeats the one
    /// just used would loop forever, so it is an error.
    pub fn advance(&mut self, token: String) -> Result<()> {
        if token.is_empty() {
            self.next = None;
            return Ok(());
        }
        ensure!(
            self.next.as_deref() != Some(token.as_str()),
            "the proxy returned the same page token twice; stopping"
        );
        self.next = Some(token);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_tokens_until_empty() {
        let mut pages = Pages::default();
        assert_eq!(pages.next_token().as_deref(), Some(""));
        pages.advance("t1".into()).unwrap();
        assert_eq!(pages.next_token().as_deref(), Some("t1"));
        pages.advance("t2".into()).unwrap();
        assert_eq!(pages.next_token().as_deref(), Some("t2"));
        pages.advance(String::new()).unwrap();
        assert_eq!(pages.next_token(), None);
    }

    #[test]
    fn a_repeated_page_token_is_an_error() {
        let mut pages = Pages::default();
        pages.next_token();
        pages.advance("t1".into()).unwrap();
        pages.next_token();
        assert!(pages.advance("t1".into()).is_err());
    }
}
