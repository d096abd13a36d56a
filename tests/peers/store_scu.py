#!/usr/bin/env python3
"""A scripted C-STORE SCU (pynetdicom) for the end-to-end tests.

Sends each file's data set bytes exactly as they are in the file (pynetdicom's chunked
mode, STORE_SEND_CHUNKED_DATASET: without it pynetdicom decodes the file with pydicom and
encodes it again, which changes bytes and repairs or rejects malformed data sets before
they reach the server), proposing exactly the file's own SOP class and transfer syntax. Prints one
JSON line per file, flushed at once, so a test can tell which stores were acknowledged
even if the server dies mid-run:

  {"file": "...", "sop_instance_uid": "...", "status": 0, "comment": null}

Exit codes: 0 association done (whatever the statuses), 3 association rejected or
aborted at set-up, 2 usage error.
"""
import argparse
import json
import logging
import sys

from pydicom.filereader import read_file_meta_info
from pynetdicom import AE, _config, build_context
from pynetdicom.sop_class import Verification

_config.STORE_SEND_CHUNKED_DATASET = True


def emit(**kw):
    print(json.dumps(kw), flush=True)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--aet", required=True)
    p.add_argument("--aec", required=True)
    p.add_argument("--bind-address", default=None)
    p.add_argument("--echo", action="store_true", help="C-ECHO only")
    p.add_argument("--timeout", type=float, default=30)
    p.add_argument("files", nargs="*")
    a = p.parse_args()

    # pynetdicom's own warnings and errors (why an association failed) on stderr, which
    # the tests print when an association ends otherwise than they expect.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    ae = AE(ae_title=a.aet)
    ae.acse_timeout = a.timeout
    ae.dimse_timeout = a.timeout
    ae.network_timeout = a.timeout
    metas = []
    contexts = {(Verification, "1.2.840.10008.1.2")}
    for f in a.files:
        try:
            m = read_file_meta_info(f)
            sop_class = str(m.MediaStorageSOPClassUID)
            ts = str(m.TransferSyntaxUID)
            metas.append((f, sop_class, str(m.MediaStorageSOPInstanceUID), ts))
            contexts.add((sop_class, ts))
        except Exception as e:  # a file without a readable meta group
            emit(file=f, sop_instance_uid=None, status=None, comment=f"unreadable meta: {e}")
    if len(contexts) > 128:
        emit(association="too-many-contexts")
        return 2
    ae.requested_contexts = [build_context(c, [t]) for c, t in sorted(contexts)]
    kw = {}
    if a.bind_address:
        kw["bind_address"] = (a.bind_address, 0)
    assoc = ae.associate(a.host, a.port, ae_title=a.aec, **kw)
    if not assoc.is_established:
        if assoc.is_rejected:
            emit(association="rejected")
        else:
            emit(association="failed", aborted=assoc.is_aborted)
        return 3
    emit(association="established")
    if a.echo:
        st = assoc.send_c_echo()
        emit(echo=st.Status if st and "Status" in st else None)
    for f, sop_class, sop_instance, ts in metas:
        try:
            st = assoc.send_c_store(f)
        except Exception as e:
            emit(file=f, sop_instance_uid=sop_instance, status=None, comment=f"send failed: {e}")
            if not assoc.is_established:
                break
            continue
        if st and "Status" in st:
            comment = str(st.ErrorComment) if "ErrorComment" in st else None
            emit(file=f, sop_instance_uid=sop_instance, status=int(st.Status), comment=comment)
        else:
            emit(file=f, sop_instance_uid=sop_instance, status=None, comment="no response")
            if not assoc.is_established:
                break
    if assoc.is_established:
        assoc.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
