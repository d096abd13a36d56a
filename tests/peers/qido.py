#!/usr/bin/env python3
"""QIDO-RS searches with dicomweb-client (the DICOMweb client most Python tools use).

    qido.py BASE_URL < searches.json

The bearer token comes from the environment (PACS_TOKEN), never from the command line.
Standard input: a JSON list of searches, each
    {"level": "studies" | "series" | "instances", "study": UID?, "series": UID?,
     "filters": {keyword: value}, "fuzzy": bool?, "limit": int?, "offset": int?}
Standard output: one JSON line per search: {"results": [...]} with the DICOM JSON
datasets as dicomweb-client returned them, or {"error": "...", "status": N}.
"""
import json
import os
import sys

import requests
from dicomweb_client.api import DICOMwebClient


def main():
    base = sys.argv[1]
    session = requests.Session()
    session.headers["Authorization"] = "Bearer " + os.environ["PACS_TOKEN"]
    client = DICOMwebClient(url=base, session=session)
    for s in json.load(sys.stdin):
        kwargs = {
            "search_filters": s.get("filters") or {},
            "fuzzymatching": s.get("fuzzy"),
            "limit": s.get("limit"),
            "offset": s.get("offset"),
        }
        try:
            level = s["level"]
            if level == "studies":
                out = client.search_for_studies(**kwargs)
            elif level == "series":
                out = client.search_for_series(study_instance_uid=s.get("study"), **kwargs)
            else:
                out = client.search_for_instances(
                    study_instance_uid=s.get("study"),
                    series_instance_uid=s.get("series"),
                    **kwargs,
                )
            print(json.dumps({"results": out}), flush=True)
        except requests.HTTPError as e:
            print(json.dumps({"error": str(e), "status": e.response.status_code}), flush=True)


if __name__ == "__main__":
    main()
