//! UID syntax (PS3.5 9.1): digits and dots, at most 64 characters, no empty component.
//! Leading zeros in a component are tolerated: some township devices send them, and
//! refusing their images would lose them; the check is about safety, not pedantry.

pub fn is_valid_uid(uid: &str) -> bool {
    pacs_store::header::is_valid_uid(uid)
}

#[cfg(test)]
mod tests {
    use super::is_valid_uid;

    #[test]
    fn uid_syntax() {
        assert!(is_valid_uid("1.2.840.10008.5.1.4.1.1.2"));
        assert!(is_valid_uid("2.25.0"));
        assert!(!is_valid_uid(""));
        assert!(!is_valid_uid("1..2"));
        assert!(!is_valid_uid("1.2."));
        assert!(is_valid_uid("1.02"));
        assert!(!is_valid_uid("../../etc/passwd"));
        assert!(!is_valid_uid(&"1.".repeat(40)));
    }
}
