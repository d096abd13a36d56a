#!/usr/bin/env python3
"""WADO-RS retrieve with dicomweb-client, or the same summary of local files.

    wado.py retrieve BASE_URL STUDY_UID     (bearer token in PACS_TOKEN)
    wado.py local FILE...

Prints one JSON line per instance: SOP Instance UID, transfer syntax, and the SHA-256 of
the Pixel Data element's bytes as pydicom reads them (native or encapsulated), so that a
retrieved instance can be compared with the file that was stored.
"""
import hashlib
import json
import os
import sys

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient


def summary(ds):
    pixels = ds.get((0x7FE0, 0x0010))
    return {
        "sop": str(ds.SOPInstanceUID),
        "ts": str(ds.file_meta.TransferSyntaxUID),
        "pixels": hashlib.sha256(pixels.value).hexdigest() if pixels is not None else None,
    }


def main():
    if sys.argv[1] == "local":
        for path in sys.argv[2:]:
            print(json.dumps(summary(pydicom.dcmread(path))), flush=True)
        return
    base, study = sys.argv[2], sys.argv[3]
    session = requests.Session()
    session.headers["Authorization"] = "Bearer " + os.environ["PACS_TOKEN"]
    client = DICOMwebClient(url=base, session=session)
    for ds in client.retrieve_study(study, media_types=(("application/dicom", "*"),)):
        print(json.dumps(summary(ds)), flush=True)


if __name__ == "__main__":
    main()
