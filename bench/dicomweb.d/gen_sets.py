#!/usr/bin/env python3
"""Synthetic, PHI-free DICOM sets for bench/dicomweb (standard library only).

    gen_sets.py study OUT_DIR [--instances 1000] [--series 10] [--size 64]
        one CT study of INSTANCES small slices in SERIES series (metadata benchmark)
    gen_sets.py qido OUT_DIR [--studies 5000]
        STUDIES single-instance studies with varied synthetic patient names (QIDO
        benchmark), and OUT_DIR/queries.json: the benchmark's PatientName queries with
        the number of studies each must match on pacs ("pacs": the whole value or any
        group) and on Orthanc ("orthanc": the whole value; null when Orthanc cannot be
        asked: a non-ASCII value)

Files are Part 10, explicit VR little endian, Specific Character Set ISO_IR 192 (UTF-8).
Names are synthetic pinyin/hanzi pairs: 20 family × 20 × 20 given-name syllables. A name
is alphabetic only, alphabetic=ideographic, or alphabetic=ideographic=phonetic (tone-marked
pinyin), fixed per name (so an exact query matches the same studies whether a server
compares the whole value or group by group). UIDs are 2.25 UUID-derived from a label.
"""
import argparse
import fnmatch
import hashlib
import json
import os
import random
import struct
import sys

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPL_CLASS = "2.25.119282939447360542006364318452190187187"
SOP = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "CR": "1.2.840.10008.5.1.4.1.1.1",
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",
}
LONG_VRS = {"OB", "OW", "OF", "OD", "OL", "OV", "SQ", "UC", "UR", "UT", "UN"}

FAM = ["Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou",
       "Xu", "Sun", "Ma", "Zhu", "Hu", "Guo", "He", "Lin", "Luo", "Gao"]
FAMZ = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高")
FAMP = ["wáng", "lǐ", "zhāng", "liú", "chén", "yáng", "huáng", "zhào", "wú", "zhōu",
        "xú", "sūn", "mǎ", "zhū", "hú", "guō", "hé", "lín", "luó", "gāo"]
GIV = ["Wei", "Fang", "Min", "Jing", "Li", "Qiang", "Lei", "Jun", "Yang", "Yong",
       "Yan", "Jie", "Tao", "Ming", "Chao", "Xiu", "Hua", "Ping", "Gang", "Hong"]
GIVZ = list("伟芳敏静丽强磊军洋勇艳杰涛明超秀华平刚红")
GIVP = ["wěi", "fāng", "mǐn", "jìng", "lì", "qiáng", "lěi", "jūn", "yáng", "yǒng",
        "yàn", "jié", "tāo", "míng", "chāo", "xiù", "huá", "píng", "gāng", "hóng"]


def uid(label):
    d = bytearray(hashlib.sha256(b"pacs bench dicomweb v1\0" + label.encode()).digest()[:16])
    d[6] = (d[6] & 0x0F) | 0x80
    d[8] = (d[8] & 0x3F) | 0x80
    return "2.25." + str(int.from_bytes(d, "big"))


def element(group, elem, vr, value):
    if isinstance(value, str):
        raw = value.encode("utf-8")
        pad = b"\0" if vr == "UI" else b" "
    elif isinstance(value, int) and vr == "US":
        raw, pad = struct.pack("<H", value), b"\0"
    elif isinstance(value, int) and vr == "UL":
        raw, pad = struct.pack("<I", value), b"\0"
    else:
        raw, pad = bytes(value), b"\0"
    if len(raw) % 2:
        raw += pad
    head = struct.pack("<HH", group, elem) + vr.encode()
    if vr in LONG_VRS:
        head += b"\0\0" + struct.pack("<I", len(raw))
    else:
        head += struct.pack("<H", len(raw))
    return head + raw


def part10(sop_class, sop_uid, elements):
    """A Part 10 file: preamble, meta group, then ELEMENTS ((g, e, vr, value), any order)."""
    meta = b"".join([
        element(0x0002, 0x0001, "OB", b"\0\1"),
        element(0x0002, 0x0002, "UI", sop_class),
        element(0x0002, 0x0003, "UI", sop_uid),
        element(0x0002, 0x0010, "UI", EXPLICIT_LE),
        element(0x0002, 0x0012, "UI", IMPL_CLASS),
        element(0x0002, 0x0013, "SH", "PACS_BENCH_1"),
    ])
    body = b"".join(element(*e) for e in sorted(elements, key=lambda e: (e[0], e[1])))
    return b"\0" * 128 + b"DICM" + element(0x0002, 0x0000, "UL", len(meta)) + meta + body


def pixels(size, seed):
    """SIZE×SIZE unsigned 16-bit: a disc phantom in CT numbers + 1024, varying with SEED."""
    r = size * 0.4 + (seed % 7)
    c = size / 2
    out = bytearray()
    for y in range(size):
        row = [(1024 + 40 + ((x * 3 + y + seed) % 50)) if (x - c) ** 2 + (y - c) ** 2 < r * r else 24
               for x in range(size)]
        out += struct.pack(f"<{size}H", *row)
    return bytes(out)


def image(modality, study, series, inst, patient, size, px, extra=()):
    """The elements of a small CT/MR/CR/DX image (patient: dict name, id, birth, sex)."""
    sop_class = SOP[modality]
    e = [
        (0x0008, 0x0005, "CS", "ISO_IR 192"),
        (0x0008, 0x0008, "CS", "ORIGINAL\\PRIMARY\\AXIAL"),
        (0x0008, 0x0016, "UI", sop_class),
        (0x0008, 0x0018, "UI", inst["uid"]),
        (0x0008, 0x0020, "DA", study["date"]),
        (0x0008, 0x0021, "DA", study["date"]),
        (0x0008, 0x0023, "DA", study["date"]),
        (0x0008, 0x0030, "TM", study["time"]),
        (0x0008, 0x0031, "TM", study["time"]),
        (0x0008, 0x0033, "TM", study["time"]),
        (0x0008, 0x0050, "SH", study["accession"]),
        (0x0008, 0x0060, "CS", modality),
        (0x0008, 0x0070, "LO", "pacs bench"),
        (0x0008, 0x0080, "LO", "Synthetic Township Clinic Bench"),
        (0x0008, 0x0090, "PN", "Synthetic^Referrer"),
        (0x0008, 0x1030, "LO", study["description"]),
        (0x0008, 0x103E, "LO", series["description"]),
        (0x0008, 0x1090, "LO", "Synthetic Phantom"),
        (0x0010, 0x0010, "PN", patient["name"]),
        (0x0010, 0x0020, "LO", patient["id"]),
        (0x0010, 0x0021, "LO", "CLINIC-BENCH"),
        (0x0010, 0x0030, "DA", patient["birth"]),
        (0x0010, 0x0040, "CS", patient["sex"]),
        (0x0018, 0x0015, "CS", "CHEST"),
        (0x0018, 0x0050, "DS", "5"),
        (0x0018, 0x0060, "DS", "120"),
        (0x0018, 0x1000, "LO", "SYNTH-0001"),
        (0x0018, 0x1020, "LO", "0.1.0"),
        (0x0018, 0x1150, "IS", "500"),
        (0x0018, 0x1151, "IS", "200"),
        (0x0018, 0x1210, "SH", "STANDARD"),
        (0x0018, 0x5100, "CS", "HFS"),
        (0x0020, 0x000D, "UI", study["uid"]),
        (0x0020, 0x000E, "UI", series["uid"]),
        (0x0020, 0x0010, "SH", study["id"]),
        (0x0020, 0x0011, "IS", str(series["number"])),
        (0x0020, 0x0012, "IS", "1"),
        (0x0020, 0x0013, "IS", str(inst["number"])),
        (0x0020, 0x0032, "DS", f"-160\\-160\\{inst['number'] * 5}"),
        (0x0020, 0x0037, "DS", "1\\0\\0\\0\\1\\0"),
        (0x0020, 0x0052, "UI", series["for"]),
        (0x0020, 0x1041, "DS", str(inst["number"] * 5)),
        (0x0028, 0x0002, "US", 1),
        (0x0028, 0x0004, "CS", "MONOCHROME2"),
        (0x0028, 0x0010, "US", size),
        (0x0028, 0x0011, "US", size),
        (0x0028, 0x0030, "DS", "5\\5"),
        (0x0028, 0x0100, "US", 16),
        (0x0028, 0x0101, "US", 16),
        (0x0028, 0x0102, "US", 15),
        (0x0028, 0x0103, "US", 0),
        (0x0028, 0x1050, "DS", "40"),
        (0x0028, 0x1051, "DS", "400"),
        (0x0028, 0x1052, "DS", "-1024"),
        (0x0028, 0x1053, "DS", "1"),
        (0x7FE0, 0x0010, "OW", px),
    ]
    e.extend(extra)
    return part10(sop_class, inst["uid"], e)


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def gen_study(args):
    os.makedirs(args.out, exist_ok=True)
    per = args.instances // args.series
    extra = args.instances % args.series
    study = {"uid": uid("study1000/study"), "date": "20250314", "time": "101500",
             "accession": "ACCBENCH1000", "description": "Synthetic multi-series study",
             "id": "1000"}
    patient = {"name": "Zhou^Min=周^敏", "id": "BENCH-META-1", "birth": "19600101", "sex": "F"}
    px = [pixels(args.size, s) for s in range(8)]
    n = 0
    for s in range(args.series):
        series = {"uid": uid(f"study1000/series/{s}"), "number": s + 1,
                  "description": f"Synthetic series {s + 1}", "for": uid(f"study1000/for/{s}")}
        for k in range(per + (1 if s < extra else 0)):
            inst = {"uid": uid(f"study1000/instance/{s}/{k}"), "number": k + 1}
            write(os.path.join(args.out, f"meta-{s:02d}-{k:04d}.dcm"),
                  image("CT", study, series, inst, patient, args.size, px[(s + k) % 8]))
            n += 1
    print(json.dumps({"study": study["uid"], "instances": n, "series": args.series}))


def name_of(f, g, g2):
    """The PN value of name (f, g, g2); its shape (groups) is fixed per name."""
    alpha = f"{FAM[f]}^{GIV[g]}{GIV[g2].lower()}"
    ideo = f"{FAMZ[f]}^{GIVZ[g]}{GIVZ[g2]}"
    phon = f"{FAMP[f]}^{GIVP[g]}{GIVP[g2]}"
    shape = (f * 400 + g * 20 + g2) * 2654435761 % 8
    if shape == 0:
        return alpha                       # alphabetic only
    if shape in (1, 2):
        return f"{alpha}={ideo}={phon}"    # with a phonetic group
    return f"{alpha}={ideo}"


def wild(value, pattern):
    """Case-insensitive match of VALUE against PATTERN (`*`, `?` wildcards, else exact)."""
    return fnmatch.fnmatchcase(value.lower(), pattern.lower().replace("[", "[[]"))


def orthanc_matches(value, pattern):
    """Orthanc (CaseSensitivePN false): the whole value, case-insensitively."""
    return wild(value, pattern)


def pacs_matches(value, pattern):
    """pacs (pacs_store::query): the whole value or any of its groups; a pattern with `=`
    group by group (an empty pattern group matches anything)."""
    groups = value.split("=")
    if "=" in pattern:
        return all(p == "" or (i < len(groups) and wild(groups[i], p))
                   for i, p in enumerate(pattern.split("=")))
    return wild(value, pattern) or any(wild(g, pattern) for g in groups)


def gen_qido(args):
    os.makedirs(args.out, exist_ok=True)
    rnd = random.Random(7)
    px = pixels(32, 1)
    names = []
    for i in range(args.studies):
        # Family names skewed like real ones (Wang, Li, Zhang most common).
        f = min(int(rnd.expovariate(1 / 5)), 19)
        g, g2 = rnd.randrange(20), rnd.randrange(20)
        name = name_of(f, g, g2)
        names.append(name)
        m = rnd.choice(["CT", "MR", "CR", "DX"])
        study = {"uid": uid(f"qido/{i}/study"),
                 "date": f"20{rnd.randrange(18, 26):02d}{rnd.randrange(1, 13):02d}{rnd.randrange(1, 29):02d}",
                 "time": f"{rnd.randrange(7, 19):02d}{rnd.randrange(60):02d}00",
                 "accession": f"QACC{i:07d}", "description": f"Synthetic {m} study",
                 "id": str(i + 1)}
        series = {"uid": uid(f"qido/{i}/series"), "number": 1,
                  "description": f"Synthetic {m} series", "for": uid(f"qido/{i}/for")}
        inst = {"uid": uid(f"qido/{i}/instance"), "number": 1}
        patient = {"name": name, "id": f"QP{i:07d}", "birth": f"19{rnd.randrange(30, 99)}0101",
                   "sex": rnd.choice("MF")}
        write(os.path.join(args.out, f"qido-{i:06d}.dcm"),
              image(m, study, series, inst, patient, 32, px))
    # The benchmark's queries. Orthanc 1.10 / DICOMweb 1.7 can only be sent ASCII values
    # (bench/dicomweb explains why), so the Chinese query is put to pacs alone.
    counts = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    exact = max((n for n in counts if "=" not in n), key=lambda n: (counts[n], n))
    queries = [
        ("common prefix", "Wang*", True),
        ("rare prefix", "wang^wei*", True),
        ("exact", exact, True),
        ("Chinese prefix", "王*", False),
    ]
    out = []
    for label, q, both in queries:
        out.append({"label": label, "value": q,
                    "pacs": sum(1 for v in names if pacs_matches(v, q)),
                    "orthanc": sum(1 for v in names if orthanc_matches(v, q)) if both else None})
    with open(os.path.join(args.out, "queries.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
    print(json.dumps({"studies": args.studies, "queries": out}, ensure_ascii=False))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("study")
    s.add_argument("out")
    s.add_argument("--instances", type=int, default=1000)
    s.add_argument("--series", type=int, default=10)
    s.add_argument("--size", type=int, default=64)
    q = sub.add_parser("qido")
    q.add_argument("out")
    q.add_argument("--studies", type=int, default=5000)
    a = p.parse_args()
    if a.cmd == "study":
        gen_study(a)
    else:
        gen_qido(a)


if __name__ == "__main__":
    sys.exit(main())
