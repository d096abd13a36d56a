//! Study, series and instance queries — the matching of PS3.4 C.2.2.2 over the index, for
//! QIDO-RS (PS3.18 10.6) and C-FIND alike. Adapters parse their protocol's keys into a
//! [`Query`] ([`Key::from_keyword`], [`Key::from_tag`], [`Match::parse`]) and render the
//! [`Row`]s this answers; the SQL is built here only.
//!
//! Matching, per key:
//! - **single value**: exact; person names (PN) case-insensitively, against the whole name
//!   and each of its alphabetic, ideographic and phonetic groups (a query of
//!   `Wang^XiaoDong=王^小东` matches each group with its own);
//! - **wildcard**: `*` (any run) and `?` (one character), same columns;
//! - **UID list**: any of the UIDs (QIDO separates them with `,`, DIMSE with `\`);
//! - **range**: dates `20240101-20240131`, `-20240131`, `20240101-`; times likewise
//!   (inclusive; a bound given to the minute covers that whole minute);
//! - **universal** (empty value): no condition.
//!
//! With `fuzzy` (QIDO `fuzzymatching=true`), a single-value person name also matches any
//! name with a component (family, given…) or word that starts with it, case-insensitively.
//!
//! PatientName is matched through the lower-cased search keys of `patient_name_keys`
//! (`crate::index::name_keys`): an exact value or a wildcard's literal prefix is an index
//! range. When it matches few patients the statement starts from them; otherwise it walks
//! the studies newest first and stops at the limit ([`NameProbe`]). An exact name, which
//! nearly always matches few patients, is searched from them in one statement that also
//! holds the probe, and walked only when that probe finds too many ([`Plan`]).
//!
//! Every query carries the caller's [`Scope`]: its condition is part of the statement, so
//! nothing outside the scope is ever read. Values are always bound parameters; the
//! statement text is assembled only from literals in this file.

use std::fmt;

use sqlx::Row as _;
use sqlx::any::AnyRow;

use crate::access::Scope;
use crate::index::{Index, split_values};
use crate::{Result, StoreError};

/// The level of the entities a query returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Study,
    Series,
    Instance,
}

/// A matching key the index can answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    PatientName,
    PatientId,
    IssuerOfPatientId,
    PatientBirthDate,
    PatientSex,
    StudyInstanceUid,
    StudyDate,
    StudyTime,
    AccessionNumber,
    ModalitiesInStudy,
    ReferringPhysicianName,
    StudyId,
    StudyDescription,
    SeriesInstanceUid,
    Modality,
    SeriesNumber,
    SeriesDescription,
    BodyPartExamined,
    SopInstanceUid,
    SopClassUid,
    InstanceNumber,
}

/// How a key's values are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vr {
    /// Person name: case-insensitive, groups.
    Pn,
    /// Date (DA), range matching.
    Da,
    /// Time (TM), range matching.
    Tm,
    /// UID list.
    Ui,
    /// Text (LO, SH, CS): exact or wildcard.
    Text,
    /// Integer string.
    Is,
}

impl Key {
    pub const ALL: [Key; 21] = [
        Key::PatientName,
        Key::PatientId,
        Key::IssuerOfPatientId,
        Key::PatientBirthDate,
        Key::PatientSex,
        Key::StudyInstanceUid,
        Key::StudyDate,
        Key::StudyTime,
        Key::AccessionNumber,
        Key::ModalitiesInStudy,
        Key::ReferringPhysicianName,
        Key::StudyId,
        Key::StudyDescription,
        Key::SeriesInstanceUid,
        Key::Modality,
        Key::SeriesNumber,
        Key::SeriesDescription,
        Key::BodyPartExamined,
        Key::SopInstanceUid,
        Key::SopClassUid,
        Key::InstanceNumber,
    ];

    /// (group, element).
    pub const fn tag(self) -> (u16, u16) {
        match self {
            Key::PatientName => (0x0010, 0x0010),
            Key::PatientId => (0x0010, 0x0020),
            Key::IssuerOfPatientId => (0x0010, 0x0021),
            Key::PatientBirthDate => (0x0010, 0x0030),
            Key::PatientSex => (0x0010, 0x0040),
            Key::StudyInstanceUid => (0x0020, 0x000D),
            Key::StudyDate => (0x0008, 0x0020),
            Key::StudyTime => (0x0008, 0x0030),
            Key::AccessionNumber => (0x0008, 0x0050),
            Key::ModalitiesInStudy => (0x0008, 0x0061),
            Key::ReferringPhysicianName => (0x0008, 0x0090),
            Key::StudyId => (0x0020, 0x0010),
            Key::StudyDescription => (0x0008, 0x1030),
            Key::SeriesInstanceUid => (0x0020, 0x000E),
            Key::Modality => (0x0008, 0x0060),
            Key::SeriesNumber => (0x0020, 0x0011),
            Key::SeriesDescription => (0x0008, 0x103E),
            Key::BodyPartExamined => (0x0018, 0x0015),
            Key::SopInstanceUid => (0x0008, 0x0018),
            Key::SopClassUid => (0x0008, 0x0016),
            Key::InstanceNumber => (0x0020, 0x0013),
        }
    }

    pub const fn keyword(self) -> &'static str {
        match self {
            Key::PatientName => "PatientName",
            Key::PatientId => "PatientID",
            Key::IssuerOfPatientId => "IssuerOfPatientID",
            Key::PatientBirthDate => "PatientBirthDate",
            Key::PatientSex => "PatientSex",
            Key::StudyInstanceUid => "StudyInstanceUID",
            Key::StudyDate => "StudyDate",
            Key::StudyTime => "StudyTime",
            Key::AccessionNumber => "AccessionNumber",
            Key::ModalitiesInStudy => "ModalitiesInStudy",
            Key::ReferringPhysicianName => "ReferringPhysicianName",
            Key::StudyId => "StudyID",
            Key::StudyDescription => "StudyDescription",
            Key::SeriesInstanceUid => "SeriesInstanceUID",
            Key::Modality => "Modality",
            Key::SeriesNumber => "SeriesNumber",
            Key::SeriesDescription => "SeriesDescription",
            Key::BodyPartExamined => "BodyPartExamined",
            Key::SopInstanceUid => "SOPInstanceUID",
            Key::SopClassUid => "SOPClassUID",
            Key::InstanceNumber => "InstanceNumber",
        }
    }

    pub const fn vr(self) -> Vr {
        match self {
            Key::PatientName | Key::ReferringPhysicianName => Vr::Pn,
            Key::PatientBirthDate | Key::StudyDate => Vr::Da,
            Key::StudyTime => Vr::Tm,
            Key::StudyInstanceUid
            | Key::SeriesInstanceUid
            | Key::SopInstanceUid
            | Key::SopClassUid => Vr::Ui,
            Key::SeriesNumber | Key::InstanceNumber => Vr::Is,
            _ => Vr::Text,
        }
    }

    /// The level whose entity holds the key.
    pub const fn level(self) -> Level {
        match self {
            Key::SeriesInstanceUid
            | Key::Modality
            | Key::SeriesNumber
            | Key::SeriesDescription
            | Key::BodyPartExamined => Level::Series,
            Key::SopInstanceUid | Key::SopClassUid | Key::InstanceNumber => Level::Instance,
            _ => Level::Study,
        }
    }

    /// By DICOM keyword (`PatientName`) or tag (`00100010`, `0010,0010`).
    pub fn from_keyword(s: &str) -> Option<Key> {
        if let Some(k) = Key::ALL.into_iter().find(|k| k.keyword() == s) {
            return Some(k);
        }
        let hex: String = s.chars().filter(|c| *c != ',').collect();
        if hex.len() == 8 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let g = u16::from_str_radix(&hex[..4], 16).ok()?;
            let e = u16::from_str_radix(&hex[4..], 16).ok()?;
            return Key::from_tag(g, e);
        }
        None
    }

    pub fn from_tag(group: u16, element: u16) -> Option<Key> {
        Key::ALL.into_iter().find(|k| k.tag() == (group, element))
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keyword())
    }
}

/// A key's matching value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    Single(String),
    Wildcard(String),
    List(Vec<String>),
    /// Inclusive bounds, already normalised for comparison with stored values.
    Range(Option<String>, Option<String>),
}

/// The longest matching value accepted (the longest VR of the keys, LO, is 64 characters;
/// PN with three groups is longer).
pub const MAX_VALUE_CHARS: usize = 324;
/// UIDs in one list.
pub const MAX_LIST: usize = 500;

impl Match {
    /// Parses `value` for `key`; `list_sep` is `,` for QIDO and `\` for DIMSE. `None` for
    /// universal matching (empty value, or `*` alone).
    pub fn parse(key: Key, value: &str, list_sep: char) -> Result<Option<Match>> {
        let value = value.trim();
        if value.is_empty() || value == "*" {
            return Ok(None);
        }
        if value.chars().count() > MAX_VALUE_CHARS {
            return Err(invalid(key, "value too long"));
        }
        if value.chars().any(|c| c.is_control()) {
            return Err(invalid(key, "control characters are not allowed"));
        }
        let m = match key.vr() {
            Vr::Ui => {
                let uids: Vec<String> = value
                    .split(list_sep)
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .map(str::to_owned)
                    .collect();
                if uids.len() > MAX_LIST {
                    return Err(invalid(key, "more than 500 UIDs"));
                }
                if let Some(bad) = uids.iter().find(|u| !is_uid(u)) {
                    return Err(invalid(
                        key,
                        &format!("{:?} is not a UID", truncate(bad, 70)),
                    ));
                }
                match uids.len() {
                    0 => return Ok(None),
                    1 => Match::Single(uids.into_iter().next().unwrap_or_default()),
                    _ => Match::List(uids),
                }
            }
            Vr::Da => {
                let (lo, hi) = parse_range(key, value, is_date)?;
                Match::Range(lo, hi.map(|h| h + "~"))
            }
            Vr::Tm => {
                let (lo, hi) = parse_range(key, value, is_time)?;
                // A bound to the minute covers the minute: "0900" runs to "0900" + anything.
                Match::Range(
                    lo.map(|l| normalise_time(&l)),
                    hi.map(|h| normalise_time(&h) + "~"),
                )
            }
            Vr::Is => {
                let n: i64 = value
                    .parse()
                    .map_err(|_| invalid(key, "expected an integer"))?;
                Match::Single(n.to_string())
            }
            Vr::Pn | Vr::Text => {
                if key == Key::Modality || key == Key::ModalitiesInStudy {
                    let list: Vec<String> = value
                        .split([',', '\\'])
                        .map(|m| m.trim().to_ascii_uppercase())
                        .filter(|m| !m.is_empty())
                        .collect();
                    if list.iter().any(|m| {
                        m.len() > 16 || !m.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    }) {
                        return Err(invalid(key, "expected modality codes such as CT or MR"));
                    }
                    return Ok(Some(if list.len() == 1 {
                        Match::Single(list.into_iter().next().unwrap_or_default())
                    } else {
                        Match::List(list)
                    }));
                }
                if value.contains(['*', '?']) {
                    Match::Wildcard(value.to_owned())
                } else {
                    Match::Single(value.to_owned())
                }
            }
        };
        Ok(Some(m))
    }
}

fn invalid(key: Key, why: &str) -> StoreError {
    StoreError::Invalid(format!("{}: {why}", key.keyword()))
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A syntactically valid UID (PS3.5 9.1): the header scanner's check, under the name the
/// query and retrieve adapters use.
pub use crate::header::is_valid_uid as is_uid;

fn parse_range(
    key: Key,
    value: &str,
    valid: fn(&str) -> bool,
) -> Result<(Option<String>, Option<String>)> {
    let (lo, hi) = match value.split_once('-') {
        Some((lo, hi)) => (lo.trim(), hi.trim()),
        None => (value, value),
    };
    if lo.is_empty() && hi.is_empty() {
        return Err(invalid(key, "a range needs at least one bound"));
    }
    for b in [lo, hi] {
        if !b.is_empty() && !valid(b) {
            return Err(invalid(
                key,
                &format!(
                    "{:?} is not a valid {}",
                    truncate(b, 30),
                    if key.vr() == Vr::Da {
                        "date (YYYYMMDD)"
                    } else {
                        "time (HHMM[SS[.FFFFFF]])"
                    }
                ),
            ));
        }
    }
    if !lo.is_empty() && !hi.is_empty() && normalise_time(lo) > normalise_time(hi) {
        return Err(invalid(key, "the range ends before it starts"));
    }
    let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    Ok((some(lo), some(hi)))
}

/// `YYYYMMDD` with a real month and day.
fn is_date(s: &str) -> bool {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let y: u32 = s[..4].parse().unwrap_or(0);
    let m: u32 = s[4..6].parse().unwrap_or(0);
    let d: u32 = s[6..].parse().unwrap_or(0);
    let leap = (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    y >= 1 && (1..=days).contains(&d)
}

/// `HH`, `HHMM`, `HHMMSS`, `HHMMSS.F…` (1–6 fraction digits), also with `:` separators.
fn is_time(s: &str) -> bool {
    let t = s.replace(':', "");
    let (whole, frac) = match t.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (t.as_str(), None),
    };
    if !matches!(whole.len(), 2 | 4 | 6) || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    if frac.is_some_and(|f| f.is_empty() || f.len() > 6 || !f.bytes().all(|b| b.is_ascii_digit())) {
        return false;
    }
    if frac.is_some() && whole.len() != 6 {
        return false;
    }
    let part = |i: usize| whole.get(i..i + 2).map(|p| p.parse::<u32>().unwrap_or(99));
    part(0).is_some_and(|h| h < 24)
        && part(2).is_none_or(|m| m < 60)
        && part(4).is_none_or(|sec| sec < 60)
}

fn normalise_time(s: &str) -> String {
    s.replace(':', "")
}

// ---------------------------------------------------------------------------------------
// The query

/// A query: what to return, within which study/series, matching which keys.
#[derive(Debug, Clone)]
pub struct Query {
    pub level: Level,
    pub keys: Vec<(Key, Match)>,
    pub fuzzy: bool,
    /// At most this many rows.
    pub limit: i64,
    pub offset: i64,
}

/// What a row holds; fields of levels below the query's are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Row {
    pub patient_id: String,
    pub issuer_of_patient_id: Option<String>,
    /// As stored: groups joined by `=`.
    pub patient_name: Option<String>,
    pub patient_birth_date: Option<String>,
    pub patient_sex: Option<String>,
    pub study_instance_uid: String,
    pub study_date: Option<String>,
    pub study_time: Option<String>,
    pub accession_number: Option<String>,
    pub study_id: Option<String>,
    pub study_description: Option<String>,
    pub referring_physician_name: Option<String>,
    pub modalities_in_study: Vec<String>,
    pub number_of_study_related_series: i64,
    pub number_of_study_related_instances: i64,
    pub series_instance_uid: Option<String>,
    pub modality: Option<String>,
    pub series_number: Option<i64>,
    pub series_description: Option<String>,
    pub body_part_examined: Option<String>,
    pub number_of_series_related_instances: Option<i64>,
    pub sop_instance_uid: Option<String>,
    pub sop_class_uid: Option<String>,
    pub instance_number: Option<i64>,
    pub transfer_syntax_uid: Option<String>,
    pub rows: Option<i64>,
    pub columns: Option<i64>,
    pub number_of_frames: Option<i64>,
}

/// A value bound to the statement.
#[derive(Debug, Clone)]
pub(crate) enum Bind {
    Text(String),
    Int(i64),
}

/// A statement assembled from literal pieces and numbered placeholders.
pub(crate) struct Sql {
    text: String,
    binds: Vec<Bind>,
    /// A PatientName condition matches few patients ([`NameProbe`]): start from them.
    patients_first: bool,
}

impl Sql {
    pub(crate) fn new(scope: Scope) -> Sql {
        let (kind, subject) = scope.binds();
        Sql {
            text: String::with_capacity(1024),
            binds: vec![Bind::Text(kind.to_owned()), Bind::Int(subject)],
            patients_first: false,
        }
    }

    pub(crate) fn push(&mut self, literal: &'static str) {
        self.text.push_str(literal);
    }

    /// An integer written into the statement, for LIMIT and OFFSET: SQLite plans a LIMIT
    /// that is a bound parameter from its value and then prepares the statement again
    /// each time the parameter is bound (`sqlite3ExprIsInteger` marks it), which cost
    /// every search a full re-prepare. Written as a literal, each limit is one cached
    /// statement. An `i64` cannot carry anything but digits.
    pub(crate) fn push_int(&mut self, n: i64) {
        use std::fmt::Write as _;
        let _ = write!(self.text, "{n}");
    }

    /// ` LIMIT limit OFFSET offset`, both literals ([`Sql::push_int`]).
    pub(crate) fn push_page(&mut self, limit: i64, offset: i64) {
        self.push(" LIMIT ");
        self.push_int(limit);
        self.push(" OFFSET ");
        self.push_int(offset);
    }

    pub(crate) fn bind(&mut self, value: Bind) {
        self.binds.push(value);
        self.text.push('$');
        self.text.push_str(&self.binds.len().to_string());
    }

    pub(crate) fn text(&mut self, s: impl Into<String>) {
        self.bind(Bind::Text(s.into()));
    }

    /// The statement with its values bound.
    pub(crate) fn build(self) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
        let Sql { text, binds, .. } = self;
        let mut q = sqlx::query(sqlx::AssertSqlSafe(text));
        for b in binds {
            q = match b {
                Bind::Text(t) => q.bind(t),
                Bind::Int(n) => q.bind(n),
            };
        }
        q
    }

    async fn fetch_one(self, index: &Index) -> Result<AnyRow> {
        index.fetch_one_alone(self.build()).await
    }
}

/// `LIKE` pattern of a DICOM wildcard value (`*`, `?`), `\` escaping LIKE's own `%`, `_`
/// and `\`.
fn like_pattern(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 4);
    for c in value.chars() {
        match c {
            '*' => out.push('%'),
            '?' => out.push('_'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// Closes an `EXISTS (SELECT 1 …` of a WHERE clause. `LIMIT 1` changes nothing of what
/// EXISTS means, and keeps SQLite (3.51) from running the EXISTS as a join: that join
/// counts OFFSET once per matching inner row, not once per outer row, so a page past the
/// first skipped too few rows whenever a study had two matching rows (two name keys of
/// its patient, two CT series). PostgreSQL drops a constant LIMIT from an EXISTS.
pub(crate) const END_EXISTS: &str = " LIMIT 1)";

/// The column of a non-PN key, on the aliases `p` (patients), `s` (studies), `se`
/// (series), `i` (instances).
fn column(key: Key) -> &'static str {
    match key {
        Key::PatientId => "p.patient_id",
        Key::IssuerOfPatientId => "p.issuer_of_patient_id",
        Key::PatientBirthDate => "p.birth_date",
        Key::PatientSex => "p.sex",
        Key::StudyInstanceUid => "s.study_instance_uid",
        Key::StudyDate => "s.study_date",
        Key::StudyTime => "s.study_time",
        Key::AccessionNumber => "s.accession_number",
        Key::StudyId => "s.study_id",
        Key::StudyDescription => "s.study_description",
        Key::SeriesInstanceUid => "se.series_instance_uid",
        Key::Modality => "se.modality",
        Key::SeriesNumber => "se.series_number",
        Key::SeriesDescription => "se.series_description",
        Key::BodyPartExamined => "se.body_part_examined",
        Key::SopInstanceUid => "i.sop_instance_uid",
        Key::SopClassUid => "i.sop_class_uid",
        Key::InstanceNumber => "i.instance_number",
        Key::PatientName => "p.patient_name",
        Key::ReferringPhysicianName => "s.referring_physician_name",
        Key::ModalitiesInStudy => "s.modalities_in_study",
    }
}

fn push_condition(sql: &mut Sql, key: Key, m: &Match, fuzzy: bool) {
    sql.push(" AND ");
    match (key, m) {
        (Key::PatientName, m) => push_patient_name(sql, m, fuzzy),
        (Key::ReferringPhysicianName, m) => push_referring_name(sql, m, fuzzy),
        (Key::ModalitiesInStudy, m) => {
            // Any series of the study with one of the modalities.
            sql.push(
                "EXISTS (SELECT 1 FROM series ms WHERE ms.study_ref = s.id AND ms.modality IN (",
            );
            push_list(sql, m);
            sql.push(")");
            sql.push(END_EXISTS);
        }
        (Key::SeriesNumber | Key::InstanceNumber, Match::Single(n)) => {
            sql.push(column(key));
            sql.push(" = ");
            sql.bind(Bind::Int(n.parse().unwrap_or(i64::MIN)));
        }
        (_, Match::Single(v)) => {
            sql.push(column(key));
            sql.push(" = ");
            sql.text(v.clone());
        }
        (_, Match::Wildcard(v)) => {
            sql.push(column(key));
            sql.push(" LIKE ");
            sql.text(like_pattern(v));
            sql.push(" ESCAPE '\\'");
        }
        (_, Match::List(_)) => {
            sql.push(column(key));
            sql.push(" IN (");
            push_list(sql, m);
            sql.push(")");
        }
        (_, Match::Range(lo, hi)) => {
            sql.push("(");
            sql.push(column(key));
            sql.push(" IS NOT NULL");
            if let Some(lo) = lo {
                sql.push(" AND ");
                sql.push(column(key));
                sql.push(" >= ");
                sql.text(lo.clone());
            }
            if let Some(hi) = hi {
                sql.push(" AND ");
                sql.push(column(key));
                sql.push(" <= ");
                sql.text(hi.clone());
            }
            sql.push(")");
        }
    }
}

fn push_list(sql: &mut Sql, m: &Match) {
    let values: Vec<String> = match m {
        Match::List(v) => v.clone(),
        Match::Single(v) | Match::Wildcard(v) => vec![v.clone()],
        Match::Range(..) => Vec::new(),
    };
    for (i, v) in values.into_iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.text(v);
    }
}

/// A PatientName condition: through the lower-cased search keys of `patient_name_keys`
/// (`crate::index::name_keys`), which an index answers, instead of scanning every patient.
/// Case-insensitive; a value with `=` matches group by group (an empty group matches
/// anything), one without against the whole name and each group.
fn push_patient_name(sql: &mut Sql, m: &Match, fuzzy: bool) {
    let (value, wildcard) = name_value(m);
    let Some(parts) = name_group_parts(&value, wildcard) else {
        return push_name_key_match(sql, KEY_WHOLE_OR_GROUP, &value, wildcard, fuzzy);
    };
    sql.push("(1 = 1");
    for (kinds, part, wildcard) in parts {
        sql.push(" AND ");
        push_name_key_match(sql, kinds, part, wildcard, fuzzy);
    }
    sql.push(")");
}

/// The lower-cased value of a person-name match, and whether it has wildcards.
fn name_value(m: &Match) -> (String, bool) {
    let value = match m {
        Match::Single(v) | Match::Wildcard(v) => v.to_lowercase(),
        Match::List(v) => v.join(",").to_lowercase(),
        Match::Range(..) => String::new(),
    };
    (value, matches!(m, Match::Wildcard(_)))
}

/// The key kinds a whole-name value is matched against: the whole name or any group.
const KEY_WHOLE_OR_GROUP: &str = "k.kind IN (0, 1, 2, 3)";

/// For a value with `=`: each non-empty group with the key kind it is matched against.
fn name_group_parts(value: &str, wildcard: bool) -> Option<Vec<(&'static str, &str, bool)>> {
    if !value.contains('=') {
        return None;
    }
    let kinds = ["k.kind = 1", "k.kind = 2", "k.kind = 3"];
    Some(
        kinds
            .into_iter()
            .zip(value.split('='))
            .filter(|(_, part)| !part.is_empty())
            .map(|(kinds, part)| (kinds, part, wildcard || part.contains(['*', '?'])))
            .collect(),
    )
}

fn push_name_key_match(
    sql: &mut Sql,
    kinds: &'static str,
    value: &str,
    wildcard: bool,
    fuzzy: bool,
) {
    // Few matching patients: their studies are found through them (`studies_patient`),
    // then sorted. Many: the studies are walked newest first (`studies_received`) and each
    // one's patient checked through its own keys (`patient_name_keys_patient`), until the
    // limit — cheaper than gathering thousands of matching patients first.
    if sql.patients_first {
        sql.push("s.patient_ref IN (SELECT k.patient_ref FROM patient_name_keys k WHERE ");
    } else {
        sql.push(
            "EXISTS (SELECT 1 FROM patient_name_keys k WHERE k.patient_ref = s.patient_ref AND ",
        );
    }
    push_name_key_condition(sql, kinds, value, wildcard, fuzzy);
    sql.push(if sql.patients_first { ")" } else { END_EXISTS });
}

/// The condition on `patient_name_keys k` for one lower-cased value: exact; a wildcard
/// pattern (its literal prefix, if any, as an index range); or, fuzzy, any component
/// starting with the value.
fn push_name_key_condition(
    sql: &mut Sql,
    kinds: &'static str,
    value: &str,
    wildcard: bool,
    fuzzy: bool,
) {
    if wildcard {
        sql.push(kinds);
        push_prefix_range(sql, &literal_prefix(value));
        sql.push(" AND k.name_key LIKE ");
        sql.text(like_pattern(value));
        sql.push(" ESCAPE '\\'");
    } else if fuzzy {
        sql.push("k.kind = 4");
        push_prefix_range(sql, value);
    } else {
        sql.push(kinds);
        sql.push(" AND k.name_key = ");
        sql.text(value.to_owned());
    }
}

/// The part of a wildcard value before its first `*` or `?`.
fn literal_prefix(value: &str) -> String {
    value
        .chars()
        .take_while(|c| !matches!(c, '*' | '?'))
        .collect()
}

/// `name_key` starts with `prefix`, as a range an index can answer: from the prefix up to,
/// not including, the first string after every string that starts with it. Both databases
/// compare these keys by code point (SQLite's BINARY, PostgreSQL's `COLLATE "C"`).
fn push_prefix_range(sql: &mut Sql, prefix: &str) {
    if prefix.is_empty() {
        return;
    }
    sql.push(" AND k.name_key >= ");
    sql.text(prefix.to_owned());
    if let Some(after) = prefix_successor(prefix) {
        sql.push(" AND k.name_key < ");
        sql.text(after);
    }
}

/// The smallest string greater than every string starting with `prefix`: its last char
/// that can be incremented, incremented, and what follows it dropped.
fn prefix_successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (last as u32 + 1..=char::MAX as u32).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// A referring-physician-name condition: case-insensitive on the whole value (ASCII case
/// only on SQLite, whose `LOWER` folds nothing else).
fn push_referring_name(sql: &mut Sql, m: &Match, fuzzy: bool) {
    let (value, wildcard) = name_value(m);
    let col = "LOWER(s.referring_physician_name)";
    if wildcard {
        sql.push(col);
        sql.push(" LIKE ");
        sql.text(like_pattern(&value));
        sql.push(" ESCAPE '\\'");
    } else if fuzzy {
        // Any component that starts with the value: the start of the name, or after a
        // component (^), group (=) or word separator.
        let v = like_pattern(&value);
        sql.push("(");
        for (i, pattern) in [
            format!("{v}%"),
            format!("%^{v}%"),
            format!("%={v}%"),
            format!("% {v}%"),
        ]
        .into_iter()
        .enumerate()
        {
            if i > 0 {
                sql.push(" OR ");
            }
            sql.push(col);
            sql.push(" LIKE ");
            sql.text(pattern);
            sql.push(" ESCAPE '\\'");
        }
        sql.push(")");
    } else {
        sql.push(col);
        sql.push(" = ");
        sql.text(value);
    }
}

/// The PatientName condition that chooses a search's plan: whether its match reads few
/// enough name keys that the studies are best found through the matching patients and then
/// sorted, rather than by walking all studies newest first until the limit.
///
/// Walking costs about `wanted / density` studies (density: matching patients / patients);
/// starting from the patients costs about `matching` studies. The first is cheaper when
/// `matching > sqrt(wanted × patients)`: the keys are counted up to that bound
/// ([`few_keys_bound`]), so the probe itself stays cheap.
struct NameProbe {
    kinds: &'static str,
    part: String,
    wildcard: bool,
    fuzzy: bool,
    bound: i64,
}

impl NameProbe {
    /// The probe of `query`'s PatientName, or `None` when it has none an index answers (no
    /// PatientName, or a wildcard with no literal prefix): the studies are walked.
    async fn of(index: &Index, query: &Query) -> Result<Option<NameProbe>> {
        let Some((_, m)) = query.keys.iter().find(|(k, _)| *k == Key::PatientName) else {
            return Ok(None);
        };
        let (value, wildcard) = name_value(m);
        let (kinds, part, wildcard) = match name_group_parts(&value, wildcard) {
            Some(parts) => match parts.into_iter().next() {
                Some((kinds, part, wildcard)) => (kinds, part.to_owned(), wildcard),
                None => return Ok(None),
            },
            None => (KEY_WHOLE_OR_GROUP, value.clone(), wildcard),
        };
        if wildcard && literal_prefix(&part).is_empty() {
            return Ok(None);
        }
        let patients = index.patients_hint.get(index).await?;
        Ok(Some(NameProbe {
            kinds,
            part,
            wildcard,
            fuzzy: query.fuzzy,
            bound: few_keys_bound(query.limit.saturating_add(query.offset), patients),
        }))
    }

    /// An exact value (no wildcard, not fuzzy) nearly always names few patients.
    fn exact(&self) -> bool {
        !self.wildcard && !self.fuzzy
    }

    /// `(SELECT COUNT(*) … LIMIT bound)`: the keys the match reads, counted up to the bound.
    fn push_count(&self, sql: &mut Sql) {
        sql.push("(SELECT COUNT(*) FROM (SELECT 1 FROM patient_name_keys k WHERE ");
        push_name_key_condition(sql, self.kinds, &self.part, self.wildcard, self.fuzzy);
        sql.push(" LIMIT ");
        sql.push_int(self.bound);
        sql.push(") t)");
    }

    /// The condition that the match reads few keys.
    fn push_few(&self, sql: &mut Sql) {
        self.push_count(sql);
        sql.push(" < ");
        sql.push_int(self.bound);
    }

    /// Whether the match reads few keys (one query).
    async fn few(&self, index: &Index) -> Result<bool> {
        let mut sql = Sql {
            text: String::from("SELECT "),
            binds: Vec::new(),
            patients_first: false,
        };
        self.push_count(&mut sql);
        let n: i64 = sql.fetch_one(index).await?.try_get(0)?;
        Ok(n < self.bound)
    }
}

/// How [`Index::query`] finds the studies of a search.
#[derive(Clone, Copy)]
enum Plan<'a> {
    /// Newest first, each study checked.
    WalkStudies,
    /// Through the patients the PatientName condition matches, then sorted.
    PatientsFirst,
    /// As `PatientsFirst` when the probe finds few keys, else no rows: the probe is an
    /// uncorrelated subquery in the WHERE clause, computed once per statement (SQLite:
    /// `Once`, at the first matching patient; PostgreSQL: an InitPlan and a one-time
    /// filter). When it is false no study is read, only the name's keys.
    PatientsFirstIfFew(&'a NameProbe),
}

/// The number of patients for choosing a name query's plan (the largest patient id: an
/// index lookup, not a count), read again when older than [`PatientsHint::MAX_AGE`]. A
/// plan needs its order of magnitude only, and reading it on every query would cost one
/// more trip to the database per search.
#[derive(Debug, Default)]
pub(crate) struct PatientsHint {
    /// (the number, when it was read in Unix microseconds); 0 = never.
    value: std::sync::atomic::AtomicI64,
    read_at: std::sync::atomic::AtomicI64,
}

impl PatientsHint {
    const MAX_AGE: std::time::Duration = std::time::Duration::from_secs(5);

    async fn get(&self, index: &Index) -> Result<i64> {
        use std::sync::atomic::Ordering::Relaxed;
        let now = crate::index::now_micros();
        let read_at = self.read_at.load(Relaxed);
        if read_at != 0 && now.saturating_sub(read_at) < Self::MAX_AGE.as_micros() as i64 {
            return Ok(self.value.load(Relaxed));
        }
        let patients: i64 = index
            .fetch_one_alone(sqlx::query("SELECT COALESCE(MAX(id), 0) FROM patients"))
            .await?
            .try_get(0)?;
        self.value.store(patients, Relaxed);
        self.read_at.store(now, Relaxed);
        Ok(patients)
    }
}

/// Below this many matching name keys a name query starts from the patients:
/// `sqrt(wanted × patients)` (the largest patient id stands for the number of patients: an
/// index lookup, not a count), within 50..=50,000.
fn few_keys_bound(wanted: i64, patients: i64) -> i64 {
    let product = (wanted.max(1) as f64) * (patients.max(1) as f64);
    (product.sqrt() as i64).clamp(50, 50_000)
}

const STUDY_COLUMNS: &str = "p.patient_id, p.issuer_of_patient_id, p.patient_name, \
     p.birth_date, p.sex, s.study_instance_uid, s.study_date, s.study_time, \
     s.accession_number, s.study_id, s.study_description, s.referring_physician_name, \
     s.modalities_in_study, s.number_of_series, s.number_of_instances";

impl Index {
    /// The rows matching `query` within `scope`, in a stable order (newest study first,
    /// then series and instance number), `query.limit` at most from `query.offset`.
    pub async fn query(&self, scope: Scope, query: &Query) -> Result<Vec<Row>> {
        let Some(probe) = NameProbe::of(self, query).await? else {
            return self.search(scope, query, Plan::WalkStudies).await;
        };
        if !probe.exact() {
            let plan = if probe.few(self).await? {
                Plan::PatientsFirst
            } else {
                Plan::WalkStudies
            };
            return self.search(scope, query, plan).await;
        }
        // An exact name: the search from its patients at once, with the probe inside the
        // same statement (one trip to the database instead of two). No rows means no match,
        // or a name so common that the probe stopped the search: the probe alone says which.
        let rows = self
            .search(scope, query, Plan::PatientsFirstIfFew(&probe))
            .await?;
        if !rows.is_empty() || probe.few(self).await? {
            return Ok(rows);
        }
        self.search(scope, query, Plan::WalkStudies).await
    }

    async fn search(&self, scope: Scope, query: &Query, plan: Plan<'_>) -> Result<Vec<Row>> {
        let mut sql = Sql::new(scope);
        sql.patients_first = !matches!(plan, Plan::WalkStudies);
        sql.push("SELECT ");
        sql.push(STUDY_COLUMNS);
        match query.level {
            Level::Study => {}
            Level::Series => sql.push(
                ", se.series_instance_uid, se.modality, se.series_number, \
                 se.series_description, se.body_part_examined, se.number_of_instances",
            ),
            Level::Instance => sql.push(
                ", se.series_instance_uid, se.modality, se.series_number, \
                 se.series_description, se.body_part_examined, se.number_of_instances, \
                 i.sop_instance_uid, i.sop_class_uid, i.instance_number, \
                 i.transfer_syntax_uid, i.rows, i.columns, i.number_of_frames",
            ),
        }
        sql.push(" FROM studies s JOIN patients p ON p.id = s.patient_ref");
        let needs_series = query.level != Level::Study
            || query.keys.iter().any(|(k, _)| k.level() != Level::Study);
        let needs_instances = query.level == Level::Instance
            || query.keys.iter().any(|(k, _)| k.level() == Level::Instance);
        if query.level != Level::Study {
            sql.push(" JOIN series se ON se.study_ref = s.id");
        }
        if query.level == Level::Instance {
            sql.push(" JOIN instances i ON i.series_ref = se.id");
        }
        // The scope first: SQLite numbers `$N` parameters in order of appearance.
        sql.push(" WHERE ");
        sql.push(crate::access::in_scope!("$1", "$2"));
        if query.level == Level::Study && needs_series {
            // Study-level query with series/instance keys: a study matches when one of
            // its series (instances) does.
            sql.push(" AND EXISTS (SELECT 1 FROM series se");
            if needs_instances {
                sql.push(" JOIN instances i ON i.series_ref = se.id");
            }
            sql.push(" WHERE se.study_ref = s.id");
            for (k, m) in query.keys.iter().filter(|(k, _)| k.level() != Level::Study) {
                push_condition(&mut sql, *k, m, query.fuzzy);
            }
            sql.push(END_EXISTS);
        }
        if query.level == Level::Series && needs_instances {
            // Series-level query with instance keys: a series matches when one of its
            // instances does (one row per series, not per instance).
            sql.push(" AND EXISTS (SELECT 1 FROM instances i WHERE i.series_ref = se.id");
            for (k, m) in query
                .keys
                .iter()
                .filter(|(k, _)| k.level() == Level::Instance)
            {
                push_condition(&mut sql, *k, m, query.fuzzy);
            }
            sql.push(END_EXISTS);
        }
        for (k, m) in &query.keys {
            let below = match query.level {
                Level::Study => k.level() != Level::Study,
                Level::Series => k.level() == Level::Instance,
                Level::Instance => false,
            };
            if !below {
                push_condition(&mut sql, *k, m, query.fuzzy);
            }
        }
        if let Plan::PatientsFirstIfFew(probe) = plan {
            sql.push(" AND ");
            probe.push_few(&mut sql);
        }
        if sql.patients_first {
            // Sorting the few studies found through their patients: `+ 0` keeps the
            // planner from walking every study in received order instead, with or
            // without table statistics.
            sql.push(" ORDER BY s.first_received_at + 0 DESC, s.id + 0 DESC");
        } else {
            sql.push(" ORDER BY s.first_received_at DESC, s.id DESC");
        }
        match query.level {
            Level::Study => {}
            Level::Series => sql.push(", se.series_number, se.id"),
            Level::Instance => sql.push(", se.series_number, se.id, i.instance_number, i.id"),
        }
        sql.push_page(query.limit.clamp(1, 100_000), query.offset.max(0));

        let rows = self.fetch_all_alone(sql.build()).await?;
        rows.iter().map(|r| row_from(r, query.level)).collect()
    }
}

fn row_from(r: &AnyRow, level: Level) -> Result<Row> {
    let modalities: String = r.try_get(12)?;
    let mut row = Row {
        patient_id: r.try_get(0)?,
        issuer_of_patient_id: r.try_get(1)?,
        patient_name: r.try_get(2)?,
        patient_birth_date: r.try_get(3)?,
        patient_sex: r.try_get(4)?,
        study_instance_uid: r.try_get(5)?,
        study_date: r.try_get(6)?,
        study_time: r.try_get(7)?,
        accession_number: r.try_get(8)?,
        study_id: r.try_get(9)?,
        study_description: r.try_get(10)?,
        referring_physician_name: r.try_get(11)?,
        modalities_in_study: split_values(Some(&modalities)),
        number_of_study_related_series: r.try_get(13)?,
        number_of_study_related_instances: r.try_get(14)?,
        ..Row::default()
    };
    if level != Level::Study {
        row.series_instance_uid = r.try_get(15)?;
        row.modality = r.try_get(16)?;
        row.series_number = r.try_get(17)?;
        row.series_description = r.try_get(18)?;
        row.body_part_examined = r.try_get(19)?;
        row.number_of_series_related_instances = r.try_get(20)?;
    }
    if level == Level::Instance {
        row.sop_instance_uid = r.try_get(21)?;
        row.sop_class_uid = r.try_get(22)?;
        row.instance_number = r.try_get(23)?;
        row.transfer_syntax_uid = r.try_get(24)?;
        row.rows = r.try_get(25)?;
        row.columns = r.try_get(26)?;
        row.number_of_frames = r.try_get(27)?;
    }
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(k: Key, v: &str) -> Option<Match> {
        Match::parse(k, v, ',').unwrap()
    }

    fn refused(k: Key, v: &str) -> String {
        match Match::parse(k, v, ',') {
            Err(StoreError::Invalid(why)) => why,
            other => panic!("{k} {v:?}: {other:?}"),
        }
    }

    #[test]
    fn keys_by_keyword_and_tag() {
        assert_eq!(Key::from_keyword("PatientName"), Some(Key::PatientName));
        assert_eq!(Key::from_keyword("00100010"), Some(Key::PatientName));
        assert_eq!(Key::from_keyword("0020,000D"), Some(Key::StudyInstanceUid));
        assert_eq!(Key::from_keyword("0020000d"), Some(Key::StudyInstanceUid));
        assert_eq!(Key::from_keyword("patientname"), None);
        assert_eq!(Key::from_keyword("7FE00010"), None);
        for k in Key::ALL {
            assert_eq!(Key::from_tag(k.tag().0, k.tag().1), Some(k));
        }
    }

    #[test]
    fn values() {
        assert_eq!(parse(Key::PatientName, ""), None);
        assert_eq!(parse(Key::PatientName, "*"), None);
        assert_eq!(
            parse(Key::PatientName, "Wang*"),
            Some(Match::Wildcard("Wang*".into()))
        );
        assert_eq!(
            parse(Key::StudyInstanceUid, "1.2.3,1.2.4"),
            Some(Match::List(vec!["1.2.3".into(), "1.2.4".into()]))
        );
        assert_eq!(
            Match::parse(Key::StudyInstanceUid, "1.2.3\\1.2.4", '\\').unwrap(),
            Some(Match::List(vec!["1.2.3".into(), "1.2.4".into()]))
        );
        assert_eq!(
            parse(Key::StudyDate, "20240101-20240131"),
            Some(Match::Range(
                Some("20240101".into()),
                Some("20240131~".into())
            ))
        );
        assert_eq!(
            parse(Key::StudyDate, "-20240131"),
            Some(Match::Range(None, Some("20240131~".into())))
        );
        assert_eq!(
            parse(Key::StudyTime, "0800-09:00"),
            Some(Match::Range(Some("0800".into()), Some("0900~".into())))
        );
        assert_eq!(
            parse(Key::ModalitiesInStudy, "ct,MR"),
            Some(Match::List(vec!["CT".into(), "MR".into()]))
        );
        assert_eq!(
            parse(Key::SeriesNumber, " 3 "),
            Some(Match::Single("3".into()))
        );
        assert!(refused(Key::StudyDate, "2024-13-01").contains("not a valid date"));
        assert!(refused(Key::StudyDate, "20240230").contains("not a valid date"));
        assert!(refused(Key::StudyDate, "20240131-20240101").contains("ends before"));
        assert!(refused(Key::StudyDate, "yesterday").contains("StudyDate"));
        assert!(refused(Key::StudyTime, "2500").contains("not a valid time"));
        assert!(refused(Key::StudyInstanceUid, "1.2.3' OR '1'='1").contains("not a UID"));
        assert!(refused(Key::ModalitiesInStudy, "CT'--").contains("modality"));
        assert!(refused(Key::SeriesNumber, "1; DROP").contains("integer"));
        assert!(refused(Key::PatientName, &"a".repeat(400)).contains("too long"));
        assert!(refused(Key::PatientId, "a\u{0}b").contains("control"));
        assert!(is_date("20240229") && !is_date("20230229") && !is_date("00000101"));
        assert!(is_time("23:59:59.999999") && !is_time("2360") && !is_time("12.5"));
    }

    #[test]
    fn few_keys_bound_grows_with_the_index_and_the_limit() {
        // 100 wanted of 100,000 patients: about 3,162 keys; of 5,000: about 707.
        assert_eq!(few_keys_bound(100, 100_000), 3162);
        assert_eq!(few_keys_bound(100, 5_000), 707);
        assert_eq!(few_keys_bound(1, 1), 50);
        assert_eq!(few_keys_bound(i64::MAX, i64::MAX), 50_000);
    }

    #[test]
    fn like_patterns_escape_like_metacharacters() {
        assert_eq!(like_pattern("W?ng*"), "W_ng%");
        assert_eq!(like_pattern("100%_\\x*"), "100\\%\\_\\\\x%");
    }
}

// ---------------------------------------------------------------------------------------
// Retrieval

/// An instance to send back (WADO-RS, C-MOVE, C-GET), with where its object is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Retrievable {
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
    pub transfer_syntax_uid: String,
    pub object_key: String,
    pub size_bytes: i64,
    pub dataset_offset: i64,
    pub number_of_frames: Option<i64>,
    pub patient_id: String,
    pub issuer_of_patient_id: Option<String>,
}

impl Index {
    /// The instances of a study (of one of its series, or one instance) that `scope` may
    /// see, in series and instance order. Empty when there are none or they are outside
    /// the scope: the caller cannot tell which.
    pub async fn retrievable(
        &self,
        scope: Scope,
        study_instance_uid: &str,
        series_instance_uid: Option<&str>,
        sop_instance_uid: Option<&str>,
    ) -> Result<Vec<Retrievable>> {
        let (kind, subject) = scope.binds();
        let statement = sqlx::query(concat!(
            "SELECT s.study_instance_uid, se.series_instance_uid, i.sop_instance_uid, \
             i.sop_class_uid, i.transfer_syntax_uid, i.object_key, i.size_bytes, \
             i.dataset_offset, i.number_of_frames, p.patient_id, p.issuer_of_patient_id \
             FROM instances i JOIN series se ON se.id = i.series_ref \
             JOIN studies s ON s.id = i.study_ref JOIN patients p ON p.id = s.patient_ref \
             WHERE s.study_instance_uid = $1 \
             AND ($2 IS NULL OR se.series_instance_uid = $2) \
             AND ($3 IS NULL OR i.sop_instance_uid = $3) AND ",
            crate::access::in_scope!("$4", "$5"),
            " ORDER BY se.series_number, se.id, i.instance_number, i.id"
        ))
        .bind(study_instance_uid)
        .bind(series_instance_uid)
        .bind(sop_instance_uid)
        .bind(kind)
        .bind(subject);
        let rows = self.fetch_all_alone(statement).await?;
        rows.iter()
            .map(|r| {
                Ok(Retrievable {
                    study_instance_uid: r.try_get(0)?,
                    series_instance_uid: r.try_get(1)?,
                    sop_instance_uid: r.try_get(2)?,
                    sop_class_uid: r.try_get(3)?,
                    transfer_syntax_uid: r.try_get(4)?,
                    object_key: r.try_get(5)?,
                    size_bytes: r.try_get(6)?,
                    dataset_offset: r.try_get(7)?,
                    number_of_frames: r.try_get(8)?,
                    patient_id: r.try_get(9)?,
                    issuer_of_patient_id: r.try_get(10)?,
                })
            })
            .collect()
    }
}

impl Row {
    /// The row's value of `key` as a DICOM string value (PN groups joined by `=`, multiple
    /// values by `\`), `None` when the row has none or the key is below the row's level.
    pub fn value(&self, key: Key) -> Option<String> {
        let s = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        match key {
            Key::PatientName => s(&self.patient_name),
            Key::PatientId => Some(self.patient_id.clone()),
            Key::IssuerOfPatientId => s(&self.issuer_of_patient_id),
            Key::PatientBirthDate => s(&self.patient_birth_date),
            Key::PatientSex => s(&self.patient_sex),
            Key::StudyInstanceUid => Some(self.study_instance_uid.clone()),
            Key::StudyDate => s(&self.study_date),
            Key::StudyTime => s(&self.study_time),
            Key::AccessionNumber => s(&self.accession_number),
            Key::ModalitiesInStudy => {
                (!self.modalities_in_study.is_empty()).then(|| self.modalities_in_study.join("\\"))
            }
            Key::ReferringPhysicianName => s(&self.referring_physician_name),
            Key::StudyId => s(&self.study_id),
            Key::StudyDescription => s(&self.study_description),
            Key::SeriesInstanceUid => s(&self.series_instance_uid),
            Key::Modality => s(&self.modality),
            Key::SeriesNumber => self.series_number.map(|n| n.to_string()),
            Key::SeriesDescription => s(&self.series_description),
            Key::BodyPartExamined => s(&self.body_part_examined),
            Key::SopInstanceUid => s(&self.sop_instance_uid),
            Key::SopClassUid => s(&self.sop_class_uid),
            Key::InstanceNumber => self.instance_number.map(|n| n.to_string()),
        }
    }
}

/// PatientName matching on a real index: both query plans, both databases, keys made at
/// ingest and for old rows.
#[cfg(test)]
mod name_tests {
    use super::*;
    use crate::charset::PersonName;
    use crate::header::IndexedAttributes;
    use crate::index::NewInstance;
    use crate::objects::ObjectKey;

    fn instance(n: usize, patient: &str, name: &str, received_at: i64) -> NewInstance {
        let groups: Vec<&str> = name.split('=').collect();
        let group = |i: usize| groups.get(i).copied().unwrap_or("").to_owned();
        NewInstance {
            attrs: IndexedAttributes {
                sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
                sop_instance_uid: format!("1.2.826.0.1.3680043.10.543.3.{n}"),
                study_instance_uid: format!("1.2.826.0.1.3680043.10.543.1.{n}"),
                series_instance_uid: format!("1.2.826.0.1.3680043.10.543.2.{n}"),
                patient_id: Some(patient.into()),
                patient_name: Some(PersonName {
                    alphabetic: group(0),
                    ideographic: group(1),
                    phonetic: group(2),
                }),
                modality: Some("CT".into()),
                ..Default::default()
            },
            transfer_syntax_uid: "1.2.840.10008.1.2.1".into(),
            object_key: ObjectKey::generate(),
            size_bytes: 100,
            dataset_offset: 0,
            content_hash: format!("{n:064x}"),
            clinic_id: None,
            clinic_name: Some("NAMES".into()),
            source_ae: None,
            received_at,
            archive_authored: false,
        }
    }

    /// Enough "Wang" patients (for [`few_keys_bound`] with a limit of 10), so that `Wang*` walks the
    /// studies newest first while a rarer name starts from its patients.
    const WANGS: usize = 1100;

    async fn fill(index: &Index) {
        let mut all = Vec::new();
        for n in 0..WANGS {
            all.push(instance(
                n,
                &format!("W{n}"),
                &format!("Wang^Given{n:04}"),
                n as i64,
            ));
        }
        let t = WANGS as i64;
        all.push(instance(
            WANGS,
            "X1",
            "Wang^XiaoDong=王^小东=wang^xiao dong",
            t,
        ));
        all.push(instance(WANGS + 1, "M1", "MÜLLER^ÉMILE", t + 1));
        all.push(instance(WANGS + 2, "L1", "Li^Wei", t + 2));
        insert_all(index, all).await;
    }

    /// Inserts `all` concurrently, so that the writer groups them into few commits.
    async fn insert_all(index: &Index, all: Vec<NewInstance>) {
        let tasks: Vec<_> = all
            .into_iter()
            .map(|new| {
                let index = index.clone();
                tokio::spawn(async move { index.insert_instance(new).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
    }

    async fn names(index: &Index, value: &str, fuzzy: bool, limit: i64) -> Vec<String> {
        let m = Match::parse(Key::PatientName, value, ',').unwrap().unwrap();
        let query = Query {
            level: Level::Study,
            keys: vec![(Key::PatientName, m)],
            fuzzy,
            limit,
            offset: 0,
        };
        let rows = index.query(Scope::All, &query).await.unwrap();
        rows.into_iter()
            .map(|r| r.patient_name.unwrap_or_default())
            .collect()
    }

    /// An exact name is searched from its patients in one statement that holds the probe
    /// ([`Plan::PatientsFirstIfFew`]); a name so common that the probe stops that statement is
    /// searched again by walking the studies, with the same answer.
    async fn exact_names_with_few_and_many_patients(index: &Index) {
        // 150 patients of one exact name: more keys than the bound for 10 of ~1,250
        // patients (sqrt(10 × 1,250) ≈ 112), so the guarded statement answers nothing.
        // Each study with two CT series: two rows for every EXISTS on its series.
        const ZHANGS: usize = 150;
        let base = WANGS + 100;
        let all = (0..ZHANGS)
            .flat_map(|n| {
                let first = instance(base + n, &format!("Z{n}"), "Zhang^Wei", (base + n) as i64);
                let mut second = first.clone();
                second.attrs.series_instance_uid.push_str(".2");
                second.attrs.sop_instance_uid.push_str(".2");
                second.object_key = ObjectKey::generate();
                [first, second]
            })
            .collect();
        insert_all(index, all).await;
        index
            .patients_hint
            .read_at
            .store(0, std::sync::atomic::Ordering::Relaxed);
        let exact = |v: &str, limit: i64, offset: i64| {
            let m = Match::parse(Key::PatientName, v, ',').unwrap().unwrap();
            Query {
                level: Level::Study,
                keys: vec![(Key::PatientName, m)],
                fuzzy: false,
                limit,
                offset,
            }
        };
        // The patient ids a search answers, by `query` or by one plan.
        let found = |scope: Scope, q: Query| async move {
            let rows = index.query(scope, &q).await.unwrap();
            rows.into_iter().map(|r| r.patient_id).collect::<Vec<_>>()
        };
        async fn planned(index: &Index, q: &Query, plan: Plan<'_>) -> Vec<String> {
            let rows = index.search(Scope::All, q, plan).await.unwrap();
            rows.into_iter().map(|r| r.patient_id).collect()
        }
        let zs = |range: std::ops::Range<usize>| -> Vec<String> {
            range.rev().map(|n| format!("Z{n}")).collect()
        };

        let common = exact("ZHANG^WEI", 10, 0);
        let probe = NameProbe::of(index, &common).await.unwrap().unwrap();
        assert!(probe.exact() && !probe.few(index).await.unwrap());
        let guarded = planned(index, &common, Plan::PatientsFirstIfFew(&probe)).await;
        assert!(
            guarded.is_empty(),
            "the probe stops the search from the patients"
        );
        // The answer: the 10 newest of the 150, newest first.
        assert_eq!(
            found(Scope::All, common.clone()).await,
            zs(ZHANGS - 10..ZHANGS)
        );
        // Pages past the first, whichever plan: each study counted once for the offset.
        let page3 = zs(ZHANGS - 30..ZHANGS - 20);
        let third = exact("zhang^wei", 10, 20);
        assert_eq!(found(Scope::All, third.clone()).await, page3);
        for plan in [Plan::WalkStudies, Plan::PatientsFirst] {
            assert_eq!(planned(index, &third, plan).await, page3);
        }
        let mut ct = third;
        for key in [Key::ModalitiesInStudy, Key::Modality] {
            ct.keys
                .push((key, Match::parse(key, "CT", ',').unwrap().unwrap()));
            assert_eq!(found(Scope::All, ct.clone()).await, page3);
        }
        // A rare exact name: one statement, the studies of its patient.
        let rare = exact("li^wen", 10, 0);
        let probe = NameProbe::of(index, &rare).await.unwrap().unwrap();
        assert!(probe.few(index).await.unwrap());
        let guarded = planned(index, &rare, Plan::PatientsFirstIfFew(&probe)).await;
        assert_eq!(guarded, ["L1"]);
        assert_eq!(found(Scope::All, rare).await, ["L1"]);
        // Past the end, no such name, and a scope without the studies: nothing.
        assert!(found(Scope::All, exact("li^wen", 10, 1)).await.is_empty());
        assert!(
            found(Scope::All, exact("nobody^here", 10, 0))
                .await
                .is_empty()
        );
        assert!(found(Scope::Clinic(i64::MAX), common).await.is_empty());
    }

    async fn name_matching_contract(index: &Index) {
        fill(index).await;
        let plan = |v: &str, fuzzy| {
            let m = Match::parse(Key::PatientName, v, ',').unwrap().unwrap();
            let q = Query {
                level: Level::Study,
                keys: vec![(Key::PatientName, m)],
                fuzzy,
                limit: 10,
                offset: 0,
            };
            async move {
                match NameProbe::of(index, &q).await.unwrap() {
                    Some(probe) => probe.few(index).await.unwrap(),
                    None => false,
                }
            }
        };
        // A common prefix: studies walked newest first, stopping at the limit.
        assert!(!plan("Wang*", false).await);
        let newest: Vec<String> = names(index, "wang*", false, 3).await;
        assert_eq!(
            newest,
            [
                "Wang^XiaoDong=王^小东=wang^xiao dong",
                "Wang^Given1099",
                "Wang^Given1098"
            ]
        );
        assert_eq!(names(index, "WANG*", false, 5000).await.len(), WANGS + 1);
        // A rare prefix: from its patients, same order.
        assert!(plan("wang^given000*", false).await);
        let rare = names(index, "wang^given000*", false, 100).await;
        let expected: Vec<String> = (0..10).rev().map(|n| format!("Wang^Given{n:04}")).collect();
        assert_eq!(rare, expected);
        assert_eq!(names(index, "wang^given000?", false, 100).await, expected);
        // Exact, case-insensitive beyond ASCII (SQLite's LOWER folds ASCII only).
        assert_eq!(
            names(index, "müller^émile", false, 10).await,
            ["MÜLLER^ÉMILE"]
        );
        assert_eq!(names(index, "Müll*", false, 10).await, ["MÜLLER^ÉMILE"]);
        // Groups: the ideographic group alone, group by group, and a wrong pairing.
        let xiao = ["Wang^XiaoDong=王^小东=wang^xiao dong"];
        assert_eq!(names(index, "王^小东", false, 10).await, xiao);
        assert_eq!(names(index, "王*", false, 10).await, xiao);
        assert_eq!(names(index, "=王^小东", false, 10).await, xiao);
        assert_eq!(names(index, "wang^xiaodong=王^小东", false, 10).await, xiao);
        assert!(names(index, "li^wei=王^小东", false, 10).await.is_empty());
        // Fuzzy: a component or word that starts with the value.
        assert_eq!(names(index, "xiao", true, 10).await, xiao);
        assert_eq!(names(index, "DONG", true, 10).await, xiao);
        assert_eq!(names(index, "小", true, 10).await, xiao);
        assert_eq!(names(index, "émi", true, 10).await, ["MÜLLER^ÉMILE"]);
        assert!(names(index, "xiao", false, 10).await.is_empty());
        // A leading wildcard has no prefix to look up, and still matches.
        assert!(!plan("*wei", false).await);
        assert_eq!(names(index, "*wei", false, 10).await, ["Li^Wei"]);
        // LIKE's own metacharacters are literal.
        assert!(names(index, "li%", false, 10).await.is_empty());
        assert!(names(index, "l_^wei", false, 10).await.is_empty());
        // A later instance renames the patient: the keys follow.
        let mut renamed = instance(WANGS + 3, "L1", "Li^Wen", WANGS as i64 + 3);
        renamed.attrs.study_instance_uid = format!("1.2.826.0.1.3680043.10.543.1.{}", WANGS + 2);
        index.insert_instance(renamed).await.unwrap();
        assert!(names(index, "li^wei", false, 10).await.is_empty());
        assert_eq!(names(index, "li^wen", false, 10).await, ["Li^Wen"]);
        exact_names_with_few_and_many_patients(index).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn name_matching_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("index.db").display());
        let index = Index::open(&url).await.unwrap();
        name_matching_contract(&index).await;
        index.close().await;
    }

    /// Rows written before the keys existed get them when the index is opened.
    #[tokio::test(flavor = "multi_thread")]
    async fn keys_are_made_for_old_rows_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("index.db").display());
        let index = Index::open(&url).await.unwrap();
        index
            .insert_instance(instance(1, "O1", "Old^Name", 1))
            .await
            .unwrap();
        sqlx::query("DELETE FROM patient_name_keys")
            .execute(index.pool())
            .await
            .unwrap();
        sqlx::query("UPDATE patients SET name_keys_source = NULL")
            .execute(index.pool())
            .await
            .unwrap();
        assert!(names(&index, "old*", false, 10).await.is_empty());
        index.close().await;
        let index = Index::open(&url).await.unwrap();
        assert_eq!(names(&index, "old*", false, 10).await, ["Old^Name"]);
        index.close().await;
    }

    /// On PostgreSQL (a fresh database on the server scripts/test.sh starts): required
    /// unless PACS_TEST_ALLOW_NO_POSTGRES=1.
    #[tokio::test(flavor = "multi_thread")]
    async fn name_matching_on_postgres() {
        let Some(url) = crate::test_postgres::fresh_database("name matching").await else {
            return;
        };
        let index = Index::open(&url).await.unwrap();
        name_matching_contract(&index).await;
        index.close().await;
        crate::test_postgres::drop_database(&url).await;
    }
}
