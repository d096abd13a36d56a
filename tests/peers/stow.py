#!/usr/bin/env python3
"""STOW-RS with dicomweb-client: stores FILES (optionally into STUDY) and prints the
response data set as DICOM JSON, or {"error": ..., "status": N}.

    stow.py BASE_URL [--study UID] FILE...      (bearer token in PACS_TOKEN)
"""
import json
import os
import sys

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient


def main():
    args = sys.argv[1:]
    base = args.pop(0)
    study = None
    if args and args[0] == "--study":
        args.pop(0)
        study = args.pop(0)
    session = requests.Session()
    session.headers["Authorization"] = "Bearer " + os.environ["PACS_TOKEN"]
    client = DICOMwebClient(url=base, session=session)
    datasets = [pydicom.dcmread(p) for p in args]
    try:
        response = client.store_instances(datasets, study_instance_uid=study)
        print(json.dumps(response.to_json_dict()))
    except requests.HTTPError as e:
        print(json.dumps({"error": str(e), "status": e.response.status_code}))


if __name__ == "__main__":
    main()
