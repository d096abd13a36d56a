//! Application Entity titles, parsed at the edge.

use std::fmt;

use crate::StoreError;

/// A DICOM AE title: 1–16 characters of the default repertoire, no backslash or control
/// characters, not all spaces. Leading and trailing spaces are not significant (PS3.5 6.2)
/// and are removed, so `"CT1 "` and `"CT1"` are the same AE.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String))]
pub struct AeTitle(String);

impl AeTitle {
    pub fn parse(raw: &str) -> Result<Self, StoreError> {
        let t = raw.trim_matches(|c| c == ' ' || c == '\0');
        if t.is_empty() {
            return Err(StoreError::Invalid(
                "an AE title may not be empty or all spaces".into(),
            ));
        }
        if t.len() > 16 {
            return Err(StoreError::Invalid(format!(
                "AE title {t:?} is longer than 16 characters"
            )));
        }
        if let Some(c) = t
            .chars()
            .find(|c| !c.is_ascii() || c.is_ascii_control() || *c == '\\')
        {
            return Err(StoreError::Invalid(format!(
                "AE title {t:?} contains {c:?}: only printable ASCII without backslash is allowed"
            )));
        }
        Ok(AeTitle(t.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AeTitle {
    type Error = StoreError;
    fn try_from(s: String) -> Result<Self, StoreError> {
        AeTitle::parse(&s)
    }
}

impl From<AeTitle> for String {
    fn from(a: AeTitle) -> String {
        a.0
    }
}

impl fmt::Display for AeTitle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_validates() {
        assert_eq!(AeTitle::parse(" CT1 ").unwrap().as_str(), "CT1");
        assert!(AeTitle::parse("").is_err());
        assert!(AeTitle::parse("    ").is_err());
        assert!(AeTitle::parse("ABCDEFGHIJKLMNOPQ").is_err());
        assert!(AeTitle::parse("A\\B").is_err());
        assert!(AeTitle::parse("A\nB").is_err());
        assert!(AeTitle::parse("名字").is_err());
        assert!(AeTitle::parse("ABCDEFGHIJKLMNOP").is_ok());
    }
}
