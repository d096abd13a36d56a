#!/usr/bin/env python3
"""Fills a pacs SQLite index with synthetic studies for QIDO timing (no objects: index rows
only, as issue 4's benchmark allows). The index must exist (run any `pacs` command with
PACS_DATA_DIR first) and have a clinic with id 1 (`pacs clinic add`).

    fill_index.py INDEX_DB [STUDIES] [--queries-out FILE]
        (default 100000 studies; 2 series × 5 instances each)

Names are synthetic Chinese pinyin/hanzi pairs (`Wang^Weiming=王^伟明`); nothing is real
patient data. With --queries-out, FILE gets bench/dicomweb's PatientName queries over
this index (common, rare and Chinese prefix, exact) with the number of studies each
matches under pacs's rules (the whole name or any group, case-insensitively).
"""
import argparse
import fnmatch
import json
import random
import sqlite3
import time

ap = argparse.ArgumentParser(description="Fills a pacs SQLite index with synthetic studies.")
ap.add_argument("db")
ap.add_argument("studies", nargs="?", type=int, default=100_000)
ap.add_argument("--queries-out")
args = ap.parse_args()
db = args.db
N = args.studies
random.seed(7)
c = sqlite3.connect(db)
c.execute("PRAGMA journal_mode=WAL")
c.execute("PRAGMA synchronous=OFF")
fam = ["Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou",
       "Xu", "Sun", "Ma", "Zhu", "Hu", "Guo", "He", "Lin", "Luo", "Gao"]
famz = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高")
giv = ["Wei", "Fang", "Min", "Jing", "Li", "Qiang", "Lei", "Jun", "Yang", "Yong",
       "Yan", "Jie", "Tao", "Ming", "Chao", "Xiu", "Hua", "Ping", "Gang", "Hong"]
givz = list("伟芳敏静丽强磊军洋勇艳杰涛明超秀华平刚红")
now = int(time.time() * 1e6)
base = c.execute("SELECT COALESCE(MAX(id), 0) FROM studies").fetchone()[0]
t = time.time()
pats, studies, series, inst = [], [], [], []
seid = c.execute("SELECT COALESCE(MAX(id), 0) FROM series").fetchone()[0]
iid = c.execute("SELECT COALESCE(MAX(id), 0) FROM instances").fetchone()[0]
pbase = c.execute("SELECT COALESCE(MAX(id), 0) FROM patients").fetchone()[0]
for i in range(N):
    f, g, g2 = random.randrange(20), random.randrange(20), random.randrange(20)
    alpha = f"{fam[f]}^{giv[g]}{giv[g2].lower()}"
    ideo = f"{famz[f]}^{givz[g]}{givz[g2]}"
    pid = pbase + i + 1
    pats.append((pid, "BENCH", f"P{pid:07d}", None, f"{alpha}={ideo}", alpha, ideo, None,
                 f"19{random.randrange(40, 99)}0101", random.choice("MF"), now, now))
    sid = base + i + 1
    m = random.choice(["CT", "MR", "CR", "DX", "US", "MG"])
    d = f"20{random.randrange(18, 26):02d}{random.randrange(1, 13):02d}{random.randrange(1, 29):02d}"
    studies.append((sid, f"1.2.826.0.1.3680043.99.{sid}", pid, 1, "BENCH_AE", d, "101500",
                    f"ACC{sid:08d}", str(sid), "Bench study", None, None, None, m, "", 2, 10, 0,
                    now, now, "ready"))
    for s in range(2):
        seid += 1
        series.append((seid, f"1.2.826.0.1.3680043.99.{sid}.{s}", sid, m, s + 1,
                       "Bench series", None, None, None, None, 5, 0, now))
        for k in range(5):
            iid += 1
            inst.append((iid, f"1.2.826.0.1.3680043.99.{sid}.{s}.{k}", seid, sid,
                         "1.2.840.10008.5.1.4.1.1.2", k + 1, "1.2.840.10008.1.2.1",
                         f"objects/00/{iid:032x}.dcm", 1000, 300, "0" * 64, 512, 512, 1,
                         "ISO_IR 192", 1, "BENCH_AE", now))
c.executemany("INSERT INTO patients (id, issuer, patient_id, issuer_of_patient_id, patient_name, "
              "name_alphabetic, name_ideographic, name_phonetic, birth_date, sex, created_at, "
              "updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", pats)
c.executemany("INSERT INTO studies (id, study_instance_uid, patient_ref, clinic_id, source_ae, "
              "study_date, study_time, accession_number, study_id, study_description, "
              "referring_physician_name, institution_name, requested_priority, "
              "modalities_in_study, body_parts, number_of_series, number_of_instances, "
              "size_bytes, first_received_at, last_received_at, state) "
              "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", studies)
c.executemany("INSERT INTO series (id, series_instance_uid, study_ref, modality, series_number, "
              "series_description, body_part_examined, series_date, series_time, station_name, "
              "number_of_instances, size_bytes, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
              series)
c.executemany("INSERT INTO instances (id, sop_instance_uid, series_ref, study_ref, sop_class_uid, "
              "instance_number, transfer_syntax_uid, object_key, size_bytes, dataset_offset, "
              "content_hash, rows, columns, number_of_frames, specific_character_set, clinic_id, "
              "source_ae, received_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", inst)
c.commit()
c.execute("ANALYZE")
c.commit()
if args.queries_out:
    def matches(name, pattern):
        p = pattern.lower()
        return any(fnmatch.fnmatchcase(v.lower(), p) for v in [name, *name.split("=")])
    queries = [("common prefix", "Wang*"), ("rare prefix", "wang^wei*"),
               ("Chinese prefix", "王*"), ("exact", "Wang^Weiming")]
    names = [p[4] for p in pats]
    out = [{"label": label, "value": q, "pacs": sum(1 for n in names if matches(n, q)),
            "orthanc": None} for label, q in queries]
    with open(args.queries_out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
print(f"inserted {len(pats)} patients, {len(studies)} studies, {len(series)} series, "
      f"{len(inst)} instances in {time.time() - t:.1f} s")
