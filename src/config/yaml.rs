//! Where a YAML file went wrong, for both files the exporter reads
//! (`--config.file`, `--web.config.file`): the line and column serde_yaml_ng
//! reports and its message without the position it repeats.
//!
//! Takes a `serde_yaml_ng::Error`; hands on a [`Located`] that each file's
//! error type wraps with its path.

/// A YAML error with its place (1-based).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    pub line: usize,
    pub column: usize,
    /// serde's message, which names the key, without "at line … column …".
    pub message: String,
}

/// Places `e`. Errors about the whole stream (several documents) have no
/// location: they are placed at the start of the file, 1:1.
pub fn locate(e: &serde_yaml_ng::Error) -> Located {
    let location = e.location();
    let (line, column) = location.as_ref().map_or((1, 1), |l| (l.line(), l.column()));
    // The message carries its own "at line … column …"; keep it once.
    let message = e.to_string();
    let message = match message.rfind(" at line ") {
        Some(at) if location.is_some() => message[..at].to_owned(),
        _ => message,
    };
    Located {
        line,
        column,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> Located {
        match serde_yaml_ng::from_str::<std::collections::BTreeMap<String, u32>>(text) {
            Ok(_) => panic!("{text:?} parsed"),
            Err(e) => locate(&e),
        }
    }

    #[test]
    fn a_bad_value_is_placed_once() {
        let e = error("a: 1\nb: x\n");
        assert_eq!((e.line, e.column), (2, 4));
        assert!(!e.message.contains(" at line "), "{}", e.message);
    }

    #[test]
    fn several_documents_are_placed_at_the_start() {
        let e = error("a: 1\n---\nb: 2\n");
        assert_eq!((e.line, e.column), (1, 1));
    }
}
