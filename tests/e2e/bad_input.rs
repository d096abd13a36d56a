//! Hostile and broken input: malformed data sets, lying UIDs, path characters, oversized
//! objects and PDUs, silent or babbling peers, unknown AE titles. Every refusal must carry
//! the defined status, leave nothing behind (index, object store, staging area), be named
//! in the log, and leave the server serving.
//!
//! Malformed data sets are made from committed samples: their meta group is kept (or a new
//! one written) and the data set bytes are edited. They are sent with pynetdicom in its
//! chunked mode ([`pynetdicom_store`]), which puts the file's data set bytes on the wire
//! as they are.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::per_backend;
use crate::support::*;

const AE: &str = "BAD_INPUT_SCU";
const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
const MR: &str = "1.2.840.10008.5.1.4.1.1.4";
const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";

const SUCCESS: u16 = 0x0000;
const WARNING: u16 = 0xB000;
const OUT_OF_RESOURCES: u16 = 0xA700;
const DOES_NOT_MATCH: u16 = 0xA900;
const CANNOT_UNDERSTAND: u16 = 0xC000;
const SOP_CLASS_NOT_SUPPORTED: u16 = 0x0122;

// ---------------------------------------------------------------------------------
// Data set surgery (top level, little endian, defined lengths: what the samples use).

#[derive(Debug, Clone, Copy)]
struct El {
    tag: (u16, u16),
    /// Offset of the element's first byte (its tag).
    start: usize,
    /// Offset of the length field.
    len_at: usize,
    /// Width of the length field (2 or 4).
    len_width: usize,
    value_start: usize,
    value_end: usize,
}

fn long_length_vr(vr: &[u8]) -> bool {
    matches!(
        vr,
        b"OB"
            | b"OD"
            | b"OF"
            | b"OL"
            | b"OV"
            | b"OW"
            | b"SQ"
            | b"SV"
            | b"UC"
            | b"UN"
            | b"UR"
            | b"UT"
            | b"UV"
    )
}

/// The top-level elements of a data set.
fn elements(ds: &[u8], explicit: bool) -> Vec<El> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < ds.len() {
        let tag = (
            u16::from_le_bytes([ds[pos], ds[pos + 1]]),
            u16::from_le_bytes([ds[pos + 2], ds[pos + 3]]),
        );
        let (len_at, len_width) = if !explicit {
            (pos + 4, 4)
        } else if long_length_vr(&ds[pos + 4..pos + 6]) {
            (pos + 8, 4)
        } else {
            (pos + 6, 2)
        };
        let len = if len_width == 4 {
            u32::from_le_bytes(ds[len_at..len_at + 4].try_into().unwrap()) as usize
        } else {
            u16::from_le_bytes(ds[len_at..len_at + 2].try_into().unwrap()) as usize
        };
        assert_ne!(
            len, 0xFFFF_FFFF,
            "undefined length in a sample: the walker does not handle it"
        );
        let value_start = len_at + len_width;
        out.push(El {
            tag,
            start: pos,
            len_at,
            len_width,
            value_start,
            value_end: value_start + len,
        });
        pos = value_start + len;
    }
    assert_eq!(
        pos,
        ds.len(),
        "data set does not end on an element boundary"
    );
    out
}

fn element(ds: &[u8], explicit: bool, tag: (u16, u16)) -> El {
    elements(ds, explicit)
        .into_iter()
        .find(|e| e.tag == tag)
        .unwrap_or_else(|| panic!("no element {tag:04X?} in the sample"))
}

/// The data set with `bytes` inserted before the first element whose tag is >= `tag`.
fn insert_before(ds: &[u8], explicit: bool, tag: (u16, u16), bytes: &[u8]) -> Vec<u8> {
    let at = elements(ds, explicit)
        .into_iter()
        .find(|e| e.tag >= tag)
        .map(|e| e.start)
        .unwrap_or(ds.len());
    [&ds[..at], bytes, &ds[at..]].concat()
}

fn remove(ds: &[u8], explicit: bool, tag: (u16, u16)) -> Vec<u8> {
    let e = element(ds, explicit, tag);
    [&ds[..e.start], &ds[e.value_end..]].concat()
}

/// Replaces the value of an explicit VR LE element with a short length (UI, LO…): the new
/// value is padded to even length with `pad`.
fn replace_value(ds: &[u8], tag: (u16, u16), value: &[u8], pad: u8) -> Vec<u8> {
    let e = element(ds, true, tag);
    assert_eq!(e.len_width, 2);
    let mut v = value.to_vec();
    if v.len() % 2 == 1 {
        v.push(pad);
    }
    let mut out = ds[..e.len_at].to_vec();
    out.extend_from_slice(&(v.len() as u16).to_le_bytes());
    out.extend_from_slice(&v);
    out.extend_from_slice(&ds[e.value_end..]);
    out
}

/// Explicit VR LE element with a short (2-byte) length.
fn ex_short(group: u16, elem: u16, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
    assert_eq!(value.len() % 2, 0);
    let mut out = Vec::new();
    out.extend_from_slice(&group.to_le_bytes());
    out.extend_from_slice(&elem.to_le_bytes());
    out.extend_from_slice(vr);
    out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    out.extend_from_slice(value);
    out
}

/// Explicit VR LE element header with a 4-byte length (OB, SQ, UN…).
fn ex_long_header(group: u16, elem: u16, vr: &[u8; 2], len: u32) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&group.to_le_bytes());
    out.extend_from_slice(&elem.to_le_bytes());
    out.extend_from_slice(vr);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&len.to_le_bytes());
    out
}

/// Implicit VR LE element header (also items and delimiters).
fn im_header(group: u16, elem: u16, len: u32) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&group.to_le_bytes());
    out.extend_from_slice(&elem.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out
}

const UNDEFINED: u32 = 0xFFFF_FFFF;

fn item_start() -> Vec<u8> {
    im_header(0xFFFE, 0xE000, UNDEFINED)
}
fn item_end() -> Vec<u8> {
    im_header(0xFFFE, 0xE00D, 0)
}
fn sequence_end() -> Vec<u8> {
    im_header(0xFFFE, 0xE0DD, 0)
}

/// Private creator (0029,0010) "PACS E2E": elements (0029,10xx) follow it.
fn private_creator() -> Vec<u8> {
    ex_short(0x0029, 0x0010, b"LO", b"PACS E2E")
}

/// A committed sample: its meta group (with preamble) and its data set.
struct Sample {
    head: Vec<u8>,
    dataset: Vec<u8>,
    sop_instance_uid: String,
}

fn sample(name: &str) -> Sample {
    let bytes = std::fs::read(sample_dir().join(name)).unwrap();
    let meta = pacs_store::header::read_file_meta(&mut std::io::Cursor::new(&bytes)).unwrap();
    let at = meta.dataset_offset as usize;
    Sample {
        head: bytes[..at].to_vec(),
        dataset: bytes[at..].to_vec(),
        sop_instance_uid: meta.media_storage_sop_instance_uid,
    }
}

impl Sample {
    /// The sample's own meta group followed by `dataset`.
    fn with_dataset(&self, dataset: &[u8]) -> Vec<u8> {
        [&self.head[..], dataset].concat()
    }
}

// ---------------------------------------------------------------------------------
// The archive under attack.

#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    instances: i64,
    conflicts: i64,
    /// Keys the object store lists (files or S3).
    keys: Vec<String>,
    /// Files under <data_dir>/objects (anything, not only valid keys).
    object_files: Vec<PathBuf>,
    staging: usize,
}

struct Fixture {
    archive: TestArchive,
    server: Server,
    work: tempfile::TempDir,
}

impl Fixture {
    fn new(backend: Backend) -> Self {
        Self::with(TestArchive::new(backend))
    }

    fn with(archive: TestArchive) -> Self {
        archive.add_clinic("Bad Input Clinic", AE, None);
        let server = archive.start();
        let work = tempfile::Builder::new()
            .prefix("pacs-bad-input-")
            .tempdir()
            .unwrap();
        Fixture {
            archive,
            server,
            work,
        }
    }

    fn snapshot(&self) -> Snapshot {
        let stats = self.archive.stats();
        Snapshot {
            instances: stats["instances"].as_i64().unwrap(),
            conflicts: stats["conflicts"].as_i64().unwrap(),
            keys: stored_object_keys(&self.archive),
            object_files: object_files(&self.archive),
            staging: self.archive.staging_files(),
        }
    }

    /// Writes `bytes` as a file to send.
    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.work.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// Sends the files on one association (data sets as they are), expecting it to be set up.
    fn send(&self, files: &[PathBuf]) -> ScuRun {
        let run = pynetdicom_store(self.server.dicom_port, AE, files, &[]);
        assert_eq!(
            run.association.as_deref(),
            Some("established"),
            "association not established: {run:?}\nserver log:\n{}",
            self.server.log()
        );
        assert_eq!(
            run.results.len(),
            files.len(),
            "one result per file expected: {run:?}"
        );
        run
    }

    fn statuses(run: &ScuRun) -> Vec<Option<u16>> {
        run.results.iter().map(|r| r.status).collect()
    }

    /// After refusals plus `stored_new` accepted new instances: nothing else stayed.
    fn assert_only_new(&self, before: &Snapshot, stored_new: &[&str]) {
        let after = self.snapshot();
        assert_eq!(after.staging, 0, "files left in the staging area");
        assert_eq!(
            after.instances,
            before.instances + stored_new.len() as i64,
            "instance count"
        );
        assert_eq!(after.conflicts, before.conflicts, "conflict count");
        let mut expected_keys = before.keys.clone();
        for uid in stored_new {
            let rec =
                instance_record(&self.archive, uid).unwrap_or_else(|| panic!("{uid} not indexed"));
            expected_keys.push(rec.object_key);
        }
        expected_keys.sort();
        assert_eq!(
            after.keys, expected_keys,
            "objects in the store other than the accepted ones"
        );
        if self.archive.backend == Backend::SqliteFiles {
            let keys_as_files: Vec<PathBuf> = expected_keys
                .iter()
                .map(|k| self.archive.data_dir().join(k))
                .collect();
            assert_eq!(
                after.object_files, keys_as_files,
                "files under objects/ other than the accepted objects"
            );
        } else {
            assert!(
                after.object_files.is_empty(),
                "files under objects/ with S3 as the object store"
            );
        }
    }

    /// The log names the reason of each refusal: `needles` all appear in it.
    fn assert_log_mentions(&self, needles: &[&str]) {
        let log = self.server.log();
        for n in needles {
            assert!(
                log.contains(n),
                "the server log does not mention {n:?}:\n{log}"
            );
        }
    }

    /// The server answers a C-ECHO (dcmtk).
    fn assert_serves(&mut self) {
        assert!(
            self.server.is_running(),
            "the server died; log:\n{}",
            self.server.log()
        );
        let out = echoscu(self.server.dicom_port, AE, "REGIONAL_PACS");
        assert!(
            out.status.success(),
            "C-ECHO after the bad input failed: {}\n{}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.server.log()
        );
    }

    /// A valid, new instance to send after bad ones (ct_10: no test mutates it).
    fn good(&self) -> (PathBuf, String) {
        let p = sample_dir().join("ct_10.dcm");
        let uid = sop_instance_uid(&p);
        (p, uid)
    }
}

/// The statuses, the data set bytes of the good file and the archive's copy must agree.
fn assert_good_stored(f: &Fixture, path: &Path, uid: &str) {
    let stored = f
        .archive
        .stored(uid)
        .unwrap_or_else(|| panic!("{uid} not archived"));
    assert_eq!(
        stored.dataset,
        dataset_bytes(&std::fs::read(path).unwrap()),
        "stored data set differs"
    );
}

// ---------------------------------------------------------------------------------
// 1. Truncated data sets (per backend: nothing partial in S3/PostgreSQL either).

fn truncated_data_set_is_refused(backend: Backend) {
    let mut f = Fixture::new(backend);
    let s = sample("ct_01.dcm");
    let ds = &s.dataset;
    let name = element(ds, true, (0x0010, 0x0010));
    let serial = element(ds, true, (0x0018, 0x1000));
    let instance_number = element(ds, true, (0x0020, 0x0013));
    let cases = [
        ("mid-value-wanted", name.value_start + 3),
        ("mid-value-skipped", serial.value_start + 5),
        ("mid-header-length", instance_number.start + 6),
        ("mid-header-tag", instance_number.start + 2),
    ];
    let mut files: Vec<PathBuf> = cases
        .iter()
        .map(|(n, cut)| f.file(&format!("trunc-{n}.dcm"), &s.with_dataset(&ds[..*cut])))
        .collect();
    let (good, good_uid) = f.good();
    files.push(good.clone());
    let before = f.snapshot();
    let run = f.send(&files);
    assert_eq!(
        Fixture::statuses(&run),
        vec![
            Some(CANNOT_UNDERSTAND),
            Some(CANNOT_UNDERSTAND),
            Some(CANNOT_UNDERSTAND),
            Some(CANNOT_UNDERSTAND),
            Some(SUCCESS)
        ],
        "{run:?}"
    );
    assert!(f.archive.stored(&s.sop_instance_uid).is_none());
    f.assert_only_new(&before, &[&good_uid]);
    assert_good_stored(&f, &good, &good_uid);
    f.assert_log_mentions(&["C-STORE refused", "truncated"]);
    f.assert_serves();
}
per_backend!(truncated_data_set_is_refused);

/// Pixel Data cut short, or announcing more bytes than follow: the object is broken even
/// though its header reads fine. Storing it and answering success would let the modality
/// delete the only good copy.
#[test]
fn truncated_or_overlong_pixel_data_is_refused() {
    let mut f = Fixture::new(Backend::SqliteFiles);
    let s = sample("ct_02.dcm");
    let ds = &s.dataset;
    let px = element(ds, true, (0x7FE0, 0x0010));
    assert!(px.value_end - px.value_start > 1000);
    let cut = f.file(
        "pixel-cut.dcm",
        &s.with_dataset(&ds[..px.value_start + (px.value_end - px.value_start) / 2]),
    );
    let mut overlong = ds.clone();
    overlong[px.len_at..px.len_at + 4].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    let overlong = f.file("pixel-overlong.dcm", &s.with_dataset(&overlong));
    let (good, good_uid) = f.good();
    let before = f.snapshot();
    let run = f.send(&[cut, overlong, good.clone()]);
    assert_eq!(
        Fixture::statuses(&run),
        vec![
            Some(CANNOT_UNDERSTAND),
            Some(CANNOT_UNDERSTAND),
            Some(SUCCESS)
        ],
        "a data set whose Pixel Data is cut short / announces 0xFFFFFFF0 bytes was not refused: {run:?}"
    );
    assert!(
        f.archive.stored(&s.sop_instance_uid).is_none(),
        "a truncated image is archived"
    );
    f.assert_only_new(&before, &[&good_uid]);
    f.assert_log_mentions(&["C-STORE refused"]);
    f.assert_serves();
}

// ---------------------------------------------------------------------------------
// 2. Bogus lengths.

#[test]
fn bogus_length_is_refused() {
    let mut f = Fixture::new(Backend::SqliteFiles);
    let bogus = 0xFFFF_FFF0u32.to_le_bytes();
    // Implicit VR: every element has a 4-byte length.
    let sc = sample("sc_rgb_implicit.dcm");
    let mut skipped = sc.dataset.clone();
    let manufacturer = element(&skipped, false, (0x0008, 0x0070));
    skipped[manufacturer.len_at..manufacturer.len_at + 4].copy_from_slice(&bogus);
    let mut wanted = sc.dataset.clone();
    let name = element(&wanted, false, (0x0010, 0x0010));
    wanted[name.len_at..name.len_at + 4].copy_from_slice(&bogus);
    // Explicit VR: a private OB element (4-byte length) claiming 0xFFFFFFF0 bytes.
    let ct = sample("ct_03.dcm");
    let mut private = private_creator();
    private.extend(ex_long_header(0x0029, 0x1010, b"OB", 0xFFFF_FFF0));
    private.extend_from_slice(b"only a few bytes");
    let explicit = insert_before(&ct.dataset, true, (0x0029, 0x0000), &private);
    let files = vec![
        f.file("bogus-implicit-skipped.dcm", &sc.with_dataset(&skipped)),
        f.file("bogus-implicit-wanted.dcm", &sc.with_dataset(&wanted)),
        f.file("bogus-explicit-ob.dcm", &ct.with_dataset(&explicit)),
        f.good().0,
    ];
    let before = f.snapshot();
    let run = f.send(&files);
    assert_eq!(
        Fixture::statuses(&run),
        vec![
            Some(CANNOT_UNDERSTAND),
            Some(CANNOT_UNDERSTAND),
            Some(CANNOT_UNDERSTAND),
            Some(SUCCESS)
        ],
        "{run:?}"
    );
    assert!(f.archive.stored(&sc.sop_instance_uid).is_none());
    assert!(f.archive.stored(&ct.sop_instance_uid).is_none());
    f.assert_only_new(&before, &[&f.good().1]);
    f.assert_log_mentions(&["C-STORE refused", "truncated", "value too large"]);
    f.assert_serves();
}

// ---------------------------------------------------------------------------------
// 3. Unknown VR.

#[test]
fn unknown_vr_is_refused() {
    let mut f = Fixture::new(Backend::SqliteFiles);
    let s = sample("ct_04.dcm");
    let mut zz = s.dataset.clone();
    let manufacturer = element(&zz, true, (0x0008, 0x0070));
    zz[manufacturer.start + 4..manufacturer.start + 6].copy_from_slice(b"ZZ");
    let mut nul = s.dataset.clone();
    let name = element(&nul, true, (0x0010, 0x0010));
    nul[name.start + 4..name.start + 6].copy_from_slice(&[0, 0]);
    let files = vec![
        f.file("vr-zz.dcm", &s.with_dataset(&zz)),
        f.file("vr-nul.dcm", &s.with_dataset(&nul)),
        f.good().0,
    ];
    let before = f.snapshot();
    let run = f.send(&files);
    assert_eq!(
        Fixture::statuses(&run),
        vec![
            Some(CANNOT_UNDERSTAND),
            Some(CANNOT_UNDERSTAND),
            Some(SUCCESS)
        ],
        "{run:?}"
    );
    assert!(f.archive.stored(&s.sop_instance_uid).is_none());
    f.assert_only_new(&before, &[&f.good().1]);
    f.assert_log_mentions(&["C-STORE refused", "unknown VR \"ZZ\""]);
    f.assert_serves();
}

// ---------------------------------------------------------------------------------
// 4. Deeply nested sequences.

/// A private sequence (0029,1010) nested `levels` deep, all of undefined length.
fn nested_sequences(levels: usize) -> Vec<u8> {
    let mut out = private_creator();
    for _ in 0..levels {
        out.extend(ex_long_header(0x0029, 0x1010, b"SQ", UNDEFINED));
        out.extend(item_start());
    }
    out.extend(ex_short(0x0029, 0x1011, b"LO", b"deepest "));
    for _ in 0..levels {
        out.extend(item_end());
        out.extend(sequence_end());
    }
    out
}

#[test]
fn hundred_nested_sequences_are_refused() {
    let mut f = Fixture::new(Backend::SqliteFiles);
    let deep = sample("ct_05.dcm");
    let deep_ds = insert_before(
        &deep.dataset,
        true,
        (0x0029, 0x0000),
        &nested_sequences(100),
    );
    // Control: the same construction 10 levels deep is a valid image and is archived.
    let shallow = sample("ct_06.dcm");
    let shallow_ds = insert_before(
        &shallow.dataset,
        true,
        (0x0029, 0x0000),
        &nested_sequences(10),
    );
    let files = vec![
        f.file("nested-100.dcm", &deep.with_dataset(&deep_ds)),
        f.file("nested-10.dcm", &shallow.with_dataset(&shallow_ds)),
    ];
    let before = f.snapshot();
    let run = f.send(&files);
    assert_eq!(
        Fixture::statuses(&run),
        vec![Some(CANNOT_UNDERSTAND), Some(SUCCESS)],
        "{run:?}"
    );
    assert!(f.archive.stored(&deep.sop_instance_uid).is_none());
    f.assert_only_new(&before, &[&shallow.sop_instance_uid]);
    assert_eq!(
        f.archive.stored(&shallow.sop_instance_uid).unwrap().dataset,
        shallow_ds
    );
    f.assert_log_mentions(&["C-STORE refused", "nested deeper than"]);
    f.assert_serves();
}

// ---------------------------------------------------------------------------------
// 5. CP-246: a private UN element of undefined length holding an implicit VR sequence.

#[test]
fn private_un_of_undefined_length_is_archived() {
    let mut f = Fixture::new(Backend::SqliteFiles);
    let s = sample("ct_07.dcm");
    let mut un = private_creator();
    un.extend(ex_long_header(0x0029, 0x1010, b"UN", UNDEFINED));
    un.extend(item_start());
    un.extend(im_header(0x0029, 0x1001, 8));
    un.extend_from_slice(b"VENDOR01");
    un.extend(im_header(0x0029, 0x1002, UNDEFINED)); // implicit VR sequence inside
    un.extend(item_start());
    un.extend(im_header(0x0029, 0x1003, 4));
    un.extend_from_slice(b"1234");
    un.extend(item_end());
    un.extend(sequence_end());
    un.extend(item_end());
    un.extend(sequence_end());
    un.extend(ex_short(0x0029, 0x1020, b"LO", b"after the UN"));
    let ds = insert_before(&s.dataset, true, (0x0029, 0x0000), &un);
    let file = f.file("cp246.dcm", &s.with_dataset(&ds));
    let before = f.snapshot();
    let run = f.send(&[file]);
    assert_eq!(
        Fixture::statuses(&run),
        vec![Some(SUCCESS)],
        "an image with a CP-246 UN element was refused: {run:?}"
    );
    f.assert_only_new(&before, &[&s.sop_instance_uid]);
    let stored = f.archive.stored(&s.sop_instance_uid).unwrap();
    assert_eq!(
        stored.dataset, ds,
        "the archived data set is not the one sent"
    );
    assert_eq!(stored.patient_id, "TS-0001");
    assert_eq!(stored.issuer, "CLINIC-A");
    let rec = instance_record(&f.archive, &s.sop_instance_uid).unwrap();
    assert_eq!(rec.sop_class_uid, CT);
    assert!(!f.server.log().contains("C-STORE refused"));
    f.assert_serves();
}

// ---------------------------------------------------------------------------------
// 6./7. Data sets that do not match the command, or lack their identity.

#[test]
fn data_set_not_matching_the_command_is_refused() {
    let mut f = Fixture::new(Backend::SqliteFiles);
    // The command (from the meta) says CT; the data set says MR.
    let a = sample("ct_08.dcm");
    let other_class = replace_value(&a.dataset, (0x0008, 0x0016), MR.as_bytes(), 0);
    // Same class, other SOP Instance UID in the data set.
    let b = sample("ct_09.dcm");
    let mut uid = b.sop_instance_uid.clone().into_bytes();
    *uid.last_mut().unwrap() = if *uid.last().unwrap() == b'1' {
        b'2'
    } else {
        b'1'
    };
    let other_instance = replace_value(&b.dataset, (0x0008, 0x0018), &uid, 0);
    let files = vec![
        f.file("class-mismatch.dcm", &a.with_dataset(&other_class)),
        f.file("instance-mismatch.dcm", &b.with_dataset(&other_instance)),
        f.good().0,
    ];
    let before = f.snapshot();
    let run = f.send(&files);
    assert_eq!(
        Fixture::statuses(&run),
        vec![Some(DOES_NOT_MATCH), Some(DOES_NOT_MATCH), Some(SUCCESS)],
        "{run:?}"
    );
    assert!(f.archive.stored(&a.sop_instance_uid).is_none());
    assert!(f.archive.stored(&b.sop_instance_uid).is_none());
    assert!(
        f.archive
            .stored(std::str::from_utf8(&uid).unwrap())
            .is_none()
    );
    f.assert_only_new(&before, &[&f.good().1]);
    f.assert_log_mentions(&[
        "C-STORE refused",
        &format!("SOP Class UID in the data set is {MR} but {CT} was declared"),
        "SOP Instance UID in the data set is",
    ]);
    f.assert_serves();
}

#[test]
fn data_set_without_its_uids_is_refused() {
    let mut f = Fixture::new(Backend::SqliteFiles);
    let s = sample("ct_01.dcm");
    let no_sop = remove(&s.dataset, true, (0x0008, 0x0018));
    let no_study = remove(&s.dataset, true, (0x0020, 0x000D));
    let files = vec![
        f.file("no-sop-instance.dcm", &s.with_dataset(&no_sop)),
        f.file("no-study-instance.dcm", &s.with_dataset(&no_study)),
        f.good().0,
    ];
    let before = f.snapshot();
    let run = f.send(&files);
    assert_eq!(
        Fixture::statuses(&run),
        vec![Some(DOES_NOT_MATCH), Some(DOES_NOT_MATCH), Some(SUCCESS)],
        "{run:?}"
    );
    assert!(f.archive.stored(&s.sop_instance_uid).is_none());
    f.assert_only_new(&before, &[&f.good().1]);
    f.assert_log_mentions(&[
        "C-STORE refused",
        "lacks SOPInstanceUID",
        "lacks StudyInstanceUID",
    ]);
    f.assert_serves();
}

// ---------------------------------------------------------------------------------
// 8./9. Path characters in UIDs and in text.

#[test]
fn affected_sop_instance_uid_with_path_characters_is_refused() {
    let mut f = Fixture::new(Backend::SqliteFiles);
    let s = sample("ct_02.dcm");
    let tag = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let escape = format!("pacs-escape-{tag}");
    let uids = [
        "../../etc/passwd".to_string(),
        format!("../{escape}"),
        format!("../../{escape}"),
        format!("/tmp/{escape}"),
        format!("objects/../../{escape}"),
    ];
    let files: Vec<PathBuf> = uids
        .iter()
        .enumerate()
        .map(|(i, u)| {
            f.file(
                &format!("path-uid-{i}.dcm"),
                &part10(CT, u, EXPLICIT_LE, &s.dataset),
            )
        })
        .collect();
    let passwd_before = std::fs::metadata("/etc/passwd")
        .ok()
        .map(|m| (m.len(), m.modified().ok()));
    let before = f.snapshot();
    let run = f.send(&files);
    assert_eq!(
        run.results.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![Some(CANNOT_UNDERSTAND); uids.len()],
        "{run:?}"
    );
    for (r, u) in run.results.iter().zip(&uids) {
        assert_eq!(
            r.sop_instance_uid.as_deref(),
            Some(u.as_str()),
            "the sender did not use the hostile UID"
        );
    }
    f.assert_only_new(&before, &[]);
    // Nothing named after the UIDs anywhere near the data directory, nor in /tmp.
    let data = f.archive.data_dir().to_path_buf();
    let parent = data.parent().unwrap().to_path_buf();
    for p in [
        parent.join(&escape),
        data.join(&escape),
        Path::new("/tmp").join(&escape),
        parent.join("etc/passwd"),
        data.join("etc/passwd"),
    ] {
        assert!(!p.exists(), "{} was written", p.display());
    }
    for p in files_under(&data) {
        let s = p.to_string_lossy();
        assert!(
            !s.contains(&escape) && !s.contains("passwd"),
            "{s} in the data directory"
        );
    }
    let passwd_after = std::fs::metadata("/etc/passwd")
        .ok()
        .map(|m| (m.len(), m.modified().ok()));
    assert_eq!(passwd_before, passwd_after, "/etc/passwd changed");
    f.assert_log_mentions(&["Affected SOP Instance UID"]);
    f.assert_serves();
}

#[test]
fn hostile_text_is_stored_verbatim_under_a_generated_key() {
    let mut f = Fixture::new(Backend::SqliteFiles);
    let path = sample_dir().join("sc_rgb_implicit.dcm");
    let uid = sop_instance_uid(&path);
    let before = f.snapshot();
    let run = f.send(std::slice::from_ref(&path));
    assert_eq!(Fixture::statuses(&run), vec![Some(SUCCESS)], "{run:?}");
    f.assert_only_new(&before, &[&uid]);
    let stored = f.archive.stored(&uid).unwrap();
    assert_eq!(
        stored.dataset,
        dataset_bytes(&std::fs::read(&path).unwrap())
    );
    assert_eq!(
        stored.patient_name.as_deref(),
        Some("Test^<img src=x onerror=alert(1)>")
    );
    let key = instance_record(&f.archive, &uid).unwrap().object_key;
    let parts: Vec<&str> = key.split('/').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    assert!(
        parts.len() == 3
            && parts[0] == "objects"
            && hex(parts[1], 2)
            && parts[2].len() == 36
            && parts[2].ends_with(".dcm")
            && hex(&parts[2][..32], 32)
            && parts[2].starts_with(parts[1]),
        "object key {key:?} is not server-generated (objects/xx/<32 hex>.dcm)"
    );
    let files = files_under(f.archive.data_dir());
    assert!(files.contains(&f.archive.data_dir().join(&key)));
    for p in &files {
        let s = p.to_string_lossy();
        assert!(
            !s.contains("passwd") && !s.contains('<') && !s.contains("script"),
            "{s} named after DICOM text"
        );
    }
    f.assert_serves();
}

// ---------------------------------------------------------------------------------
// 10. Preamble polyglots through `pacs import`.

#[test]
fn import_of_a_preamble_polyglot() {
    let archive = TestArchive::new(Backend::SqliteFiles);
    let work = tempfile::tempdir().unwrap();
    let mut mz = [0u8; 128];
    mz[..2].copy_from_slice(b"MZ");
    for (i, b) in mz[2..].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37).wrapping_add(11);
    }
    let mut html = [b' '; 128];
    let snippet = b"<html><script>alert('polyglot')</script></html>";
    html[..snippet.len()].copy_from_slice(snippet);
    let mut written = Vec::new();
    for (name, preamble) in [("ct_03.dcm", mz), ("ct_04.dcm", html)] {
        let s = sample(name);
        let mut bytes = s.head.clone();
        bytes[..128].copy_from_slice(&preamble);
        let p = work.path().join(format!("polyglot-{name}"));
        std::fs::write(
            &p,
            bytes.iter().chain(&s.dataset).copied().collect::<Vec<u8>>(),
        )
        .unwrap();
        written.push((p, s, preamble));
    }
    let out = archive.pacs(&["import", "--quiet", work.path().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "import failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(
            "imported 2 new instances, 0 already archived, 0 kept as conflicts, 0 refused"
        ),
        "{stdout}"
    );
    for (path, s, preamble) in &written {
        let stored = archive.stored(&s.sop_instance_uid).expect("imported");
        assert_eq!(
            stored.dataset,
            s.dataset,
            "{}: data set changed",
            path.display()
        );
        assert_eq!(
            &stored.whole[128..s.head.len()],
            &s.head[128..],
            "{}: meta group changed",
            path.display()
        );
        // The preamble is free-form and has carried executables (PE/ELF polyglots,
        // CVE-2019-11687): the archive stores it zeroed.
        let kept = &stored.whole[..128];
        assert!(
            kept.iter().all(|b| *b == 0),
            "{}: preamble stored as {:?} (sent {:?})",
            path.display(),
            String::from_utf8_lossy(kept),
            String::from_utf8_lossy(preamble)
        );
    }
    assert!(archive.pacs(&["check"]).status.success());
}

// ---------------------------------------------------------------------------------
// 11. Objects over the size limit.

#[test]
fn object_over_the_size_limit_is_refused_and_the_association_goes_on() {
    let archive = TestArchive::new(Backend::SqliteFiles).with_env("PACS_MAX_OBJECT_SIZE", "100000");
    let mut f = Fixture::with(archive);
    let big = sample_dicom::write_ct_series(&f.work.path().join("big"), 1, 256, 256, 4711)
        .unwrap()
        .remove(0);
    let big_len = std::fs::metadata(&big).unwrap().len();
    assert!(big_len > 120_000, "{big_len}");
    let small = sample_dir().join("ct_01.dcm");
    let before = f.snapshot();
    let run = f.send(&[big.clone(), small.clone()]);
    assert_eq!(
        Fixture::statuses(&run),
        vec![Some(OUT_OF_RESOURCES), Some(SUCCESS)],
        "{run:?}"
    );
    assert!(f.archive.stored(&sop_instance_uid(&big)).is_none());
    f.assert_only_new(&before, &[&sop_instance_uid(&small)]);
    f.assert_log_mentions(&["larger than the maximum object size"]);
    f.assert_serves();
}

// ---------------------------------------------------------------------------------
// 12. Raw TCP: oversized PDU, silence, garbage.

/// Reads until the server closes (EOF or reset), for at most `limit`; returns the bytes
/// received and the time it took, or None if the connection stayed open.
fn wait_closed(s: &mut TcpStream, limit: Duration) -> Option<(Vec<u8>, Duration)> {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.checked_sub(start.elapsed())?;
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Some((got, start.elapsed())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None;
            }
            Err(_) => return Some((got, start.elapsed())), // reset
        }
    }
}

/// An A-ASSOCIATE-RQ proposing Verification.
fn associate_rq(calling: &str, called: &str) -> Vec<u8> {
    fn ae(s: &str) -> [u8; 16] {
        let mut a = [b' '; 16];
        a[..s.len()].copy_from_slice(s.as_bytes());
        a
    }
    fn item(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![kind, 0];
        v.extend_from_slice(&(body.len() as u16).to_be_bytes());
        v.extend_from_slice(body);
        v
    }
    let mut body = Vec::new();
    body.extend_from_slice(&1u16.to_be_bytes());
    body.extend_from_slice(&[0, 0]);
    body.extend_from_slice(&ae(called));
    body.extend_from_slice(&ae(calling));
    body.extend_from_slice(&[0u8; 32]);
    body.extend(item(0x10, b"1.2.840.10008.3.1.1.1"));
    let mut pc = vec![1, 0, 0, 0];
    pc.extend(item(0x30, b"1.2.840.10008.1.1"));
    pc.extend(item(0x40, b"1.2.840.10008.1.2"));
    body.extend(item(0x20, &pc));
    let mut user = item(0x51, &16384u32.to_be_bytes());
    user.extend(item(0x52, b"1.2.3.4.5.6"));
    body.extend(item(0x50, &user));
    let mut pdu = vec![0x01, 0];
    pdu.extend_from_slice(&(body.len() as u32).to_be_bytes());
    pdu.extend(body);
    pdu
}

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn oversized_pdu_silence_and_garbage_are_cut_off() {
    let archive = TestArchive::new(Backend::SqliteFiles).with_env("PACS_IDLE_TIMEOUT_SECONDS", "2");
    let mut f = Fixture::with(archive);
    let addr = ("127.0.0.1", f.server.dicom_port);

    // A PDU header announcing 0xFFFFFFF0 bytes, then as much data as the server takes.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&[0x01, 0x00, 0xFF, 0xFF, 0xFF, 0xF0]).unwrap();
    let start = Instant::now();
    let chunk = vec![0x41u8; 1 << 20];
    let mut sent = 0usize;
    while sent < 256 << 20 && start.elapsed() < Duration::from_secs(10) {
        match s.write(&chunk) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    assert!(
        sent < 64 << 20,
        "the server kept reading a PDU announced at 0xFFFFFFF0 bytes ({} MiB accepted in {:?})",
        sent >> 20,
        start.elapsed()
    );
    let closed = wait_closed(&mut s, Duration::from_secs(5));
    assert!(
        closed.is_some(),
        "connection still open after an oversized PDU"
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?} to cut the link",
        start.elapsed()
    );
    drop(s);
    f.assert_serves();

    // A valid A-ASSOCIATE-RQ, then silence: accepted, then aborted after the idle timeout.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&associate_rq(AE, "REGIONAL_PACS")).unwrap();
    let (got, took) = wait_closed(&mut s, Duration::from_secs(10))
        .expect("a silent peer was not cut off within 10 s");
    assert_eq!(
        got.first(),
        Some(&0x02),
        "expected an A-ASSOCIATE-AC first: {got:02X?}"
    );
    let ac_len = 6 + u32::from_be_bytes(got[2..6].try_into().unwrap()) as usize;
    assert_eq!(
        got.get(ac_len),
        Some(&0x07),
        "expected an A-ABORT after the idle timeout: {got:02X?}"
    );
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(6),
        "closed after {took:?}, idle timeout is 2 s"
    );
    drop(s);

    // Half an A-ASSOCIATE-RQ, then silence.
    let mut s = TcpStream::connect(addr).unwrap();
    let rq = associate_rq(AE, "REGIONAL_PACS");
    s.write_all(&rq[..rq.len() / 2]).unwrap();
    let (_, took) = wait_closed(&mut s, Duration::from_secs(10))
        .expect("a half-sent A-ASSOCIATE-RQ was not cut off within 10 s");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(6),
        "closed after {took:?}"
    );
    drop(s);

    // Connected, nothing sent.
    let mut s = TcpStream::connect(addr).unwrap();
    let (_, took) = wait_closed(&mut s, Duration::from_secs(10))
        .expect("a mute connection was not cut off within 10 s");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(6),
        "closed after {took:?}"
    );
    drop(s);

    // Garbage.
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for round in 0..5 {
        let mut garbage: Vec<u8> = (0..4096).map(|_| rng.next() as u8).collect();
        // Rounds 3 and 4: a plausible PDU header (A-ASSOCIATE-RQ, then P-DATA-TF before
        // any association) with a small length and a random body.
        if round >= 3 {
            garbage.truncate(6 + 300);
            garbage[..6].copy_from_slice(&[
                if round == 3 { 0x01 } else { 0x04 },
                0,
                0,
                0,
                0x01,
                0x2C,
            ]);
        }
        let mut s = TcpStream::connect(addr).unwrap();
        let _ = s.write_all(&garbage);
        let closed = wait_closed(&mut s, Duration::from_secs(8));
        assert!(
            closed.is_some(),
            "garbage round {round} ({:02X?}…): connection still open",
            &garbage[..8]
        );
    }
    f.assert_log_mentions(&["association set-up failed", "idle"]);
    f.assert_serves();
    // And a real store still works.
    let good = sample_dir().join("ct_01.dcm");
    let run = f.send(std::slice::from_ref(&good));
    assert_eq!(Fixture::statuses(&run), vec![Some(SUCCESS)], "{run:?}");
    assert_eq!(f.archive.staging_files(), 0);
}

// ---------------------------------------------------------------------------------
// 13. Calling and called AE titles.

#[test]
fn unknown_wrong_host_and_wrong_called_ae_are_refused() {
    let mut f = Fixture::new(Backend::SqliteFiles);
    f.archive
        .add_clinic("Bound Clinic", "BOUND_AE", Some("127.0.0.2"));
    let port = f.server.dicom_port;
    let refused = |out: &std::process::Output, needle: &str, what: &str| {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{what}: echoscu succeeded:\n{text}");
        assert!(
            text.to_lowercase().contains(needle),
            "{what}: no {needle:?} in:\n{text}"
        );
    };
    let out = echoscu(port, "NOT_REGISTERED", "REGIONAL_PACS");
    refused(&out, "calling ae title not recogni", "unknown calling AE");
    let out = echoscu(port, "BOUND_AE", "REGIONAL_PACS");
    refused(
        &out,
        "calling ae title not recogni",
        "host-bound AE from 127.0.0.1",
    );
    let out = echoscu(port, AE, "WRONG");
    refused(&out, "called ae title not recogni", "wrong called AE");
    f.assert_log_mentions(&[
        "unknown_calling_ae",
        "calling_ae_from_wrong_host",
        "called_ae_mismatch",
    ]);

    // The host-bound AE from its own address is accepted and can store.
    let good = sample_dir().join("ct_01.dcm");
    let run = pynetdicom_store(
        port,
        "BOUND_AE",
        std::slice::from_ref(&good),
        &["--bind-address", "127.0.0.2"],
    );
    assert_eq!(
        run.association.as_deref(),
        Some("established"),
        "{run:?}\n{}",
        f.server.log()
    );
    assert_eq!(Fixture::statuses(&run), vec![Some(SUCCESS)], "{run:?}");
    let rec = instance_record(&f.archive, &sop_instance_uid(&good)).unwrap();
    assert_eq!(rec.source_ae.as_deref(), Some("BOUND_AE"));
    // Refused callers left nothing.
    assert_eq!(f.archive.instance_count(), 1);
    f.assert_serves();
}

// ---------------------------------------------------------------------------------
// 14. Random mutations.

#[test]
fn random_mutations_get_defined_statuses() {
    let mut f = Fixture::new(Backend::SqliteFiles);
    let s = sample("ct_05.dcm");
    let ds = &s.dataset;
    let header_end = element(ds, true, (0x7FE0, 0x0010)).start + 12;
    let mut rng = XorShift(0x5EED_0000_1234_5678);
    let mut files = Vec::new();
    let mut kinds = Vec::new();
    for i in 0..20 {
        let mut m = ds.clone();
        // Aim most mutations at the header, where the parser is.
        let pos = |rng: &mut XorShift, len: usize| {
            if rng.below(4) == 0 {
                rng.below(len)
            } else {
                rng.below(header_end.min(len))
            }
        };
        let kind = rng.below(6);
        match kind {
            0 => {
                for _ in 0..1 + rng.below(8) {
                    let p = pos(&mut rng, m.len());
                    m[p] ^= 1 << rng.below(8);
                }
            }
            1 => {
                let p = pos(&mut rng, m.len() - 4);
                let v = [0xFFFF_FFF0u32, 0xFFFF_FFFF, 0x7FFF_FFFF, rng.next() as u32][rng.below(4)];
                m[p..p + 4].copy_from_slice(&v.to_le_bytes());
            }
            2 => {
                let p = pos(&mut rng, m.len());
                m.truncate(p);
            }
            3 => {
                let p = pos(&mut rng, m.len());
                let junk: Vec<u8> = (0..1 + rng.below(64)).map(|_| rng.next() as u8).collect();
                m.splice(p..p, junk);
            }
            4 => {
                let p = pos(&mut rng, m.len());
                let n = (1 + rng.below(64)).min(m.len() - p);
                m.drain(p..p + n);
            }
            _ => {
                let a = pos(&mut rng, m.len());
                let n = (1 + rng.below(256)).min(m.len() - a);
                let chunk = m[a..a + n].to_vec();
                let b = pos(&mut rng, m.len());
                m.splice(b..b, chunk);
            }
        }
        kinds.push(kind);
        files.push(f.file(&format!("mutant-{i:02}.dcm"), &s.with_dataset(&m)));
    }
    let run = f.send(&files);
    let defined = [
        SUCCESS,
        WARNING,
        OUT_OF_RESOURCES,
        DOES_NOT_MATCH,
        CANNOT_UNDERSTAND,
        SOP_CLASS_NOT_SUPPORTED,
    ];
    for (r, kind) in run.results.iter().zip(&kinds) {
        assert!(
            r.status.is_some_and(|st| defined.contains(&st)),
            "mutation kind {kind} of {}: status {:?} ({:?}) is not a defined C-STORE status",
            r.file,
            r.status,
            r.comment
        );
    }
    let tally: Vec<String> = run
        .results
        .iter()
        .map(|r| format!("{:04X}", r.status.unwrap()))
        .collect();
    println!("mutation statuses: {}", tally.join(" "));
    assert!(
        tally.iter().any(|t| t != "0000"),
        "no mutation was refused: the mutations are too weak"
    );
    f.assert_serves();
    assert_eq!(f.archive.staging_files(), 0, "staging area not empty");
    let check = f.archive.pacs(&["check"]);
    assert!(
        check.status.success(),
        "pacs check after the mutations:\n{}",
        String::from_utf8_lossy(&check.stdout)
    );
    // What was acknowledged is what is archived.
    let stats = f.archive.stats();
    let accepted = run
        .results
        .iter()
        .filter(|r| matches!(r.status, Some(SUCCESS)))
        .count() as i64;
    let warned = run
        .results
        .iter()
        .filter(|r| matches!(r.status, Some(WARNING)))
        .count() as i64;
    // One SOP Instance UID: the first accepted mutant is the instance, later different ones
    // are conflicts (0xB000); refused ones left nothing.
    assert_eq!(
        stats["instances"].as_i64().unwrap(),
        accepted.min(1),
        "{stats}"
    );
    assert_eq!(stats["conflicts"].as_i64().unwrap(), warned, "{stats}");
    assert_eq!(
        stored_object_keys(&f.archive).len() as i64,
        accepted.min(1) + warned
    );
}
