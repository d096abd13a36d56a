//! Specific Character Sets used by the generator, and their encoders. The values of
//! text elements are encoded here, not by dicom-rs, so the bytes in the file are
//! exactly the ones intended (dicom-rs cannot write ISO 2022 code extensions).

use anyhow::{bail, ensure};

/// Character set of a synthetic patient's text attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Charset {
    /// Default repertoire (no Specific Character Set attribute).
    Ascii,
    /// `ISO_IR 100` (Latin-1).
    Latin1,
    /// `ISO_IR 192` (UTF-8).
    Utf8,
    /// `GB18030`.
    Gb18030,
    /// `GBK`.
    Gbk,
    /// `\ISO 2022 IR 58`: ASCII in G0, GB2312 designated to G1 with `ESC $ ) A`,
    /// ideographs as EUC-CN bytes.
    Iso2022Ir58,
}

const ESC_GB2312_G1: &[u8] = b"\x1b$)A";

impl Charset {
    /// Values of Specific Character Set (0008,0005), or `None` for the default.
    pub fn specific_character_set(self) -> Option<&'static [&'static str]> {
        match self {
            Charset::Ascii => None,
            Charset::Latin1 => Some(&["ISO_IR 100"]),
            Charset::Utf8 => Some(&["ISO_IR 192"]),
            Charset::Gb18030 => Some(&["GB18030"]),
            Charset::Gbk => Some(&["GBK"]),
            Charset::Iso2022Ir58 => Some(&["", "ISO 2022 IR 58"]),
        }
    }

    /// The Specific Character Set as it appears in the file (values joined by '\').
    pub fn label(self) -> String {
        self.specific_character_set()
            .map(|v| v.join("\\"))
            .unwrap_or_default()
    }

    /// Encode `text` (unpadded). `person_name` selects the PN rules for ISO 2022: the
    /// G1 designation is repeated at the start of every component that needs it,
    /// because the '^' and '=' delimiters return to the initial state (PS3.5 6.1.2.5.3).
    pub fn encode(self, text: &str, person_name: bool) -> anyhow::Result<Vec<u8>> {
        match self {
            Charset::Ascii => {
                ensure!(text.is_ascii(), "not ASCII: {text:?}");
                Ok(text.as_bytes().to_vec())
            }
            Charset::Latin1 => text
                .chars()
                .map(|c| {
                    let u = c as u32;
                    if u < 0x80 || (0xA0..=0xFF).contains(&u) {
                        Ok(u as u8)
                    } else {
                        bail!("{c:?} is not in ISO_IR 100")
                    }
                })
                .collect(),
            Charset::Utf8 => Ok(text.as_bytes().to_vec()),
            Charset::Gb18030 => encode_with(encoding_rs::GB18030, text),
            Charset::Gbk => encode_with(encoding_rs::GBK, text),
            Charset::Iso2022Ir58 => {
                let mut out = Vec::new();
                let mut component = String::new();
                let flush = |component: &mut String, out: &mut Vec<u8>| -> anyhow::Result<()> {
                    if !component.is_ascii() {
                        out.extend_from_slice(ESC_GB2312_G1);
                    }
                    out.extend(euc_cn(component)?);
                    component.clear();
                    Ok(())
                };
                for c in text.chars() {
                    if person_name && (c == '^' || c == '=') {
                        flush(&mut component, &mut out)?;
                        out.push(c as u8);
                    } else {
                        component.push(c);
                    }
                }
                flush(&mut component, &mut out)?;
                Ok(out)
            }
        }
    }
}

fn encode_with(enc: &'static encoding_rs::Encoding, text: &str) -> anyhow::Result<Vec<u8>> {
    let (bytes, _, had_errors) = enc.encode(text);
    ensure!(!had_errors, "{text:?} cannot be encoded in {}", enc.name());
    Ok(bytes.into_owned())
}

/// EUC-CN (GB2312 in GR): ASCII as is, ideographs as two bytes in 0xA1..=0xFE.
fn euc_cn(text: &str) -> anyhow::Result<Vec<u8>> {
    let bytes = encode_with(encoding_rs::GBK, text)?;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] < 0x80 {
            i += 1;
            continue;
        }
        let ok = i + 1 < bytes.len()
            && (0xA1..=0xFE).contains(&bytes[i])
            && (0xA1..=0xFE).contains(&bytes[i + 1]);
        ensure!(ok, "{text:?} is not in GB2312");
        i += 2;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso2022_ir58_person_name() {
        let b = Charset::Iso2022Ir58
            .encode("Zhou^Guoqiang=周^国强=", true)
            .unwrap();
        let mut expected = b"Zhou^Guoqiang=\x1b$)A".to_vec();
        expected.extend(encoding_rs::GBK.encode("周").0.iter());
        expected.extend(b"^\x1b$)A");
        expected.extend(encoding_rs::GBK.encode("国强").0.iter());
        expected.push(b'=');
        assert_eq!(b, expected);
    }

    #[test]
    fn gbk_trail_byte_5c() {
        let b = Charset::Gbk.encode("錦誠", true).unwrap();
        assert_eq!(b, [0xE5, 0x5C, 0xD5, 0x5C]);
    }

    #[test]
    fn latin1() {
        assert_eq!(
            Charset::Latin1.encode("Müller", true).unwrap(),
            b"M\xfcller"
        );
        assert!(Charset::Latin1.encode("王", true).is_err());
    }
}
