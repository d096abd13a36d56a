//! Specific Character Set (0008,0005) decoding into UTF-8 for the index.
//!
//! dicom-rs honours only the first value of a multi-valued Specific Character Set and does
//! not interpret ISO 2022 escape sequences, so Japanese, Korean and Chinese names written
//! with code extensions come out wrong. This module decodes raw value bytes itself, following
//! PS3.5 6.1.2.5 and the worked examples of Annexes H (Japanese), I (Korean) and J/K (Chinese).
//!
//! Two modes:
//! - **whole-value** character sets without code extensions (`ISO_IR 192`, `GB18030`, `GBK`
//!   and a lone `ISO_IR 13`, read as Shift_JIS): the value is decoded in one go and split on
//!   delimiters afterwards, because a trail byte of a two-byte character may be `0x5C` (`\`)
//!   or `0x5E` (`^`);
//! - **ISO 2022** for everything else: escape sequences designate G0 (bytes `0x21..=0x7E`) and
//!   G1 (bytes `0xA1..=0xFE`); the initial state is the first value's character set and it is
//!   restored at CR, LF, TAB, FF and `\` (and at `^` and `=` in person names).
//!
//! Decoding never fails: bytes that do not decode become U+FFFD, and high bytes without a G1
//! character set (the default repertoire) are read as Latin-1.

use encoding_rs::Encoding;
use serde::{Deserialize, Serialize};

/// One Person Name value split into its three component groups, each decoded to UTF-8.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonName {
    pub alphabetic: String,
    pub ideographic: String,
    pub phonetic: String,
}

impl PersonName {
    /// Groups joined by '=' as in DICOM, trailing empty groups dropped ("Wang^XiaoDong=王^小東").
    pub fn to_dicom_string(&self) -> String {
        let groups = [&self.alphabetic, &self.ideographic, &self.phonetic];
        let used = groups
            .iter()
            .rposition(|g| !g.is_empty())
            .map_or(0, |i| i + 1);
        let mut out = String::with_capacity(groups.iter().map(|g| g.len() + 1).sum());
        for (i, g) in groups[..used].iter().enumerate() {
            if i > 0 {
                out.push('=');
            }
            out.push_str(g);
        }
        out
    }

    /// True when all three component groups are empty.
    pub fn is_empty(&self) -> bool {
        self.alphabetic.is_empty() && self.ideographic.is_empty() && self.phonetic.is_empty()
    }
}

/// What occupies G0 (bytes 0x21..=0x7E).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum G0 {
    /// ISO 646 / ASCII (ISO-IR 6); JIS X 0201 Romaji (ISO-IR 14) is read the same way.
    Ascii,
    /// JIS X 0208 (ISO-IR 87), two bytes per character.
    Jis0208,
    /// JIS X 0212 (ISO-IR 159), two bytes per character.
    Jis0212,
}

/// What occupies G1 (bytes 0x80..=0xFF).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum G1 {
    /// Nothing designated: read high bytes as Latin-1 rather than failing.
    None,
    /// ISO 8859-1 (ISO-IR 100), one byte per character, mapped directly.
    Latin1,
    /// Another single-byte set, decoded byte by byte with this table.
    Single(&'static Encoding),
    /// JIS X 0201 Katakana (ISO-IR 13): 0xA1..=0xDF are half-width katakana.
    Katakana,
    /// KS X 1001 (ISO-IR 149) in G1: the bytes are EUC-KR.
    Ksx1001,
    /// GB 2312 (ISO-IR 58) in G1: the bytes are EUC-CN, a subset of GBK.
    Gb2312,
}

/// One Defined Term of Specific Character Set, as far as decoding is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Term {
    Default,
    Single(G1),
    /// ISO_IR 13 / ISO 2022 IR 13.
    JisX0201,
    Jis0208,
    Jis0212,
    Ksx1001,
    Gb2312,
    Utf8,
    Gb18030,
    Gbk,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Decode the whole value with one multi-byte table, then split.
    Whole(&'static Encoding),
    /// ISO 2022 state machine starting from this G0/G1.
    Iso2022 { g0: G0, g1: G1 },
}

/// Decoder for one data set's Specific Character Set (0008,0005).
#[derive(Debug, Clone)]
pub struct CharsetDecoder {
    mode: Mode,
}

impl Default for CharsetDecoder {
    fn default() -> Self {
        CharsetDecoder {
            mode: Mode::Iso2022 {
                g0: G0::Ascii,
                g1: G1::None,
            },
        }
    }
}

/// Normalise a Defined Term: upper case, only letters and digits ("ISO_IR 100" -> "ISOIR100").
/// Tolerates the usual misspellings ("ISO-IR 100", "ISO_2022_IR_100", "ISO IR 192").
fn parse_term(value: &str) -> Term {
    let norm: String = value
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let number = norm
        .strip_prefix("ISO2022IR")
        .or_else(|| norm.strip_prefix("ISOIR"));
    if let Some(number) = number {
        return match number {
            "6" => Term::Default,
            "100" => Term::Single(G1::Latin1),
            "101" => Term::Single(G1::Single(encoding_rs::ISO_8859_2)),
            "109" => Term::Single(G1::Single(encoding_rs::ISO_8859_3)),
            "110" => Term::Single(G1::Single(encoding_rs::ISO_8859_4)),
            "144" => Term::Single(G1::Single(encoding_rs::ISO_8859_5)),
            "127" => Term::Single(G1::Single(encoding_rs::ISO_8859_6)),
            "126" => Term::Single(G1::Single(encoding_rs::ISO_8859_7)),
            "138" => Term::Single(G1::Single(encoding_rs::ISO_8859_8)),
            // ISO 8859-9 equals windows-1254 in 0xA0..=0xFF.
            "148" => Term::Single(G1::Single(encoding_rs::WINDOWS_1254)),
            "203" => Term::Single(G1::Single(encoding_rs::ISO_8859_15)),
            // TIS 620-2533 is a subset of windows-874.
            "166" => Term::Single(G1::Single(encoding_rs::WINDOWS_874)),
            "13" => Term::JisX0201,
            "87" => Term::Jis0208,
            "159" => Term::Jis0212,
            "149" => Term::Ksx1001,
            "58" => Term::Gb2312,
            "192" => Term::Utf8,
            _ => Term::Default,
        };
    }
    match norm.as_str() {
        "GB18030" => Term::Gb18030,
        "GBK" | "GB2312" => Term::Gbk,
        "UTF8" => Term::Utf8,
        _ => Term::Default,
    }
}

/// What an escape sequence designates.
#[derive(Debug, Clone, Copy)]
enum Designation {
    G0(G0),
    G1(G1),
    /// ESC ( J: JIS X 0201 Romaji into G0; also makes high bytes katakana if G1 is free
    /// (what dcmtk and pydicom do for `ISO 2022 IR 13`).
    JisRoman,
}

/// Parse the escape sequence following an ESC byte. Returns the designation (None when the
/// sequence is well formed but unknown) and the number of bytes after ESC it occupies, or
/// None when it is not a well-formed ISO 2022 escape sequence at all.
fn parse_escape(rest: &[u8]) -> Option<(Option<Designation>, usize)> {
    // ISO 2022: intermediate bytes 0x20..=0x2F, then one final byte 0x30..=0x7E.
    let inter = rest
        .iter()
        .take_while(|b| (0x20..=0x2F).contains(*b))
        .count();
    let fin = *rest.get(inter)?;
    if inter == 0 || !(0x30..=0x7E).contains(&fin) {
        return None;
    }
    let seq = &rest[..=inter];
    let single = |e: &'static Encoding| Some(Designation::G1(G1::Single(e)));
    let d = match seq {
        b"(B" => Some(Designation::G0(G0::Ascii)),
        b"(J" => Some(Designation::JisRoman),
        b")I" => Some(Designation::G1(G1::Katakana)),
        // ESC $ @ is the 1978 edition of JIS X 0208; read it with the same table.
        b"$B" | b"$@" => Some(Designation::G0(G0::Jis0208)),
        b"$(D" => Some(Designation::G0(G0::Jis0212)),
        b"$)C" => Some(Designation::G1(G1::Ksx1001)),
        b"$)A" => Some(Designation::G1(G1::Gb2312)),
        b"-A" => Some(Designation::G1(G1::Latin1)),
        b"-B" => single(encoding_rs::ISO_8859_2),
        b"-C" => single(encoding_rs::ISO_8859_3),
        b"-D" => single(encoding_rs::ISO_8859_4),
        b"-L" => single(encoding_rs::ISO_8859_5),
        b"-G" => single(encoding_rs::ISO_8859_6),
        b"-F" => single(encoding_rs::ISO_8859_7),
        b"-H" => single(encoding_rs::ISO_8859_8),
        b"-M" => single(encoding_rs::WINDOWS_1254),
        b"-b" => single(encoding_rs::ISO_8859_15),
        b"-T" => single(encoding_rs::WINDOWS_874),
        _ => None,
    };
    Some((d, seq.len()))
}

/// Bytes waiting to be decoded together with one table (runs of multi-byte characters).
struct Pending {
    buf: Vec<u8>,
    enc: Option<&'static Encoding>,
}

impl Pending {
    fn push(&mut self, out: &mut String, enc: &'static Encoding, bytes: &[u8]) {
        if self.enc != Some(enc) {
            self.flush(out);
            self.enc = Some(enc);
        }
        self.buf.extend_from_slice(bytes);
    }

    fn flush(&mut self, out: &mut String) {
        if let Some(enc) = self.enc.take()
            && !self.buf.is_empty()
        {
            let (text, _had_errors) = enc.decode_without_bom_handling(&self.buf);
            out.push_str(&text);
        }
        self.buf.clear();
    }
}

impl CharsetDecoder {
    /// `values` are the backslash-separated values of (0008,0005), already trimmed; empty slice = default repertoire.
    pub fn new(values: &[String]) -> Self {
        let first = values.first().map_or(Term::Default, |v| parse_term(v));
        let mode = match first {
            Term::Utf8 => Mode::Whole(encoding_rs::UTF_8),
            Term::Gb18030 => Mode::Whole(encoding_rs::GB18030),
            Term::Gbk => Mode::Whole(encoding_rs::GBK),
            // A lone ISO_IR 13 (no code extensions): JIS X 0201 in both halves. Shift_JIS is
            // a superset that also reads the (non-conformant, common) Shift_JIS kanji; its
            // trail bytes can be 0x5C, so decode the value whole.
            Term::JisX0201 if values.len() <= 1 => Mode::Whole(encoding_rs::SHIFT_JIS),
            Term::JisX0201 => Mode::Iso2022 {
                g0: G0::Ascii,
                g1: G1::Katakana,
            },
            Term::Single(g1) => Mode::Iso2022 { g0: G0::Ascii, g1 },
            Term::Ksx1001 => Mode::Iso2022 {
                g0: G0::Ascii,
                g1: G1::Ksx1001,
            },
            Term::Gb2312 => Mode::Iso2022 {
                g0: G0::Ascii,
                g1: G1::Gb2312,
            },
            // Multi-byte G0 sets cannot be the initial state (PS3.3 C.12.1.1.2): start in ASCII.
            Term::Default | Term::Jis0208 | Term::Jis0212 => Mode::Iso2022 {
                g0: G0::Ascii,
                g1: G1::None,
            },
        };
        CharsetDecoder { mode }
    }

    /// Decode a text value (SH, LO, ST, LT, UT, UC; also CS-like ASCII) to UTF-8. Multi-valued strings stay
    /// joined by '\' in the output. Never panics; undecodable bytes become U+FFFD.
    pub fn decode_text(&self, bytes: &[u8]) -> String {
        self.decode(bytes, false)
    }

    /// Decode a PN value (first value if multi-valued) into its groups.
    pub fn decode_person_name(&self, bytes: &[u8]) -> PersonName {
        let text = self.decode(bytes, true);
        // Only an ASCII backslash or '=' decodes to these characters: trail bytes of
        // multi-byte characters were consumed by the decoders above.
        let first = text.split('\\').next().unwrap_or_default();
        let first = first.trim_end_matches([' ', '\0']);
        let mut groups = first
            .splitn(3, '=')
            .map(|g| g.trim_end_matches(' ').to_owned());
        PersonName {
            alphabetic: groups.next().unwrap_or_default(),
            ideographic: groups.next().unwrap_or_default(),
            phonetic: groups.next().unwrap_or_default(),
        }
    }

    /// Decode every value of a (possibly multi-valued) PN element into its groups, in
    /// order. An empty value gives an empty [`PersonName`].
    pub fn decode_person_names(&self, bytes: &[u8]) -> Vec<PersonName> {
        let text = self.decode(bytes, true);
        let text = text.trim_end_matches([' ', '\0']);
        text.split('\\')
            .map(|value| {
                let mut groups = value
                    .splitn(3, '=')
                    .map(|g| g.trim_end_matches([' ', '\0']).to_owned());
                PersonName {
                    alphabetic: groups.next().unwrap_or_default(),
                    ideographic: groups.next().unwrap_or_default(),
                    phonetic: groups.next().unwrap_or_default(),
                }
            })
            .collect()
    }

    fn decode(&self, bytes: &[u8], person_name: bool) -> String {
        // Fast path: plain ASCII without escapes reads the same in every supported set.
        if bytes.iter().all(|&b| b < 0x80 && b != 0x1B) {
            return bytes.iter().map(|&b| b as char).collect();
        }
        match self.mode {
            Mode::Whole(enc) => enc.decode_without_bom_handling(bytes).0.into_owned(),
            Mode::Iso2022 { g0, g1 } => decode_iso2022(bytes, (g0, g1), person_name),
        }
    }
}

/// Whether the state returns to the initial character sets before this byte
/// (PS3.5 6.1.2.5.3).
fn resets_state(b: u8, person_name: bool) -> bool {
    matches!(b, b'\r' | b'\n' | b'\t' | 0x0C | b'\\') || (person_name && matches!(b, b'^' | b'='))
}

fn decode_iso2022(bytes: &[u8], initial: (G0, G1), person_name: bool) -> String {
    let mut out = String::with_capacity(bytes.len() + bytes.len() / 2);
    let mut pending = Pending {
        buf: Vec::new(),
        enc: None,
    };
    let (mut g0, mut g1) = initial;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == 0x1B {
            pending.flush(&mut out);
            match parse_escape(&bytes[i + 1..]) {
                Some((designation, len)) => {
                    match designation {
                        Some(Designation::G0(set)) => g0 = set,
                        Some(Designation::G1(set)) => g1 = set,
                        Some(Designation::JisRoman) => {
                            g0 = G0::Ascii;
                            if g1 == G1::None {
                                g1 = G1::Katakana;
                            }
                        }
                        // A well-formed but unknown escape sequence: drop it.
                        None => {}
                    }
                    i += 1 + len;
                }
                None => {
                    out.push(char::REPLACEMENT_CHARACTER);
                    i += 1;
                }
            }
            continue;
        }
        if b < 0x80 {
            let double = match g0 {
                G0::Jis0208 | G0::Jis0212 => (0x21..=0x7E).contains(&b),
                G0::Ascii => false,
            };
            if double {
                match bytes.get(i + 1) {
                    Some(&b2) if (0x21..=0x7E).contains(&b2) => {
                        // 7-bit JIS to EUC-JP: set the high bits; JIS X 0212 takes the SS3 prefix.
                        let euc = [0x8F, b | 0x80, b2 | 0x80];
                        let euc = if g0 == G0::Jis0212 {
                            &euc[..]
                        } else {
                            &euc[1..]
                        };
                        pending.push(&mut out, encoding_rs::EUC_JP, euc);
                        i += 2;
                    }
                    _ => {
                        pending.flush(&mut out);
                        out.push(char::REPLACEMENT_CHARACTER);
                        i += 1;
                    }
                }
                continue;
            }
            pending.flush(&mut out);
            if resets_state(b, person_name) {
                (g0, g1) = initial;
            }
            out.push(b as char);
            i += 1;
            continue;
        }
        match g1 {
            G1::None | G1::Latin1 => {
                pending.flush(&mut out);
                out.push(b as char);
            }
            G1::Single(enc) => pending.push(&mut out, enc, &[b]),
            G1::Katakana => {
                pending.flush(&mut out);
                out.push(match b {
                    0xA1..=0xDF => char::from_u32(0xFF61 + u32::from(b - 0xA1))
                        .unwrap_or(char::REPLACEMENT_CHARACTER),
                    _ => char::REPLACEMENT_CHARACTER,
                });
            }
            // Only high bytes are collected, so a lead byte can never pair with a
            // following ASCII byte; a lone lead byte at the end of a run gives U+FFFD.
            G1::Ksx1001 => pending.push(&mut out, encoding_rs::EUC_KR, &[b]),
            G1::Gb2312 => pending.push(&mut out, encoding_rs::GBK, &[b]),
        }
        i += 1;
    }
    pending.flush(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(scs: &str) -> CharsetDecoder {
        let values: Vec<String> = if scs.is_empty() {
            Vec::new()
        } else {
            scs.split('\\').map(|v| v.trim().to_owned()).collect()
        };
        CharsetDecoder::new(&values)
    }

    fn pn(a: &str, i: &str, p: &str) -> PersonName {
        PersonName {
            alphabetic: a.into(),
            ideographic: i.into(),
            phonetic: p.into(),
        }
    }

    #[test]
    fn person_name_to_dicom_string() {
        assert_eq!(pn("A^B", "", "").to_dicom_string(), "A^B");
        assert_eq!(pn("A", "B", "").to_dicom_string(), "A=B");
        assert_eq!(pn("A", "", "C").to_dicom_string(), "A==C");
        assert_eq!(pn("", "", "").to_dicom_string(), "");
        assert!(pn("", "", "").is_empty());
        assert!(!pn("", "", "x").is_empty());
    }

    #[test]
    fn default_repertoire_ascii_and_stray_latin1() {
        let d = dec("");
        assert_eq!(d.decode_text(b"CT HEAD"), "CT HEAD");
        assert_eq!(d.decode_text(b"J\xe9r\xf4me"), "Jérôme");
        let d = dec("ISO_IR 6");
        assert_eq!(d.decode_person_name(b"Doe^John  "), pn("Doe^John", "", ""));
        // Unknown terms fall back to the default repertoire.
        assert_eq!(dec("ISO_IR 999").decode_text(b"abc\xe9"), "abcé");
    }

    /// Clunie's charset test files as listed in pydicom's charset_files/FileInfo.txt.
    #[test]
    fn single_byte_sets() {
        assert_eq!(
            dec("ISO_IR 100").decode_person_name(b"Buc^J\xe9r\xf4me"),
            pn("Buc^Jérôme", "", "")
        );
        assert_eq!(
            dec("ISO_IR 100").decode_text(b"\xc4neas^R\xfcdiger"),
            "Äneas^Rüdiger"
        );
        assert_eq!(
            dec("ISO_IR 127").decode_text(b"\xe2\xc8\xc7\xe6\xea^\xe4\xe6\xd2\xc7\xd1"),
            "قباني^لنزار"
        );
        assert_eq!(
            dec("ISO_IR 126").decode_text(b"\xc4\xe9\xef\xed\xf5\xf3\xe9\xef\xf2"),
            "Διονυσιος"
        );
        assert_eq!(
            dec("ISO_IR 138").decode_text(b"\xf9\xf8\xe5\xef^\xe3\xe1\xe5\xf8\xe4"),
            "שרון^דבורה"
        );
        assert_eq!(
            dec("ISO_IR 144").decode_text(b"\xbb\xee\xdace\xdc\xd1yp\xd3"),
            "Люкceмбypг"
        );
        assert_eq!(dec("ISO_IR 101").decode_text(b"Wa\xb3\xeasa"), "Wałęsa");
        assert_eq!(dec("ISO_IR 109").decode_text(b"anta\xfdnomo"), "antaŭnomo");
        assert_eq!(dec("ISO_IR 110").decode_text(b"v\xe0rds"), "vārds");
        assert_eq!(
            dec("ISO_IR 148").decode_text(b"\xc7avu\xfeo\xf0lu"),
            "Çavuşoğlu"
        );
        assert_eq!(
            dec("ISO_IR 166").decode_text(b"\xb9\xd2\xc1\xca\xa1\xd8\xc5"),
            "นามสกุล"
        );
        assert_eq!(dec("ISO_IR 203").decode_text(b"\xa4 5"), "€ 5");
        // Common misspelling.
        assert_eq!(dec("ISO-IR 100").decode_text(b"J\xe9r\xf4me"), "Jérôme");
    }

    /// pydicom's ENCODED_NAMES: every single-byte set as a code extension after ASCII.
    #[test]
    fn single_byte_code_extensions() {
        let cases: [(&str, &str, &[u8]); 11] = [
            (
                "ISO 2022 IR 13",
                "ﾔﾏﾀﾞ^ﾀﾛｳ",
                b"\x1b\x29\x49\xd4\xcf\xc0\xde\x5e\x1b\x29\x49\xc0\xdb\xb3",
            ),
            (
                "ISO 2022 IR 100",
                "Buc^Jérôme",
                b"\x1b\x2d\x41\x42\x75\x63\x5e\x1b\x2d\x41\x4a\xe9\x72\xf4\x6d\x65",
            ),
            (
                "ISO 2022 IR 101",
                "Wałęsa",
                b"\x1b\x2d\x42\x57\x61\xb3\xea\x73\x61",
            ),
            (
                "ISO 2022 IR 109",
                "antaŭnomo",
                b"\x1b\x2d\x43\x61\x6e\x74\x61\xfd\x6e\x6f\x6d\x6f",
            ),
            (
                "ISO 2022 IR 110",
                "vārds",
                b"\x1b\x2d\x44\x76\xe0\x72\x64\x73",
            ),
            (
                "ISO 2022 IR 127",
                "قباني^لنزار",
                b"\x1b\x2d\x47\xe2\xc8\xc7\xe6\xea\x5e\x1b\x2d\x47\xe4\xe6\xd2\xc7\xd1",
            ),
            (
                "ISO 2022 IR 126",
                "Διονυσιος",
                b"\x1b\x2d\x46\xc4\xe9\xef\xed\xf5\xf3\xe9\xef\xf2",
            ),
            (
                "ISO 2022 IR 138",
                "שרון^דבורה",
                b"\x1b\x2d\x48\xf9\xf8\xe5\xef\x5e\x1b\x2d\x48\xe3\xe1\xe5\xf8\xe4",
            ),
            (
                "ISO 2022 IR 144",
                "Люкceмбypг",
                b"\x1b\x2d\x4c\xbb\xee\xda\x63\x65\xdc\xd1\x79\x70\xd3",
            ),
            (
                "ISO 2022 IR 148",
                "Çavuşoğlu",
                b"\x1b\x2d\x4d\xc7\x61\x76\x75\xfe\x6f\xf0\x6c\x75",
            ),
            (
                "ISO 2022 IR 166",
                "นามสกุล",
                b"\x1b\x2d\x54\xb9\xd2\xc1\xca\xa1\xd8\xc5",
            ),
        ];
        for (term, expected, raw) in cases {
            let d = dec(&format!("\\{term}"));
            let mut bytes = b"ASCII+".to_vec();
            bytes.extend_from_slice(raw);
            assert_eq!(
                d.decode_person_name(&bytes).alphabetic,
                format!("ASCII+{expected}"),
                "{term}"
            );
        }
    }

    #[test]
    fn missing_escape_after_pn_delimiter_falls_back_to_initial_set() {
        // After '^' the state is the initial one (ASCII, no G1): high bytes read as Latin-1.
        let d = dec("\\ISO 2022 IR 13");
        let got = d.decode_person_name(b"ASCII+\x1b\x29\x49\xd4\xcf\xc0\xde\x5e\xc0\xdb\xb3");
        assert_eq!(got.alphabetic, "ASCII+ﾔﾏﾀﾞ^ÀÛ³");
    }

    #[test]
    fn multi_valued_single_byte_extensions() {
        let d = dec("ISO 2022 IR 100\\ISO 2022 IR 144\\ISO 2022 IR 126");
        let bytes = b"Buc^J\xe9r\xf4me\\\x1b\x2d\x46\xc4\xe9\xef\xed\xf5\xf3\xe9\xef\xf2\\\x1b\x2d\x4c\xbb\xee\xda\x63\x65\xdc\xd1\x79\x70\xd3";
        assert_eq!(d.decode_text(bytes), "Buc^Jérôme\\Διονυσιος\\Люкceмбypг");
        // First value only for PN.
        assert_eq!(d.decode_person_name(bytes), pn("Buc^Jérôme", "", ""));
        // Value 1's set is the initial state: no escape needed for Latin-1.
        let d = dec("ISO 2022 IR 100\\ISO 2022 IR 126");
        assert_eq!(
            d.decode_person_name(b"Dionysios=\x1b\x2d\x46\xc4\xe9\xef\xed\xf5\xf3\xe9\xef\xf2"),
            pn("Dionysios", "Διονυσιος", "")
        );
        assert_eq!(d.decode_text(b"R\xf6ntgenaufnahme"), "Röntgenaufnahme");
    }

    /// PS3.5 H.3.1 (chrH31): `\ISO 2022 IR 87`.
    #[test]
    fn japanese_iso_2022_ir_87() {
        let d = dec("\\ISO 2022 IR 87");
        let bytes =
            b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B";
        let name = d.decode_person_name(bytes);
        assert_eq!(name, pn("Yamada^Tarou", "山田^太郎", "やまだ^たろう"));
        assert_eq!(
            name.to_dicom_string(),
            "Yamada^Tarou=山田^太郎=やまだ^たろう"
        );
        // "$^" (や) carries 0x5E as its second byte: not a component delimiter.
        assert_eq!(d.decode_text(bytes), "Yamada^Tarou=山田^太郎=やまだ^たろう");
    }

    /// PS3.5 H.3.2 (chrH32): `ISO 2022 IR 13\ISO 2022 IR 87`.
    #[test]
    fn japanese_iso_2022_ir_13_and_87() {
        let d = dec("ISO 2022 IR 13\\ISO 2022 IR 87");
        let bytes = b"\xd4\xcf\xc0\xde^\xc0\xdb\xb3=\x1b$B;3ED\x1b(J^\x1b$BB@O:\x1b(J=\x1b$B$d$^$@\x1b(J^\x1b$B$?$m$&\x1b(J";
        assert_eq!(
            d.decode_person_name(bytes),
            pn("ﾔﾏﾀﾞ^ﾀﾛｳ", "山田^太郎", "やまだ^たろう")
        );
    }

    /// JIS X 0212 (ESC $ ( D): "Mori^Ogai=森^鷗外=もり^おうがい" as pydicom encodes it.
    #[test]
    fn japanese_iso_2022_ir_159() {
        let d = dec("ISO 2022 IR 6\\ISO 2022 IR 87\\ISO 2022 IR 159");
        let bytes = b"\x4d\x6f\x72\x69\x5e\x4f\x67\x61\x69\x3d\x1b\x24\x42\x3f\x39\x1b\x28\x42\x5e\x1b\x24\x28\x44\x6c\x3f\x1b\x24\x42\x33\x30\x1b\x28\x42\x3d\x1b\x24\x42\x24\x62\x24\x6a\x1b\x28\x42\x5e\x1b\x24\x42\x24\x2a\x24\x26\x24\x2c\x24\x24\x1b\x28\x42";
        assert_eq!(
            d.decode_person_name(bytes),
            pn("Mori^Ogai", "森^鷗外", "もり^おうがい")
        );
        let d = dec("\\ISO 2022 IR 159");
        assert_eq!(d.decode_text(b"\x1b$(D\x30\x21\x1b(B"), "丂");
    }

    /// Katakana, kanji and JIS X 0212 mixed, as pydicom encodes 'あaｱア齩'.
    #[test]
    fn japanese_mixed_13_87_159() {
        let d = dec("ISO 2022 IR 13\\ISO 2022 IR 87\\ISO 2022 IR 159");
        let bytes = b"\x1b$B$\"\x1b(Ja\x1b)I\xb1\x1b$B%\"\x1b$(DmN\x1b(J";
        assert_eq!(d.decode_text(bytes), "あaｱア齩");
    }

    /// ISO_IR 13 without extensions: half-width katakana (read as Shift_JIS).
    #[test]
    fn japanese_iso_ir_13() {
        let d = dec("ISO_IR 13");
        assert_eq!(
            d.decode_person_name(b"\xd4\xcf\xc0\xde^\xc0\xdb\xb3"),
            pn("ﾔﾏﾀﾞ^ﾀﾛｳ", "", "")
        );
        // CR resets to the initial set; ESC ( J makes high bytes katakana again (dcmtk example).
        let d = dec("\\ISO 2022 IR 13");
        assert_eq!(
            d.decode_text(b"Japanese\r\x1b(J\xd4\xcf\xc0\xde\nText"),
            "Japanese\rﾔﾏﾀﾞ\nText"
        );
    }

    /// PS3.5 I.2 (chrI2): `\ISO 2022 IR 149`.
    #[test]
    fn korean_iso_2022_ir_149() {
        let d = dec("\\ISO 2022 IR 149");
        let bytes = b"Hong^Gildong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7=\x1b$)C\xc8\xab^\x1b$)C\xb1\xe6\xb5\xbf";
        assert_eq!(
            d.decode_person_name(bytes),
            pn("Hong^Gildong", "洪^吉洞", "홍^길동")
        );
        // Korean text with line breaks (PS3.5 I.3 style) and the common single-valued form.
        let d = dec("ISO 2022 IR 100\\ISO 2022 IR 149");
        assert_eq!(
            d.decode_text(b"The 1st line includes \x1b$)C\xb1\xe6\xb5\xbf.\r\nThe 3rd line."),
            "The 1st line includes 길동.\r\nThe 3rd line."
        );
        let d = dec("ISO 2022 IR 149");
        assert_eq!(d.decode_text(b"\xb1\xe8\xc8\xf1\xc1\xdf"), "김희중");
    }

    /// PS3.5 K.2: `\ISO 2022 IR 58`.
    #[test]
    fn chinese_iso_2022_ir_58() {
        let d = dec("\\ISO 2022 IR 58");
        let bytes = b"Zhang^XiaoDong=\x1b$)A\xd5\xc5^\x1b$)A\xd0\xa1\xb6\xab= ";
        let name = d.decode_person_name(bytes);
        assert_eq!(name, pn("Zhang^XiaoDong", "张^小东", ""));
        assert_eq!(name.to_dicom_string(), "Zhang^XiaoDong=张^小东");
        let d = dec("ISO 2022 IR 6\\ISO 2022 IR 58");
        assert_eq!(
            d.decode_text(b"1.\x1b$)A\xb5\xda\xd2\xbb\xd0\xd0\xce\xc4\xd7\xd6\xa1\xa3\r\n"),
            "1.第一行文字。\r\n"
        );
    }

    /// PS3.5 J.3 (chrX2): GB18030.
    #[test]
    fn chinese_gb18030() {
        let d = dec("GB18030");
        let name = d.decode_person_name(b"Wang^XiaoDong=\xcd\xf5^\xd0\xa1\xb6\xab=");
        assert_eq!(name, pn("Wang^XiaoDong", "王^小东", ""));
        // Four-byte GB18030 sequences: Ä is 81 30 87 32, 😀 is 94 39 FC 36.
        assert_eq!(
            d.decode_text(b"\x81\x30\x87\x32rger \x94\x39\xfc\x36"),
            "Ärger 😀"
        );
    }

    /// PS3.5 J.1 (chrX1): ISO_IR 192.
    #[test]
    fn utf8() {
        let d = dec("ISO_IR 192");
        let name = d.decode_person_name(b"Wang^XiaoDong=\xe7\x8e\x8b^\xe5\xb0\x8f\xe6\x9d\xb1=");
        assert_eq!(name.to_dicom_string(), "Wang^XiaoDong=王^小東");
        assert_eq!(d.decode_text(b"ok\xc4\xe9"), "ok\u{fffd}\u{fffd}");
    }

    /// GBK trail bytes 0x5C ('\') and 0x5E ('^'): 淺 = 9C 5C, 奮 = 8A 5E.
    #[test]
    fn gbk_trail_bytes_are_not_delimiters() {
        let d = dec("GBK");
        let name = d.decode_person_name(b"Qian^Fen=\x9c\x5c^\x8a\x5e=");
        assert_eq!(name, pn("Qian^Fen", "淺^奮", ""));
        assert_eq!(d.decode_text(b"\x9c\x5c\\\x8a\x5e"), "淺\\奮");
        // Same bytes under GB18030 (a superset of GBK).
        assert_eq!(
            dec("GB18030").decode_person_name(b"\x9c\x5c\\x").alphabetic,
            "淺"
        );
        // GB2312 as a stand-alone term is read with GBK.
        assert_eq!(dec("GB2312").decode_text(b"\xd5\xc5"), "张");
    }

    #[test]
    fn never_panics_on_garbage() {
        let sets = [
            "",
            "ISO_IR 100",
            "\\ISO 2022 IR 87",
            "ISO 2022 IR 13\\ISO 2022 IR 87\\ISO 2022 IR 159",
            "\\ISO 2022 IR 149",
            "\\ISO 2022 IR 58",
            "GB18030",
            "GBK",
            "ISO_IR 192",
            "ISO_IR 13",
        ];
        let samples: [&[u8]; 8] = [
            b"\x1b",
            b"\x1b$",
            b"\x1b$B\x21",
            b"\x1b$(D\x7f\x7f\x1b",
            b"\xff\xfe\xfd",
            b"\x1b$)C\xb1",
            b"abc\x1b%Gdef",
            b"\x1b$B\x30\x21\x0a\x30\x21",
        ];
        for s in sets {
            let d = dec(s);
            for bytes in samples {
                let _ = d.decode_text(bytes);
                let _ = d.decode_person_name(bytes);
            }
        }
        // An unknown but well-formed escape sequence is dropped; a lone ESC is U+FFFD.
        let d = dec("ISO 2022 IR 6\\ISO 2022 IR 87");
        assert_eq!(d.decode_text(b"abc\x1b%Gdef"), "abcdef");
        assert_eq!(d.decode_text(b"abc\x1b"), "abc\u{fffd}");
        // An odd kanji byte before a line break.
        assert_eq!(
            d.decode_text(b"\x1b$B\x30\x21\x30\nx"),
            "\u{4e9c}\u{fffd}\nx"
        );
    }

    /// Every value of a multi-valued PN, each in its groups: GBK trail bytes 0x5C are not
    /// delimiters, and ISO 2022 escapes are reset at each value.
    #[test]
    fn multi_valued_person_names() {
        let d = dec("GBK");
        assert_eq!(
            d.decode_person_names(b"Qian^Fen=\x9c\x5c^\x8a\x5e\\Li=\xc0\xee "),
            vec![pn("Qian^Fen", "淺^奮", ""), pn("Li", "李", "")]
        );
        let d = dec("\\ISO 2022 IR 58");
        assert_eq!(
            d.decode_person_names(b"Zhou=\x1b$)A\xd6\xdc\\Wang=\x1b$)A\xcd\xf5"),
            vec![pn("Zhou", "周", ""), pn("Wang", "王", "")]
        );
        assert_eq!(
            dec("").decode_person_names(b"A\\\\B"),
            vec![pn("A", "", ""), pn("", "", ""), pn("B", "", "")]
        );
        assert_eq!(dec("").decode_person_names(b""), vec![pn("", "", "")]);
    }
}
