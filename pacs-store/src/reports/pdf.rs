//! The PDF rendering of a signed report: what the township clinic receives (wrapped as
//! DICOM Encapsulated PDF by the caller) and downloads from the clinic portal.
//!
//! [`render_pdf`] is a pure function from [`PdfReport`] (plain text, already formatted) and
//! [`ReportFonts`] to the bytes of an A4 PDF: a header with the institution and title, the
//! patient and study block, a red "CRITICAL FINDING" banner when flagged, the sections,
//! the agreement with the township preliminary impression, the signature block (signer,
//! time, key id, fingerprint, how to verify), the signed addenda and the key images with
//! their captions. Continuation pages repeat the patient's identification at the top; every
//! page has "page N of M" at the bottom. The output is deterministic: the same report and
//! fonts give the same bytes (no clock is read; the document id derives from the study and
//! the signature).
//!
//! **Text.** Lines are broken by the measured advance of each glyph: Latin text at spaces,
//! CJK text between any two characters (except before closing and after opening
//! punctuation); a word wider than the line is cut where it must be. No shaping is done
//! (no kerning, ligatures or complex scripts): right for Latin and Chinese report text.
//!
//! **Fonts.** Each character is drawn with the first font of [`ReportFonts`] that has a
//! glyph for it: on Debian DejaVu Sans (Latin, Greek, Cyrillic, symbols) and then Droid Sans
//! Fallback (CJK, 4 MB), or Noto Sans CJK / WenQuanYi when that is what is installed.
//! DejaVu comes first for its fuller Latin and symbol coverage and its matching bold; the
//! CJK font supplies what it lacks, so a mixed line switches fonts run by run.
//! Headings use DejaVu Sans Bold where it has the glyph, otherwise the regular font with a
//! thin outline (a synthetic bold that keeps the text extractable). A character no font
//! has is drawn as the .notdef box: never an error; [`ReportFonts::covers`] lets the caller
//! log it. Fonts are embedded as subsets (only the glyphs used) by [krilla]: Type0 fonts
//! with Identity-H encoding (CIDFontType2 for TrueType outlines) and a ToUnicode CMap, so
//! that text extraction (pdftotext, copy and paste, search) gives back the exact text,
//! Chinese included, and a one-page report with a Chinese name stays a few tens of KB.
//! Key images are baseline JPEGs, embedded as they are (DCTDecode, no re-encoding).
//! krilla (from the typst project, over its pdf-writer and subsetter crates) is used
//! without its text shaper: the layout here picks glyphs and positions, krilla writes them.
//!
//! [krilla]: https://docs.rs/krilla

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use krilla::Document;
use krilla::color::rgb;
use krilla::geom::{PathBuilder, Point, Rect, Size, Transform};
use krilla::image::Image;
use krilla::metadata::Metadata;
use krilla::page::PageSettings;
use krilla::paint::{Fill, Stroke};
use krilla::surface::Surface;
use krilla::text::{Font, GlyphId, KrillaGlyph};
use skrifa::instance::{LocationRef, Size as FontSize};
use skrifa::{FontRef, MetadataProvider};

use crate::{Result, StoreError};

/// A signed addendum as printed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PdfAddendum {
    pub author: String,
    /// Already formatted, e.g. "2026-11-24 10:02 UTC".
    pub signed_at: String,
    pub text: String,
    /// Hex; see [`PdfReport::signature_fingerprint`].
    pub signature_fingerprint: String,
}

/// A key image: a baseline (or progressive) JPEG, printed at the width of the page with
/// its caption below.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyImage {
    pub jpeg: Vec<u8>,
    /// The displayed aspect ratio (for pixels that are not square, the corrected size);
    /// 0 × 0: the JPEG's own size.
    pub width: u32,
    pub height: u32,
    pub caption: String,
}

/// What the PDF of a signed report shows. All plain text, already formatted (dates, person
/// names: see [`format_person_name`]); it may contain Chinese and newlines (`\r\n` and tabs
/// are fine too).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PdfReport {
    /// E.g. "Radiology report".
    pub title: String,
    /// E.g. "Regional Imaging Centre".
    pub institution: String,
    pub patient_name: String,
    pub patient_id: String,
    pub birth_date: Option<String>,
    pub sex: Option<String>,
    /// The township clinic that sent the study.
    pub clinic: Option<String>,
    pub study_date: Option<String>,
    pub accession_number: Option<String>,
    pub modality: Option<String>,
    pub study_description: Option<String>,
    pub study_instance_uid: String,
    /// (heading, text), in order: clinical information, technique, findings, impression.
    /// A section with neither is left out; one with a heading only shows "—".
    pub sections: Vec<(String, String)>,
    /// E.g. "Agreement with the township preliminary impression: minor discrepancy — …".
    pub agreement: Option<String>,
    /// Draws a red "CRITICAL FINDING" banner above the sections.
    pub critical: bool,
    pub signer: String,
    /// Already formatted, e.g. "2026-11-23 08:15 UTC".
    pub signed_at: String,
    /// Hex. Up to 128 digits are printed on one line (the font shrinks to fit, down to 5.5
    /// pt); a longer one wraps.
    pub signature_fingerprint: String,
    pub signer_key_id: String,
    /// E.g. "Verify: GET /api/reports/17/verify or `pacs report verify 17`".
    pub verify_hint: String,
    pub addenda: Vec<PdfAddendum>,
    pub key_images: Vec<KeyImage>,
}

/// A DICOM person name (`Liu^Yan=刘^䶮`) as printed: the alphabetic group in DICOM order
/// (family name first, components separated by spaces), then the ideographic group in
/// parentheses with its components joined without spaces when they are CJK:
/// `Liu Yan (刘䶮)`. The phonetic group is shown only when it is the only one.
pub fn format_person_name(pn: &str) -> String {
    let group = |g: &str, cjk_join: bool| -> String {
        // Components: family, given, middle, prefix, suffix.
        let c: Vec<&str> = g.split('^').map(str::trim).collect();
        let at = |i: usize| c.get(i).copied().unwrap_or("");
        let order = [at(3), at(0), at(1), at(2), at(4)];
        let parts: Vec<&str> = order.into_iter().filter(|s| !s.is_empty()).collect();
        let all_cjk = parts.iter().all(|p| p.chars().all(is_cjk));
        parts.join(if cjk_join && all_cjk { "" } else { " " })
    };
    let groups: Vec<&str> = pn.split('=').collect();
    let alphabetic = group(groups.first().copied().unwrap_or(""), false);
    let ideographic = group(groups.get(1).copied().unwrap_or(""), true);
    let phonetic = group(groups.get(2).copied().unwrap_or(""), true);
    match (alphabetic.is_empty(), ideographic.is_empty()) {
        (false, false) => format!("{alphabetic} ({ideographic})"),
        (false, true) => alphabetic,
        (true, false) => ideographic,
        (true, true) => phonetic,
    }
}

// --- fonts ------------------------------------------------------------------------------

const DEJAVU: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const DEJAVU_BOLD: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf";
/// CJK fonts, in order of preference (Debian packages fonts-droid-fallback,
/// fonts-noto-cjk, fonts-wqy-microhei, fonts-wqy-zenhei).
const CJK: [&str; 5] = [
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJKsc-Regular.otf",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
];
const CJK_BOLD: [&str; 2] = [
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJKsc-Bold.otf",
];

struct LoadedFont {
    path: PathBuf,
    data: Arc<Vec<u8>>,
    font: Font,
    bold: bool,
}

/// Fonts for report PDFs, in order of preference per character (the first font that has a
/// glyph wins). Loaded once (the CJK font is 4 MB) and shared by every rendering.
pub struct ReportFonts {
    fonts: Vec<LoadedFont>,
}

impl fmt::Debug for ReportFonts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReportFonts")
            .field("paths", &self.paths())
            .finish()
    }
}

impl ReportFonts {
    /// Loads the given TrueType/OpenType files (the first face of a collection), in order
    /// of preference; an error names the file that cannot be read or parsed.
    pub fn load(paths: &[PathBuf]) -> Result<ReportFonts> {
        let mut fonts = ReportFonts { fonts: Vec::new() };
        for path in paths {
            fonts.fonts.push(load_font(path, false)?);
        }
        if fonts.fonts.is_empty() {
            return Err(StoreError::Config(
                "report fonts: no font file given".to_owned(),
            ));
        }
        Ok(fonts)
    }

    /// Adds bold fonts for headings, in order of preference. Bold text uses the first bold
    /// font with the glyph, otherwise a regular font with a synthetic bold outline.
    pub fn with_bold(mut self, paths: &[PathBuf]) -> Result<ReportFonts> {
        for path in paths {
            self.fonts.push(load_font(path, true)?);
        }
        Ok(self)
    }

    /// The usual Debian locations: DejaVu Sans (and DejaVu Sans Bold for headings), then
    /// the first CJK font found among Droid Sans Fallback, Noto Sans CJK and WenQuanYi.
    /// An error when none is found says which paths were tried and what to install.
    pub fn discover() -> Result<ReportFonts> {
        let existing = |paths: &[&str]| -> Vec<PathBuf> {
            paths
                .iter()
                .map(PathBuf::from)
                .filter(|p| p.is_file())
                .collect()
        };
        let cjk = existing(&CJK);
        let mut regular = existing(&[DEJAVU]);
        regular.extend(cjk.first().cloned());
        if regular.is_empty() {
            let tried: Vec<&str> = [DEJAVU].into_iter().chain(CJK).collect();
            return Err(StoreError::Config(format!(
                "no font for report PDFs: tried {}; install the Debian packages \
                 fonts-dejavu-core and fonts-droid-fallback, or set report_fonts to the \
                 TrueType/OpenType files to use",
                tried.join(", ")
            )));
        }
        if cjk.is_empty() {
            tracing::warn!(
                "no CJK font for report PDFs (tried {}): Chinese text will print as empty \
                 boxes; install the Debian package fonts-droid-fallback",
                CJK.join(", ")
            );
        }
        let mut bold = existing(&[DEJAVU_BOLD]);
        bold.extend(existing(&CJK_BOLD).into_iter().take(1));
        ReportFonts::load(&regular)?.with_bold(&bold)
    }

    /// The files in use, regular fonts first (for the log).
    pub fn paths(&self) -> Vec<&Path> {
        self.fonts.iter().map(|f| f.path.as_path()).collect()
    }

    /// Whether every character of `text` has a glyph in some (regular) font. Line breaks
    /// and tabs count as covered.
    pub fn covers(&self, text: &str) -> bool {
        self.missing(text).is_empty()
    }

    /// The characters of `text` that no (regular) font has, each once, in order: for a
    /// warning that names them.
    pub fn missing(&self, text: &str) -> Vec<char> {
        let charmaps: Vec<_> = self
            .fonts
            .iter()
            .filter(|f| !f.bold)
            .filter_map(|f| FontRef::from_index(&f.data, 0).ok())
            .map(|f| f.charmap())
            .collect();
        let mut missing = Vec::new();
        for c in text.chars() {
            if matches!(c, '\n' | '\r' | '\t') || missing.contains(&c) {
                continue;
            }
            if !charmaps.iter().any(|m| m.map(c).is_some()) {
                missing.push(c);
            }
        }
        missing
    }
}

fn load_font(path: &Path, bold: bool) -> Result<LoadedFont> {
    let data = std::fs::read(path).map_err(|e| StoreError::io("reading a report font", path, e))?;
    let data = Arc::new(data);
    let unreadable = |why: String| {
        StoreError::Config(format!(
            "report font {}: not a usable TrueType/OpenType font: {why}",
            path.display()
        ))
    };
    let face = FontRef::from_index(&data, 0).map_err(|e| unreadable(e.to_string()))?;
    if !face.charmap().has_map() {
        return Err(unreadable("no Unicode character map".to_owned()));
    }
    let font = Font::new(krilla::Data::from(data.clone()), 0)
        .ok_or_else(|| unreadable("rejected by the PDF writer".to_owned()))?;
    Ok(LoadedFont {
        path: path.to_owned(),
        data,
        font,
        bold,
    })
}

/// A character as drawn: which font, which glyph, its advance in em.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Glyph {
    font: usize,
    id: u32,
    advance: f32,
}

struct Face<'a> {
    charmap: skrifa::charmap::Charmap<'a>,
    metrics: skrifa::metrics::GlyphMetrics<'a>,
    units_per_em: f32,
}

/// Per-character font choice and advances, for one rendering.
struct Measurer<'a> {
    fonts: &'a ReportFonts,
    faces: Vec<Face<'a>>,
    regular: Vec<usize>,
    /// Bold fonts, then the regular ones.
    bold: Vec<usize>,
    cache: RefCell<HashMap<(char, bool), Glyph>>,
}

impl<'a> Measurer<'a> {
    fn new(fonts: &'a ReportFonts) -> Result<Measurer<'a>> {
        let mut faces = Vec::new();
        for f in &fonts.fonts {
            let font = FontRef::from_index(&f.data, 0).map_err(|e| {
                StoreError::Config(format!("report font {}: {e}", f.path.display()))
            })?;
            let units_per_em = f32::from(
                font.metrics(FontSize::unscaled(), LocationRef::default())
                    .units_per_em
                    .max(1),
            );
            faces.push(Face {
                charmap: font.charmap(),
                metrics: font.glyph_metrics(FontSize::unscaled(), LocationRef::default()),
                units_per_em,
            });
        }
        let regular: Vec<usize> = (0..fonts.fonts.len())
            .filter(|&i| !fonts.fonts[i].bold)
            .collect();
        let bold: Vec<usize> = (0..fonts.fonts.len())
            .filter(|&i| fonts.fonts[i].bold)
            .chain(regular.iter().copied())
            .collect();
        Ok(Measurer {
            fonts,
            faces,
            regular,
            bold,
            cache: RefCell::new(HashMap::new()),
        })
    }

    fn glyph(&self, c: char, bold: bool) -> Glyph {
        if let Some(g) = self.cache.borrow().get(&(c, bold)) {
            return *g;
        }
        let chain = if bold { &self.bold } else { &self.regular };
        let advance = |font: usize, id: u32| {
            let face = &self.faces[font];
            face.metrics
                .advance_width(skrifa::GlyphId::new(id))
                .unwrap_or(face.units_per_em / 2.0)
                / face.units_per_em
        };
        let found = chain.iter().find_map(|&font| {
            let id = self.faces[font].charmap.map(c)?.to_u32();
            Some(Glyph {
                font,
                id,
                advance: advance(font, id),
            })
        });
        // No font has it: the .notdef glyph of the first font.
        let g = found.unwrap_or_else(|| {
            let font = chain.first().copied().unwrap_or(0);
            Glyph {
                font,
                id: 0,
                advance: advance(font, 0),
            }
        });
        self.cache.borrow_mut().insert((c, bold), g);
        g
    }

    fn width(&self, text: &str, style: &Style) -> f32 {
        text.chars()
            .map(|c| self.glyph(c, style.bold).advance)
            .sum::<f32>()
            * style.size
    }

    /// `text` as lines of at most `width` points: paragraphs at newlines (an empty one is a
    /// blank line), each wrapped.
    fn lines(&self, text: &str, style: &Style, width: f32) -> Vec<String> {
        let text = normalize(text);
        let mut lines = Vec::new();
        for paragraph in text.split('\n') {
            let advance = |c: char| self.glyph(c, style.bold).advance * style.size;
            for range in wrap_paragraph(paragraph, width, advance) {
                lines.push(paragraph[range].to_owned());
            }
        }
        lines
    }

    /// The first line of `text`, cut with "…" to fit `width`.
    fn truncate(&self, text: &str, style: &Style, width: f32) -> String {
        let line = normalize(text).replace('\n', " ");
        if self.width(&line, style) <= width {
            return line;
        }
        let ellipsis = self.width("…", style);
        let mut out = String::new();
        let mut w = 0.0;
        for c in line.chars() {
            let a = self.glyph(c, style.bold).advance * style.size;
            if w + a + ellipsis > width {
                break;
            }
            w += a;
            out.push(c);
        }
        out.push('…');
        out
    }
}

/// Tabs as four spaces, `\r\n` and `\r` as `\n`.
fn normalize(text: &str) -> String {
    text.replace("\r\n", "\n")
        .replace('\r', "\n")
        .replace('\t', "    ")
}

// --- line breaking ----------------------------------------------------------------------

/// Whether `c` is CJK (ideographs, kana, hangul, CJK punctuation, fullwidth forms): a line
/// may break before or after it.
fn is_cjk(c: char) -> bool {
    matches!(u32::from(c),
        0x2E80..=0x303F       // radicals, Kangxi, ideographic description, CJK symbols
        | 0x3040..=0x9FFF     // kana, bopomofo, hangul jamo, CJK ext. A, unified ideographs
        | 0xA960..=0xA97F
        | 0xAC00..=0xD7AF     // hangul syllables
        | 0xF900..=0xFAFF     // compatibility ideographs
        | 0xFE30..=0xFE4F     // compatibility forms
        | 0xFF00..=0xFFEF     // fullwidth and halfwidth forms
        | 0x20000..=0x3FFFF)
}

/// Closing punctuation: no line starts with it.
fn no_break_before(c: char) -> bool {
    "，。、；：？！）」』】》〉〕〗〙〛”’…‥·・ー々〻ゝゞヽヾ,.;:!?)]}%".contains(c)
}

/// Opening punctuation: no line ends with it.
fn no_break_after(c: char) -> bool {
    "（「『【《〈〔〖〘〚“‘([{".contains(c)
}

/// The byte ranges of the lines that `paragraph` (no newline) breaks into so that each
/// fits `max` by the advances `advance` gives: at spaces (dropped at the break), between
/// CJK characters, and within a word only when the word alone is wider than the line. An
/// empty paragraph is one empty line.
fn wrap_paragraph(paragraph: &str, max: f32, advance: impl Fn(char) -> f32) -> Vec<Range<usize>> {
    let chars: Vec<(usize, char, f32)> = paragraph
        .char_indices()
        .map(|(i, c)| (i, c, advance(c)))
        .collect();
    let n = chars.len();
    let byte = |i: usize| chars.get(i).map_or(paragraph.len(), |c| c.0);
    let mut lines = Vec::new();
    let mut emit = |start: usize, mut end: usize| {
        while end > start && chars[end - 1].1 == ' ' {
            end -= 1;
        }
        lines.push(byte(start)..byte(end));
    };
    let mut start = 0;
    let mut width = 0.0;
    // The last place to break: (end of this line, start of the next), char indices.
    let mut candidate: Option<(usize, usize)> = None;
    let mut i = 0;
    while i < n {
        let (_, c, w) = chars[i];
        if c == ' ' {
            if i > start && chars[i - 1].1 != ' ' {
                candidate = Some((i, i + 1));
            }
            width += w;
            i += 1;
            continue;
        }
        if i > start {
            let prev = chars[i - 1].1;
            if prev != ' '
                && (is_cjk(prev) || is_cjk(c))
                && !no_break_before(c)
                && !no_break_after(prev)
            {
                candidate = Some((i, i));
            }
        }
        if width + w > max && i > start {
            let (end, mut next) = match candidate {
                Some((end, next)) if end > start => (end, next),
                _ => (i, i),
            };
            emit(start, end);
            while next < n && chars[next].1 == ' ' {
                next += 1;
            }
            start = next;
            width = chars[start..i].iter().map(|c| c.2).sum();
            candidate = None;
            continue;
        }
        width += w;
        i += 1;
    }
    emit(start, n);
    lines
}

// --- layout -----------------------------------------------------------------------------

const PAGE_W: f32 = 595.276;
const PAGE_H: f32 = 841.89;
const MARGIN_X: f32 = 56.0;
const CONTENT_W: f32 = PAGE_W - 2.0 * MARGIN_X;
const TOP: f32 = 48.0;
/// Where continuation pages start, below the running header.
const TOP_CONTINUED: f32 = TOP + 26.0;
/// No content below this line: the footer's place.
const BOTTOM: f32 = PAGE_H - 64.0;

type Rgb = (u8, u8, u8);
const BLACK: Rgb = (0x1a, 0x1a, 0x1a);
const GREY: Rgb = (0x5f, 0x6b, 0x7a);
const ACCENT: Rgb = (0x1f, 0x4e, 0x79);
const RULE: Rgb = (0xc8, 0xd0, 0xda);
const PANEL: Rgb = (0xf1, 0xf4, 0xf8);
const CRITICAL: Rgb = (0xc6, 0x28, 0x28);
const WHITE: Rgb = (0xff, 0xff, 0xff);

#[derive(Debug, Clone, Copy, PartialEq)]
struct Style {
    size: f32,
    bold: bool,
    color: Rgb,
    /// Baseline to baseline.
    leading: f32,
}

const fn style(size: f32, bold: bool, color: Rgb) -> Style {
    Style {
        size,
        bold,
        color,
        leading: size * 1.42,
    }
}

const BODY: Style = style(10.0, false, BLACK);
const HEADING: Style = style(11.5, true, ACCENT);
const LABEL: Style = style(8.0, false, GREY);
const VALUE: Style = style(10.0, false, BLACK);
const SMALL: Style = style(8.0, false, GREY);

/// What a page shows, in PDF points from the top left.
#[derive(Debug, Clone, PartialEq)]
enum Op {
    /// One line of text; `y` is the baseline.
    Text {
        x: f32,
        y: f32,
        style: Style,
        text: String,
    },
    Rect {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        fill: Option<Rgb>,
        stroke: Option<(Rgb, f32)>,
    },
    Image {
        index: usize,
        x: f32,
        y: f32,
        w: f32,
        h: f32,
    },
}

/// Content flowing down the pages.
struct Flow<'m, 'a> {
    m: &'m Measurer<'a>,
    pages: Vec<Vec<Op>>,
    ops: Vec<Op>,
    y: f32,
    /// Left and right of the continuation pages' header.
    running: (String, String),
}

impl<'m, 'a> Flow<'m, 'a> {
    fn new(m: &'m Measurer<'a>, running: (String, String)) -> Self {
        Flow {
            m,
            pages: Vec::new(),
            ops: Vec::new(),
            y: TOP,
            running,
        }
    }

    fn at_page_top(&self) -> bool {
        self.y
            <= if self.pages.is_empty() {
                TOP
            } else {
                TOP_CONTINUED
            }
    }

    fn new_page(&mut self) {
        self.pages.push(std::mem::take(&mut self.ops));
        let right = self.m.width(&self.running.1, &SMALL).min(CONTENT_W * 0.6);
        let right_text = self.m.truncate(&self.running.1, &SMALL, right);
        let left = self
            .m
            .truncate(&self.running.0, &SMALL, CONTENT_W - right - 12.0);
        let baseline = TOP + 8.0;
        self.text(MARGIN_X, baseline, SMALL, left);
        let rw = self.m.width(&right_text, &SMALL);
        self.text(MARGIN_X + CONTENT_W - rw, baseline, SMALL, right_text);
        self.rule(baseline + 6.0, 0.5, RULE);
        self.y = TOP_CONTINUED;
    }

    /// A new page unless `h` points fit below (or this page is still empty).
    fn ensure(&mut self, h: f32) {
        if self.y + h > BOTTOM && !self.at_page_top() {
            self.new_page();
        }
    }

    fn text(&mut self, x: f32, y: f32, style: Style, text: String) {
        if !text.is_empty() {
            self.ops.push(Op::Text { x, y, style, text });
        }
    }

    fn rect(&mut self, x: f32, y: f32, w: f32, h: f32, fill: Rgb) {
        self.ops.push(Op::Rect {
            x,
            y,
            w,
            h,
            fill: Some(fill),
            stroke: None,
        });
    }

    fn rule(&mut self, y: f32, width: f32, color: Rgb) {
        self.rect(MARGIN_X, y - width / 2.0, CONTENT_W, width, color);
    }

    /// Lines flowing at `x`, each on the page where it fits; `bar` draws a coloured bar
    /// left of each line (a quotation).
    fn lines(&mut self, lines: Vec<String>, style: Style, x: f32, bar: Option<Rgb>) {
        for line in lines {
            self.ensure(style.leading);
            let top = self.y;
            if let Some(color) = bar {
                self.rect(MARGIN_X, top, 2.5, style.leading, color);
            }
            self.text(x, top + style.size, style, line);
            self.y += style.leading;
        }
    }

    fn paragraph(&mut self, text: &str, style: Style, x: f32, width: f32) {
        let lines = self.m.lines(text, &style, width);
        self.lines(lines, style, x, None);
    }

    /// A section heading, kept with the first lines that follow it.
    fn heading(&mut self, text: &str, keep_with: f32) {
        let lines = self.m.lines(text, &HEADING, CONTENT_W);
        let h = lines.len() as f32 * HEADING.leading + 5.0;
        self.ensure(h + keep_with);
        self.lines(lines, HEADING, MARGIN_X, None);
        // Below the descenders of the heading's last line.
        self.rect(MARGIN_X, self.y - 0.8, CONTENT_W, 0.6, RULE);
        self.y += 5.0;
    }

    /// A hex fingerprint on one line, shrunk to fit (down to 5.5 pt), else wrapped.
    fn fingerprint(&mut self, fingerprint: &str, x: f32, width: f32) {
        let mut s = style(8.0, false, BLACK);
        while s.size > 5.5 && self.m.width(fingerprint, &s) > width {
            s = style(s.size - 0.5, false, BLACK);
        }
        self.paragraph(fingerprint, s, x, width);
    }

    fn finish(mut self, footer_left: &str) -> Vec<Vec<Op>> {
        self.pages.push(std::mem::take(&mut self.ops));
        let total = self.pages.len();
        let m = self.m;
        for (n, page) in self.pages.iter_mut().enumerate() {
            let number = format!("page {} of {}", n + 1, total);
            let nw = m.width(&number, &SMALL);
            let baseline = PAGE_H - 40.0;
            page.push(Op::Rect {
                x: MARGIN_X,
                y: baseline - 14.0,
                w: CONTENT_W,
                h: 0.5,
                fill: Some(RULE),
                stroke: None,
            });
            page.push(Op::Text {
                x: MARGIN_X,
                y: baseline,
                style: SMALL,
                text: m.truncate(footer_left, &SMALL, CONTENT_W - nw - 16.0),
            });
            page.push(Op::Text {
                x: MARGIN_X + CONTENT_W - nw,
                y: baseline,
                style: SMALL,
                text: number,
            });
        }
        self.pages
    }
}

/// The pages of `report`; `images` are the key images' displayed sizes (width, height).
fn layout(report: &PdfReport, m: &Measurer<'_>, images: &[(f32, f32)]) -> Vec<Vec<Op>> {
    let id_line = format!("{} · ID {}", report.patient_name, report.patient_id);
    let mut f = Flow::new(
        m,
        (
            format!("{} · {}", report.institution, report.title),
            format!("{id_line} (continued)"),
        ),
    );

    // Header.
    let institution = style(13.0, true, ACCENT);
    f.paragraph(&report.institution, institution, MARGIN_X, CONTENT_W);
    let title = style(19.0, true, BLACK);
    f.y += 2.0;
    f.paragraph(&report.title, title, MARGIN_X, CONTENT_W);
    f.y += 2.0;
    f.rule(f.y, 1.2, ACCENT);
    f.y += 12.0;

    patient_block(&mut f, report);

    if report.critical {
        f.y += 10.0;
        f.ensure(28.0);
        let top = f.y;
        f.rect(MARGIN_X, top, CONTENT_W, 26.0, CRITICAL);
        let banner = style(12.5, true, WHITE);
        f.text(
            MARGIN_X + 10.0,
            top + 17.5,
            banner,
            "CRITICAL FINDING".to_owned(),
        );
        f.y += 26.0;
    }

    for (heading, text) in &report.sections {
        if heading.trim().is_empty() && text.trim().is_empty() {
            continue;
        }
        f.y += 14.0;
        f.heading(heading, 2.0 * BODY.leading);
        let text = if text.trim().is_empty() { "—" } else { text };
        f.paragraph(text, BODY, MARGIN_X, CONTENT_W);
    }

    if let Some(agreement) = report.agreement.as_deref().filter(|a| !a.trim().is_empty()) {
        f.y += 12.0;
        let quote = style(9.5, false, GREY);
        let lines = m.lines(agreement, &quote, CONTENT_W - 12.0);
        f.lines(lines, quote, MARGIN_X + 10.0, Some(RULE));
    }

    signature_block(&mut f, report);

    if !report.addenda.is_empty() {
        f.y += 16.0;
        f.heading("Addenda", 3.0 * BODY.leading);
        for (n, addendum) in report.addenda.iter().enumerate() {
            if n > 0 {
                f.y += 8.0;
            }
            let head = style(10.0, true, BLACK);
            let title = format!(
                "Addendum {} — {}, {}",
                n + 1,
                addendum.author,
                addendum.signed_at
            );
            let lines = m.lines(&title, &head, CONTENT_W);
            f.ensure(lines.len() as f32 * head.leading + BODY.leading);
            f.lines(lines, head, MARGIN_X, None);
            f.paragraph(&addendum.text, BODY, MARGIN_X, CONTENT_W);
            f.y += 2.0;
            f.ensure(2.0 * SMALL.leading);
            f.paragraph("Signature fingerprint", SMALL, MARGIN_X, CONTENT_W);
            f.fingerprint(&addendum.signature_fingerprint, MARGIN_X, CONTENT_W);
        }
    }

    if !report.key_images.is_empty() {
        f.y += 16.0;
        f.heading("Key images", 120.0);
        let caption = style(9.0, false, GREY);
        for (index, (image, &(iw, ih))) in report.key_images.iter().zip(images).enumerate() {
            let lines = m.lines(&image.caption, &caption, CONTENT_W);
            let caption_h = lines.len() as f32 * caption.leading + 4.0;
            // The page width, or less when that would be taller than a page.
            let max_h = (BOTTOM - TOP_CONTINUED - caption_h - 8.0).max(120.0);
            let mut w = CONTENT_W;
            let mut h = w * ih / iw;
            if h > max_h {
                h = max_h;
                w = h * iw / ih;
            }
            f.y += 6.0;
            f.ensure(h + caption_h);
            let x = MARGIN_X + (CONTENT_W - w) / 2.0;
            f.ops.push(Op::Image {
                index,
                x,
                y: f.y,
                w,
                h,
            });
            f.ops.push(Op::Rect {
                x,
                y: f.y,
                w,
                h,
                fill: None,
                stroke: Some((RULE, 0.5)),
            });
            f.y += h + 4.0;
            f.lines(lines, caption, MARGIN_X, None);
        }
    }

    f.finish(&format!(
        "{id_line} · signed by {}, {}",
        report.signer, report.signed_at
    ))
}

/// A label and its value's lines.
type Cell<'l> = Option<(&'l str, Vec<String>)>;

/// Patient and study, two columns of label and value on a light panel; rows may go to
/// the next page (only a pathological one would).
fn patient_block(f: &mut Flow<'_, '_>, r: &PdfReport) {
    let some = |label: &'static str, v: &Option<String>| {
        v.as_deref()
            .filter(|v| !v.trim().is_empty())
            .map(|v| (label, v.to_owned()))
    };
    let left: Vec<(&str, String)> = [
        Some(("Patient", r.patient_name.clone())),
        Some(("Patient ID", r.patient_id.clone())),
        some("Birth date", &r.birth_date),
        some("Sex", &r.sex),
    ]
    .into_iter()
    .flatten()
    .collect();
    let right: Vec<(&str, String)> = [
        some("Study date", &r.study_date),
        some("Accession", &r.accession_number),
        some("Modality", &r.modality),
        some("Study", &r.study_description),
        some("Clinic", &r.clinic),
    ]
    .into_iter()
    .flatten()
    .collect();

    const PAD: f32 = 8.0;
    const LABEL_W: f32 = 64.0;
    let col_w = (CONTENT_W - 2.0 * PAD - 14.0) / 2.0;
    let value_w = col_w - LABEL_W;
    let rows = left.len().max(right.len());
    let mut cells: Vec<[Cell<'_>; 2]> = Vec::new();
    for i in 0..rows {
        let cell = |c: Option<&(&'static str, String)>| {
            c.map(|(label, value)| (*label, f.m.lines(value, &VALUE, value_w)))
        };
        cells.push([cell(left.get(i)), cell(right.get(i))]);
    }
    let uid = style(8.5, false, BLACK);
    let uid_lines =
        f.m.lines(&r.study_instance_uid, &uid, CONTENT_W - 2.0 * PAD - LABEL_W);

    let row_h = |n: usize, s: &Style| n.max(1) as f32 * s.leading;
    for (i, row) in cells.into_iter().enumerate() {
        let n = row
            .iter()
            .flatten()
            .map(|(_, lines)| lines.len())
            .max()
            .unwrap_or(1);
        let pad_top = if i == 0 { PAD } else { 0.0 };
        let h = pad_top + row_h(n, &VALUE) + 1.0;
        f.ensure(h);
        let top = f.y;
        f.rect(MARGIN_X, top, CONTENT_W, h, PANEL);
        for (column, cell) in row.into_iter().enumerate() {
            let Some((label, lines)) = cell else { continue };
            let x = MARGIN_X + PAD + column as f32 * (col_w + 14.0);
            let baseline = top + pad_top + VALUE.size;
            f.text(x, baseline, LABEL, label.to_owned());
            for (k, line) in lines.into_iter().enumerate() {
                f.text(
                    x + LABEL_W,
                    baseline + k as f32 * VALUE.leading,
                    VALUE,
                    line,
                );
            }
        }
        f.y += h;
    }
    let h = row_h(uid_lines.len(), &uid) + PAD + 2.0;
    f.ensure(h);
    let top = f.y;
    f.rect(MARGIN_X, top, CONTENT_W, h, PANEL);
    let baseline = top + 2.0 + uid.size;
    f.text(MARGIN_X + PAD, baseline, LABEL, "Study UID".to_owned());
    for (k, line) in uid_lines.into_iter().enumerate() {
        f.text(
            MARGIN_X + PAD + LABEL_W,
            baseline + k as f32 * uid.leading,
            uid,
            line,
        );
    }
    f.y += h;
}

/// Who signed, when, with which key, the fingerprint and how to verify: kept together on
/// a panel unless it is longer than a page.
fn signature_block(f: &mut Flow<'_, '_>, r: &PdfReport) {
    const PAD: f32 = 9.0;
    let inner = CONTENT_W - 2.0 * PAD;
    let signed_by = style(10.5, true, BLACK);
    let meta = style(9.0, false, BLACK);
    let hint = style(8.5, false, GREY);
    let by = f.m.lines(
        &format!("Electronically signed by {}", r.signer),
        &signed_by,
        inner,
    );
    let when = f.m.lines(
        &format!("Signed {} · key id {}", r.signed_at, r.signer_key_id),
        &meta,
        inner,
    );
    let hints = if r.verify_hint.trim().is_empty() {
        Vec::new()
    } else {
        f.m.lines(&r.verify_hint, &hint, inner)
    };
    // The fingerprint's height, measured the way `Flow::fingerprint` will lay it out.
    let fp_h = {
        let mut s = style(8.0, false, BLACK);
        while s.size > 5.5 && f.m.width(&r.signature_fingerprint, &s) > inner {
            s = style(s.size - 0.5, false, BLACK);
        }
        f.m.lines(&r.signature_fingerprint, &s, inner).len() as f32 * s.leading
    };
    let h = PAD
        + by.len() as f32 * signed_by.leading
        + when.len() as f32 * meta.leading
        + 4.0
        + SMALL.leading
        + fp_h
        + if hints.is_empty() {
            0.0
        } else {
            4.0 + hints.len() as f32 * hint.leading
        }
        + PAD;
    f.y += 18.0;
    let boxed = h <= BOTTOM - TOP_CONTINUED;
    if boxed {
        f.ensure(h);
        f.ops.push(Op::Rect {
            x: MARGIN_X,
            y: f.y,
            w: CONTENT_W,
            h,
            fill: Some(PANEL),
            stroke: Some((RULE, 0.6)),
        });
        f.rect(MARGIN_X, f.y, 3.0, h, ACCENT);
    }
    f.y += PAD - 2.0;
    let x = MARGIN_X + PAD;
    f.lines(by, signed_by, x, None);
    f.lines(when, meta, x, None);
    f.y += 4.0;
    f.paragraph("Signature fingerprint", SMALL, x, inner);
    f.fingerprint(&r.signature_fingerprint, x, inner);
    if !hints.is_empty() {
        f.y += 4.0;
        f.lines(hints, hint, x, None);
    }
    if boxed {
        f.y += 4.0;
    }
}

// --- rendering --------------------------------------------------------------------------

/// The PDF of `report`: A4, fonts embedded as subsets, key images as JPEG. Fails only on
/// a key image that is not a readable JPEG (or fonts that cannot be embedded); characters
/// no font has are drawn as .notdef boxes.
pub fn render_pdf(report: &PdfReport, fonts: &ReportFonts) -> Result<Vec<u8>> {
    let m = Measurer::new(fonts)?;
    let mut images = Vec::new();
    let mut sizes = Vec::new();
    for (n, key) in report.key_images.iter().enumerate() {
        let image = Image::from_jpeg(krilla::Data::from(key.jpeg.clone()), true).map_err(|e| {
            StoreError::Invalid(format!("key image {} is not a readable JPEG: {e}", n + 1))
        })?;
        let (w, h) = if key.width > 0 && key.height > 0 {
            (key.width, key.height)
        } else {
            image.size()
        };
        if w == 0 || h == 0 {
            return Err(StoreError::Invalid(format!(
                "key image {} has no size ({w} × {h})",
                n + 1
            )));
        }
        sizes.push((w as f32, h as f32));
        images.push(image);
    }

    let pages = layout(report, &m, &sizes);

    let mut document = Document::new();
    let page_size = Size::from_wh(PAGE_W, PAGE_H)
        .ok_or_else(|| StoreError::Invalid("report PDF: bad page size".to_owned()))?;
    for ops in &pages {
        let mut page = document.start_page_with(PageSettings::new(page_size));
        let mut surface = page.surface();
        for op in ops {
            draw(&mut surface, &m, &images, op);
        }
        surface.finish();
        page.finish();
    }
    document.set_metadata(
        Metadata::new()
            .title(report.title.clone())
            .authors(vec![report.signer.clone()])
            .creator("pacs".to_owned())
            // The file identifier: the same report signed the same way, the same id.
            .document_id(format!(
                "{}/{}/{}",
                report.study_instance_uid, report.signed_at, report.signature_fingerprint
            )),
    );
    document
        .finish()
        .map_err(|e| StoreError::Invalid(format!("report PDF could not be written: {e:?}")))
}

fn fill(color: Rgb) -> Fill {
    Fill {
        paint: rgb::Color::new(color.0, color.1, color.2).into(),
        ..Fill::default()
    }
}

fn draw(surface: &mut Surface<'_>, m: &Measurer<'_>, images: &[Image], op: &Op) {
    match op {
        Op::Rect {
            x,
            y,
            w,
            h,
            fill: paint,
            stroke,
        } => {
            let Some(rect) = Rect::from_xywh(*x, *y, *w, *h) else {
                return;
            };
            let mut path = PathBuilder::new();
            path.push_rect(rect);
            let Some(path) = path.finish() else { return };
            surface.set_fill(paint.map(fill));
            surface.set_stroke(stroke.map(|(color, width)| Stroke {
                paint: rgb::Color::new(color.0, color.1, color.2).into(),
                width,
                ..Stroke::default()
            }));
            surface.draw_path(&path);
            surface.set_stroke(None);
        }
        Op::Image { index, x, y, w, h } => {
            let (Some(image), Some(size)) = (images.get(*index), Size::from_wh(*w, *h)) else {
                return;
            };
            surface.push_transform(&Transform::from_translate(*x, *y));
            surface.draw_image(image.clone(), size);
            surface.pop();
        }
        Op::Text { x, y, style, text } => draw_text(surface, m, *x, *y, style, text),
    }
}

/// One line: runs of consecutive characters in the same font, each drawn with its glyphs
/// and its text (for the ToUnicode map).
fn draw_text(surface: &mut Surface<'_>, m: &Measurer<'_>, x: f32, y: f32, s: &Style, text: &str) {
    let mut x = x;
    let mut runs: Vec<(usize, usize, Vec<KrillaGlyph>)> = Vec::new();
    for (at, c) in text.char_indices() {
        let g = m.glyph(c, s.bold);
        match runs.last_mut() {
            Some((font, start, glyphs)) if *font == g.font => {
                let range = at - *start..at - *start + c.len_utf8();
                glyphs.push(KrillaGlyph::new(
                    GlyphId::new(g.id),
                    g.advance,
                    0.0,
                    0.0,
                    0.0,
                    range,
                    None,
                ));
            }
            _ => runs.push((
                g.font,
                at,
                vec![KrillaGlyph::new(
                    GlyphId::new(g.id),
                    g.advance,
                    0.0,
                    0.0,
                    0.0,
                    0..c.len_utf8(),
                    None,
                )],
            )),
        }
    }
    let ends: Vec<usize> = runs
        .iter()
        .skip(1)
        .map(|r| r.1)
        .chain([text.len()])
        .collect();
    for ((font, start, glyphs), end) in runs.into_iter().zip(ends) {
        let Some(loaded) = m.fonts.fonts.get(font) else {
            continue;
        };
        surface.set_fill(Some(fill(s.color)));
        // Bold text in a regular font: a thin outline of the text's colour.
        surface.set_stroke((s.bold && !loaded.bold).then(|| Stroke {
            paint: rgb::Color::new(s.color.0, s.color.1, s.color.2).into(),
            width: s.size * 0.04,
            ..Stroke::default()
        }));
        surface.draw_glyphs(
            Point::from_xy(x, y),
            &glyphs,
            loaded.font.clone(),
            &text[start..end],
            s.size,
            false,
        );
        x += glyphs.iter().map(|g| g.x_advance).sum::<f32>() * s.size;
    }
    surface.set_stroke(None);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrap(text: &str, max: f32) -> Vec<&str> {
        wrap_paragraph(text, max, |_| 1.0)
            .into_iter()
            .map(|r| &text[r])
            .collect()
    }

    #[test]
    fn wraps_latin_at_spaces() {
        assert_eq!(wrap("aaa bbb ccc", 7.0), ["aaa bbb", "ccc"]);
        assert_eq!(wrap("aaa bbb ccc", 11.0), ["aaa bbb ccc"]);
        assert_eq!(wrap("aaa bbb ccc", 5.0), ["aaa", "bbb", "ccc"]);
        // Spaces at a break are dropped, however many.
        assert_eq!(wrap("aaa    bbb", 5.0), ["aaa", "bbb"]);
        // Trailing spaces never cause a break.
        assert_eq!(wrap("aaa   ", 3.0), ["aaa"]);
        // Leading spaces (an indent) stay.
        assert_eq!(wrap("  aa bb", 5.0), ["  aa", "bb"]);
    }

    #[test]
    fn cuts_a_word_wider_than_the_line() {
        assert_eq!(wrap("abcdefgh", 3.0), ["abc", "def", "gh"]);
        assert_eq!(wrap("ab cdefgh", 3.0), ["ab", "cde", "fgh"]);
    }

    #[test]
    fn empty_paragraph_is_one_empty_line() {
        assert_eq!(wrap("", 10.0), [""]);
        // A line narrower than one character still makes progress.
        assert_eq!(wrap("ab", 0.5), ["a", "b"]);
    }

    #[test]
    fn wraps_cjk_between_any_characters() {
        assert_eq!(wrap("肝脏大小形态正常", 3.0), ["肝脏大", "小形态", "正常"]);
        // Mixed: Latin words stay whole, CJK breaks anywhere.
        assert_eq!(wrap("CT平扫未见异常", 4.0), ["CT平扫", "未见异常"]);
        assert_eq!(wrap("见 CT 报告", 4.0), ["见 CT", "报告"]);
    }

    #[test]
    fn keeps_closing_punctuation_on_the_line() {
        // Never a line that starts with "，" or "。": the character before goes along.
        assert_eq!(
            wrap("肝脏正常，脾脏正常。", 4.0),
            ["肝脏正", "常，脾脏", "正常。"]
        );
        assert_eq!(wrap("（见图）", 2.0), ["（见", "图）"]);
    }

    #[test]
    fn wraps_by_measured_advance() {
        // Wide "W" and narrow "i": the same count of characters, different breaks.
        let advance = |c: char| if c == 'W' { 3.0 } else { 1.0 };
        let lines: Vec<&str> = wrap_paragraph("WW ii ii", 8.0, advance)
            .into_iter()
            .map(|r| &"WW ii ii"[r])
            .collect();
        assert_eq!(lines, ["WW", "ii ii"]);
    }

    #[test]
    fn normalizes_line_ends_and_tabs() {
        assert_eq!(normalize("a\r\nb\rc\td"), "a\nb\nc    d");
    }

    #[test]
    fn formats_person_names() {
        assert_eq!(format_person_name("Liu^Yan=刘^䶮"), "Liu Yan (刘䶮)");
        assert_eq!(format_person_name("Liu^Yan"), "Liu Yan");
        assert_eq!(format_person_name("=王^小明"), "王小明");
        assert_eq!(
            format_person_name("Smith^John^Paul^Dr^Jr"),
            "Dr Smith John Paul Jr"
        );
        assert_eq!(format_person_name("==りゅう^えん"), "りゅうえん");
        assert_eq!(format_person_name(""), "");
    }

    fn fonts() -> ReportFonts {
        ReportFonts::discover().expect(
            "report fonts (install the Debian packages fonts-dejavu-core and fonts-droid-fallback)",
        )
    }

    #[test]
    fn covers_latin_and_chinese_but_not_everything() {
        let fonts = fonts();
        assert!(fonts.covers("Liu Yan 刘䶮, CT 胸部平扫\r\n\t— 2026-11-23 µ ±"));
        // U+0378 is unassigned: no font has it.
        assert!(!fonts.covers("ok \u{378}"));
        assert_eq!(fonts.missing("a\u{378}b\u{378}"), ['\u{378}']);
        assert!(format!("{fonts:?}").contains("DejaVuSans.ttf"));
    }

    #[test]
    fn load_names_the_file_it_cannot_use() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.ttf");
        let err = ReportFonts::load(std::slice::from_ref(&missing)).unwrap_err();
        assert!(err.to_string().contains("missing.ttf"), "{err}");
        let junk = dir.path().join("junk.ttf");
        std::fs::write(&junk, b"not a font").unwrap();
        let err = ReportFonts::load(&[junk]).unwrap_err();
        assert!(err.to_string().contains("junk.ttf"), "{err}");
    }

    fn report(findings: String) -> PdfReport {
        PdfReport {
            title: "Radiology report".into(),
            institution: "Regional Imaging Centre".into(),
            patient_name: "Test Patient (测试)".into(),
            patient_id: "T-1".into(),
            study_instance_uid: "1.2.3".into(),
            sections: vec![
                ("Findings".into(), findings),
                ("Impression".into(), "Normal.".into()),
            ],
            signer: "Dr Test".into(),
            signed_at: "2026-11-23 08:15 UTC".into(),
            signature_fingerprint: "ab".repeat(32),
            signer_key_id: "0123456789abcdef".into(),
            ..PdfReport::default()
        }
    }

    fn texts(page: &[Op]) -> Vec<&str> {
        page.iter()
            .filter_map(|op| match op {
                Op::Text { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn breaks_pages_and_numbers_them() {
        let fonts = fonts();
        let m = Measurer::new(&fonts).unwrap();
        let short = layout(&report("No abnormality.".into()), &m, &[]);
        assert_eq!(short.len(), 1);
        assert!(texts(&short[0]).contains(&"page 1 of 1"));

        let long = "The lungs are clear. 双肺纹理清晰，未见实变。 ".repeat(500);
        let pages = layout(&report(long), &m, &[]);
        assert!(pages.len() > 2, "{} pages", pages.len());
        let total = pages.len();
        for (n, page) in pages.iter().enumerate() {
            assert!(texts(page).contains(&format!("page {} of {total}", n + 1).as_str()));
            // Every line within the page and the margins.
            for op in page {
                if let Op::Text { x, y, style, text } = op {
                    assert!(*y > TOP && *y < PAGE_H - 30.0, "{y} {text}");
                    let right = x + m.width(text, style);
                    assert!(right <= MARGIN_X + CONTENT_W + 0.01, "{right} {text}");
                }
            }
            if n > 0 {
                assert!(
                    texts(page)
                        .iter()
                        .any(|t| t.contains("T-1") && t.contains("continued"))
                );
            }
        }
        // The heading that follows the long section starts with text after it, on one page.
        let last = texts(&pages[total - 1]);
        let at = last.iter().position(|t| *t == "Impression");
        if let Some(at) = at {
            assert_eq!(last.get(at + 1), Some(&"Normal."));
        } else {
            let before = texts(&pages[total - 2]);
            let at = before.iter().position(|t| *t == "Impression").unwrap();
            assert_eq!(before.get(at + 1), Some(&"Normal."));
        }
    }

    #[test]
    fn a_long_fingerprint_stays_on_one_line() {
        let fonts = fonts();
        let m = Measurer::new(&fonts).unwrap();
        // A whole Ed25519 signature in hex: 128 digits, shrunk to fit.
        let mut r = report("x".into());
        r.signature_fingerprint = "9f".repeat(64);
        let pages = layout(&r, &m, &[]);
        assert!(texts(&pages[0]).contains(&r.signature_fingerprint.as_str()));
        // Longer than that: wrapped, nothing lost.
        r.signature_fingerprint = "9f".repeat(100);
        let pages = layout(&r, &m, &[]);
        let joined: String = texts(&pages[0])
            .into_iter()
            .filter(|t| t.starts_with("9f"))
            .collect();
        assert_eq!(joined, r.signature_fingerprint);
    }

    #[test]
    fn uncovered_characters_render() {
        let fonts = fonts();
        let mut r = report("Odd: \u{378}\u{10FFFD} and an emoji 🦀.".into());
        r.patient_name = "\u{378}".into();
        let pdf = render_pdf(&r, &fonts).unwrap();
        assert!(pdf.starts_with(b"%PDF-"));
    }

    #[test]
    fn output_is_deterministic() {
        let fonts = fonts();
        let r = report("刘䶮 — no abnormality.".into());
        assert_eq!(
            render_pdf(&r, &fonts).unwrap(),
            render_pdf(&r, &fonts).unwrap()
        );
    }

    #[test]
    fn rejects_a_key_image_that_is_not_a_jpeg() {
        let fonts = fonts();
        let mut r = report("x".into());
        r.key_images.push(KeyImage {
            jpeg: b"not a jpeg".to_vec(),
            width: 10,
            height: 10,
            caption: "x".into(),
        });
        let err = render_pdf(&r, &fonts).unwrap_err();
        assert!(err.to_string().contains("key image 1"), "{err}");
    }

    #[test]
    fn fonts_are_shareable() {
        fn shareable<T: Send + Sync>() {}
        shareable::<ReportFonts>();
    }
}
