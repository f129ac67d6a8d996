//! OS errors in plain words, for the one-line messages every binary prints: `connection
//! refused`, not `Connection refused (os error 111)`.

use std::io;

/// An error in plain words: `connection refused`, not `Connection refused (os error
/// 111)`.
pub fn plain(e: &io::Error) -> String {
    let text = e.to_string();
    let text = match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => &text[..at],
        _ => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::plain;
    use std::io;

    #[test]
    fn errors_in_plain_words() {
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(plain(&refused), "connection refused");
        let unreachable = io::Error::from_raw_os_error(libc::EHOSTUNREACH);
        assert_eq!(plain(&unreachable), "no route to host");
        let custom = io::Error::other("Odd (thing)");
        assert_eq!(plain(&custom), "odd (thing)");
    }
}
