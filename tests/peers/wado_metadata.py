#!/usr/bin/env python3
"""WADO-RS metadata and frames with dicomweb-client, checked against pydicom's reading of
the files that were stored.

    wado_metadata.py compare BASE_URL STUDY_UID FILE...   (bearer token in PACS_TOKEN)
    wado_metadata.py series BASE_URL STUDY_UID SERIES_UID
    wado_metadata.py frames FILE                          (pydicom's frames, hex)
    wado_metadata.py dwc_frames BASE_URL STUDY SERIES SOP LIST MEDIA_TYPE TRANSFER_SYNTAX
    wado_metadata.py variants SAMPLE_DIR OUT_DIR

`variants` writes encodings the sample set lacks, as new instances of its studies: the
JPEG cine without a Basic Offset Table (one fragment per frame, then two), and a CT slice
in Deflated Explicit VR Little Endian. One JSON line each: {"file", "study", "series", "sop"}.

`compare` retrieves the study's metadata (retrieve_study_metadata), reads it with pydicom
(Dataset.from_json) and compares every top-level attribute of each stored file with it:
VR, and value (text, numbers within 1e-9, person names group by group, sequences item by
item, small binary values byte for byte). Attributes the server gave as BulkDataURI are
listed instead. One JSON line per instance: {"sop", "checked", "bulk", "mismatches"}.
"""
import json
import os
import re
import sys

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.encaps import generate_frames
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName

# ISO 2022 escape sequences: pydicom keeps them in decoded person names.
ESCAPES = re.compile("\x1b[\x20-\x2f]*[\x30-\x7e]")


def client(base):
    session = requests.Session()
    session.headers["Authorization"] = "Bearer " + os.environ["PACS_TOKEN"]
    return DICOMwebClient(url=base, session=session)


def norm_text(v):
    return ESCAPES.sub("", str(v)).strip(" \x00")


def values(v):
    if isinstance(v, (list, MultiValue)):
        return list(v)
    return [v]


def same_value(vr, a, b):
    """a: from the file, b: from the JSON."""
    if vr == "SQ":
        return None  # compared item by item by the caller
    if vr in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
        return (a or b"") == (b or b"")
    av, bv = values(a), values(b)
    if a in (None, "", b"") and (b in (None, "", b"") or bv == []):
        return True
    if len(av) != len(bv):
        return False
    for x, y in zip(av, bv):
        if vr in ("DS", "IS", "FL", "FD", "US", "SS", "UL", "SL", "SV", "UV"):
            if x in (None, "") and y in (None, ""):
                continue
            try:
                if abs(float(x) - float(y)) > 1e-9 * max(1.0, abs(float(x))):
                    return False
            except (TypeError, ValueError):
                if norm_text(x) != norm_text(y):
                    return False
        elif vr == "PN":
            ga = [norm_text(g) for g in str(PersonName(x) if x is not None else "").split("=")]
            gb = [norm_text(g) for g in str(y if y is not None else "").split("=")]
            while ga and not ga[-1]:
                ga.pop()
            while gb and not gb[-1]:
                gb.pop()
            if ga != gb:
                return False
        elif vr == "AT":
            if int(x) != int(y):
                return False
        else:
            if norm_text(x if x is not None else "") != norm_text(y if y is not None else ""):
                return False
    return True


def compare(local, remote, path, out, bulk):
    checked = 0
    for elem in local:
        tag = elem.tag
        if tag.element == 0 or tag.group == 0x0002 or tag > 0x7FE00010:
            continue
        key = f"{tag:08X}"
        where = f"{path}{key}"
        if key in bulk:
            continue
        if tag not in remote:
            out.append(f"{where} ({elem.keyword}) missing")
            continue
        r = remote[tag]
        checked += 1
        if elem.VR != r.VR and " or " not in elem.VR:
            out.append(f"{where} ({elem.keyword}) VR {elem.VR} != {r.VR}")
            continue
        if elem.VR == "SQ":
            if len(elem.value) != len(r.value or []):
                out.append(f"{where} ({elem.keyword}) {len(elem.value)} items != {len(r.value or [])}")
                continue
            for i, (a, b) in enumerate(zip(elem.value, r.value)):
                checked += compare(a, b, f"{where}[{i}].", out, set())
            continue
        a = elem.value
        if elem.VR in ("OW", "OF", "OD", "OL", "OV") and not local.is_little_endian and a:
            continue  # big endian binary: the JSON has it in little endian
        if not same_value(elem.VR, a, r.value):
            out.append(f"{where} ({elem.keyword}) {repr(a)[:200]} != {repr(r.value)[:200]}")
    return checked


def bulk_keys(obj):
    return {k for k, v in obj.items() if "BulkDataURI" in v}


def cmd_compare(base, study, files):
    by_sop = {}
    for path in files:
        ds = pydicom.dcmread(path)
        by_sop[str(ds.SOPInstanceUID)] = ds
    got = client(base).retrieve_study_metadata(study)
    for obj in got:
        sop = obj["00080018"]["Value"][0]
        local = by_sop.pop(sop, None)
        if local is None:
            print(json.dumps({"sop": sop, "mismatches": ["not a stored instance of the study"]}))
            continue
        bulk = bulk_keys(obj)
        remote = pydicom.Dataset.from_json(obj, bulk_data_uri_handler=lambda *_: b"")
        mismatches = []
        checked = compare(local, remote, "", mismatches, bulk)
        print(json.dumps({"sop": sop, "checked": checked, "bulk": sorted(bulk), "mismatches": mismatches}), flush=True)
    for sop in by_sop:
        print(json.dumps({"sop": sop, "mismatches": ["missing from the metadata"]}))


def cmd_series(base, study, series):
    got = client(base).retrieve_series_metadata(study, series)
    for obj in got:
        ds = pydicom.Dataset.from_json(obj, bulk_data_uri_handler=lambda *_: b"")
        print(json.dumps({"sop": str(ds.SOPInstanceUID), "series": str(ds.SeriesInstanceUID)}))


def frames_of(path):
    ds = pydicom.dcmread(path)
    n = int(ds.get("NumberOfFrames", 1) or 1)
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        return list(generate_frames(ds.PixelData, number_of_frames=n))
    data = ds.PixelData
    size = len(data) // n
    out = []
    for i in range(n):
        f = bytearray(data[i * size:(i + 1) * size])
        if not ds.is_little_endian and ds.BitsAllocated > 8:
            unit = ds.BitsAllocated // 8
            for j in range(0, len(f) - len(f) % unit, unit):
                f[j:j + unit] = f[j:j + unit][::-1]
        out.append(bytes(f))
    return out


def cmd_frames(path):
    for i, f in enumerate(frames_of(path), 1):
        print(json.dumps({"frame": i, "hex": f.hex()}))


def cmd_dwc_frames(base, study, series, sop, frame_list, media, ts):
    numbers = [int(x) for x in frame_list.split(",")]
    got = client(base).retrieve_instance_frames(
        study, series, sop, frame_numbers=numbers, media_types=((media, ts),)
    )
    for n, f in zip(numbers, got):
        print(json.dumps({"frame": n, "hex": f.hex()}))


def cmd_variants(sample_dir, out_dir):
    from pydicom.encaps import encapsulate
    from pydicom.uid import DeflatedExplicitVRLittleEndian, generate_uid

    def renew(ds, series=False):
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        if series:
            ds.SeriesInstanceUID = generate_uid()

    def done(ds, name):
        path = os.path.join(out_dir, name)
        ds.save_as(path, enforce_file_format=True)
        print(json.dumps({"file": path, "study": str(ds.StudyInstanceUID),
                          "series": str(ds.SeriesInstanceUID), "sop": str(ds.SOPInstanceUID)}))

    cine = os.path.join(sample_dir, "us_cine_jpeg.dcm")
    frames = frames_of(cine)
    for name, per_frame in [("cine_no_bot.dcm", 1), ("cine_split.dcm", 2)]:
        ds = pydicom.dcmread(cine)
        renew(ds)
        ds.PixelData = encapsulate(frames, fragments_per_frame=per_frame, has_bot=False)
        done(ds, name)
    ds = pydicom.dcmread(os.path.join(sample_dir, "ct_03.dcm"))
    renew(ds, series=True)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    done(ds, "ct_deflated.dcm")


def main():
    cmd = sys.argv[1]
    if cmd == "compare":
        cmd_compare(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif cmd == "series":
        cmd_series(*sys.argv[2:5])
    elif cmd == "frames":
        cmd_frames(sys.argv[2])
    elif cmd == "dwc_frames":
        cmd_dwc_frames(*sys.argv[2:9])
    elif cmd == "variants":
        cmd_variants(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
