//! Patient-name search keys: the lower-cased forms of a patient's name that PatientName
//! matching (`crate::query`) looks up through an index instead of scanning every patient.
//!
//! Per patient, table `patient_name_keys` holds (migration 0010):
//! - [`WHOLE`]: the whole value as stored (`Wang^XiaoDong=王^小东`);
//! - [`ALPHABETIC`], [`IDEOGRAPHIC`], [`PHONETIC`]: each group on its own;
//! - [`COMPONENT`]: every suffix of the whole value that starts a component, group or word
//!   (after `^`, `=` or a space), for fuzzy matching ("a component starts with …").
//!
//! Lower-casing is Rust's (full Unicode), done once here for the keys and once in the query
//! for the value, so both sides agree — SQLite's own `LOWER` folds ASCII only.
//! `patients.name_keys_source` holds the names the keys were made from ([`source`]); the
//! writer remakes the keys whenever an instance changes a patient's name, and [`backfill`]
//! makes them for rows written before the keys existed.

use std::collections::BTreeSet;

use sqlx::{Any, AnyPool, Row as _, Transaction};

use crate::Result;

pub const WHOLE: i64 = 0;
pub const ALPHABETIC: i64 = 1;
pub const IDEOGRAPHIC: i64 = 2;
pub const PHONETIC: i64 = 3;
pub const COMPONENT: i64 = 4;

/// The stored names of a patient: the whole value and its three groups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredNames {
    pub whole: Option<String>,
    pub alphabetic: Option<String>,
    pub ideographic: Option<String>,
    pub phonetic: Option<String>,
}

/// What `name_keys_source` records for `names`: the four values, each prefixed by its
/// length so that no two different sets of names give the same text.
pub fn source(names: &StoredNames) -> String {
    let mut out = String::new();
    for v in [
        &names.whole,
        &names.alphabetic,
        &names.ideographic,
        &names.phonetic,
    ] {
        match v {
            Some(v) => {
                out.push_str(&v.len().to_string());
                out.push(':');
                out.push_str(v);
            }
            None => out.push('-'),
        }
        out.push(';');
    }
    out
}

/// The search keys of `names`, without duplicates.
pub fn keys(names: &StoredNames) -> BTreeSet<(i64, String)> {
    let mut keys = BTreeSet::new();
    let mut add = |kind: i64, v: &Option<String>| {
        if let Some(v) = v.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            keys.insert((kind, v.to_lowercase()));
        }
    };
    add(WHOLE, &names.whole);
    add(ALPHABETIC, &names.alphabetic);
    add(IDEOGRAPHIC, &names.ideographic);
    add(PHONETIC, &names.phonetic);
    // Components: suffixes of the whole value and of each group, at the start and after
    // every separator.
    let mut texts: Vec<String> = Vec::new();
    for v in [
        &names.whole,
        &names.alphabetic,
        &names.ideographic,
        &names.phonetic,
    ]
    .into_iter()
    .flatten()
    {
        texts.push(v.to_lowercase());
    }
    for text in &texts {
        let starts = std::iter::once(0).chain(
            text.char_indices()
                .filter(|(_, c)| matches!(c, '^' | '=' | ' '))
                .map(|(i, c)| i + c.len_utf8()),
        );
        for start in starts {
            let suffix = text[start..].trim();
            if !suffix.is_empty() {
                keys.insert((COMPONENT, suffix.to_owned()));
            }
        }
    }
    keys
}

/// Makes the keys of patient `patient_ref` match `names`, if they were made from other
/// names (`current_source`); a no-op when the names have not changed.
pub(crate) async fn refresh(
    tx: &mut Transaction<'static, Any>,
    patient_ref: i64,
    names: &StoredNames,
    current_source: Option<&str>,
) -> Result<()> {
    let wanted = source(names);
    if current_source == Some(wanted.as_str()) {
        return Ok(());
    }
    sqlx::query("DELETE FROM patient_name_keys WHERE patient_ref = $1")
        .bind(patient_ref)
        .execute(&mut **tx)
        .await?;
    for (kind, key) in keys(names) {
        sqlx::query(
            "INSERT INTO patient_name_keys (patient_ref, kind, name_key) VALUES ($1, $2, $3)",
        )
        .bind(patient_ref)
        .bind(kind)
        .bind(key)
        .execute(&mut **tx)
        .await?;
    }
    sqlx::query("UPDATE patients SET name_keys_source = $1 WHERE id = $2")
        .bind(wanted)
        .bind(patient_ref)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Makes the keys of every patient that has none yet (rows from before migration 0010, or
/// written straight into the index), in batches. Returns how many patients it did.
pub(crate) async fn backfill(pool: &AnyPool) -> Result<u64> {
    const BATCH: i64 = 2000;
    let mut done = 0;
    loop {
        let rows = sqlx::query(
            "SELECT id, patient_name, name_alphabetic, name_ideographic, name_phonetic \
             FROM patients WHERE name_keys_source IS NULL ORDER BY id LIMIT $1",
        )
        .bind(BATCH)
        .fetch_all(pool)
        .await?;
        if rows.is_empty() {
            return Ok(done);
        }
        let mut tx = pool.begin().await?;
        for r in &rows {
            let names = StoredNames {
                whole: r.try_get(1)?,
                alphabetic: r.try_get(2)?,
                ideographic: r.try_get(3)?,
                phonetic: r.try_get(4)?,
            };
            refresh(&mut tx, r.try_get(0)?, &names, None).await?;
        }
        tx.commit().await?;
        done += rows.len() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(whole: &str) -> StoredNames {
        let mut groups = whole
            .split('=')
            .map(|g| Some(g.to_owned()).filter(|g| !g.is_empty()));
        StoredNames {
            whole: Some(whole.to_owned()),
            alphabetic: groups.next().flatten(),
            ideographic: groups.next().flatten(),
            phonetic: groups.next().flatten(),
        }
    }

    #[test]
    fn keys_of_a_chinese_name() {
        let k = keys(&names("Wang^XiaoDong=王^小东=wang^xiao dong"));
        let has = |kind, v: &str| k.contains(&(kind, v.to_owned()));
        assert!(has(WHOLE, "wang^xiaodong=王^小东=wang^xiao dong"));
        assert!(has(ALPHABETIC, "wang^xiaodong"));
        assert!(has(IDEOGRAPHIC, "王^小东"));
        assert!(has(PHONETIC, "wang^xiao dong"));
        // Fuzzy: every component and word start.
        assert!(has(COMPONENT, "xiaodong=王^小东=wang^xiao dong"));
        assert!(has(COMPONENT, "xiaodong"));
        assert!(has(COMPONENT, "小东"));
        assert!(has(COMPONENT, "dong"));
        assert!(has(COMPONENT, "王^小东=wang^xiao dong"));
        assert!(!k.iter().any(|(_, v)| v.is_empty()));
    }

    #[test]
    fn lower_cases_beyond_ascii() {
        let k = keys(&names("MÜLLER^ÉMILE"));
        assert!(k.contains(&(WHOLE, "müller^émile".to_owned())));
        assert!(k.contains(&(COMPONENT, "émile".to_owned())));
    }

    #[test]
    fn source_tells_names_apart() {
        let a = StoredNames {
            whole: Some("a;b".into()),
            ..Default::default()
        };
        let b = StoredNames {
            whole: Some("a".into()),
            alphabetic: Some("b".into()),
            ..Default::default()
        };
        assert_ne!(source(&a), source(&b));
        assert_eq!(source(&a), source(&a.clone()));
        assert!(keys(&StoredNames::default()).is_empty());
    }
}
