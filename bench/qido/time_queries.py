#!/usr/bin/env python3
"""Times QIDO-RS searches against a running pacs (p50/p90/max of 30 runs each).

    time_queries.py BASE_URL      (bearer token in PACS_TOKEN)

A smoke measurement for development, not the issue's benchmark (which compares with
Orthanc in the same run: see docs/benchmarks.md).
"""
import os
import statistics
import sys
import time
import urllib.request

base = sys.argv[1].rstrip("/")
token = os.environ["PACS_TOKEN"]
QUERIES = [
    "/studies?PatientName=Wang*",
    "/studies?PatientName=%E7%8E%8B*",
    "/studies?PatientName=wang%5Ewei*",
    "/studies?PatientID=P0012345",
    "/studies?StudyDate=20240101-20240131&limit=100",
    "/studies?ModalitiesInStudy=MR&limit=100",
    "/studies?AccessionNumber=ACC00050000",
]
for path in QUERIES:
    times = []
    for _ in range(30):
        req = urllib.request.Request(base + path, headers={"Authorization": "Bearer " + token})
        t = time.perf_counter()
        body = urllib.request.urlopen(req).read()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    print(f"{path}: p50 {statistics.median(times):.1f} ms, p90 {times[int(len(times) * 0.9)]:.1f} ms, "
          f"max {times[-1]:.1f} ms, {body.count(b'0020000D')} results")
