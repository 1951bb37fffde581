//! The client's `--token-file`: the token is the first line that holds one, so a file edited by hand
//! (a blank first line, a `#` comment, CRLF line ends, trailing spaces) works as `mover token` wrote it.

use super::error::ConnectError;
use std::path::Path;

/// What a token file must hold, for the message about one that holds none.
const TOKEN_FILE_FORMAT: &str = "the token on a line of its own (as `mover token --user NAME` printed it); \
                                 blank lines and lines starting with '#' are ignored";

/// Reads the token from `path`: its first line that is neither blank nor a `#` comment, without the
/// spaces and line end around it. A file without one is refused naming the file and the format, rather
/// than being taken for "no token".
pub fn read_token_file(path: &Path) -> Result<String, ConnectError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConnectError::Credentials(format!("--token-file '{}': {e}", path.display())))?;
    token_in(&text).map(str::to_string).ok_or_else(|| {
        ConnectError::Credentials(format!(
            "--token-file '{}' holds no token: expected {TOKEN_FILE_FORMAT}",
            path.display()
        ))
    })
}

/// The token in a token file's text, if it has one.
fn token_in(text: &str) -> Option<&str> {
    // `lines` drops a "\r" before each "\n"; `trim` takes a lone "\r", tabs and spaces around the token.
    text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;

    #[test]
    fn the_token_is_the_first_line_that_holds_one() {
        assert_eq!(token_in("abc\n"), Some("abc"));
        assert_eq!(token_in("abc"), Some("abc"));
        assert_eq!(token_in("\nabc\n"), Some("abc"));
        assert_eq!(token_in("  \n\t\nabc  \n"), Some("abc"));
        assert_eq!(token_in("abc\r\n"), Some("abc"));
        assert_eq!(token_in("\r\n\r\nabc \r\nother\r\n"), Some("abc"));
        assert_eq!(token_in("# alice's token\nabc\n"), Some("abc"));
        assert_eq!(token_in(""), None);
        assert_eq!(token_in("\n \r\n# only a comment\n"), None);
    }

    #[test]
    fn a_file_without_a_token_is_named_with_the_format() {
        let dir = TempDir::new("token-file");
        let path = dir.path().join("empty.token");
        std::fs::write(&path, "\n\n# nothing here\n").unwrap();
        let e = read_token_file(&path).unwrap_err().to_string();
        assert!(e.contains("empty.token") && e.contains("holds no token") && e.contains("on a line of its own"), "{e}");
        assert!(!e.contains("no credentials"), "{e}");
        std::fs::write(&path, "\r\n  abc  \r\n").unwrap();
        assert_eq!(read_token_file(&path).unwrap(), "abc");
        let missing = read_token_file(&dir.path().join("missing")).unwrap_err().to_string();
        assert!(missing.starts_with("--token-file '") && missing.contains("missing"), "{missing}");
    }
}
