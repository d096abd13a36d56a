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
from pynetdicom import AE, _config, build_context, evt
from pynetdicom.pdu import A_ASSOCIATE_RJ
from pynetdicom.sop_class import Verification

_config.STORE_SEND_CHUNKED_DATASET = True


class SetupLog(logging.Handler):
    """Keeps pynetdicom's log records of the association set-up, to print if it fails."""

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter("%(relativeCreated)8.1f ms %(threadName)s %(levelname)s %(message)s"))
        self.lines = []

    def emit(self, record):
        self.lines.append(self.format(record))

    def dump(self):
        print("pynetdicom's log of the association set-up:", file=sys.stderr)
        for line in self.lines:
            print("  " + line, file=sys.stderr)


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

    # pynetdicom's own warnings and errors on stderr, which the tests print when an
    # association ends otherwise than they expect; its whole debug log of the association
    # set-up as well when the association is not established (why it failed).
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    for h in logging.getLogger().handlers:
        h.setLevel(logging.WARNING)
    setup_log = SetupLog()
    logging.getLogger("pynetdicom").addHandler(setup_log)
    logging.getLogger("pynetdicom").setLevel(logging.DEBUG)
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
    # The A-ASSOCIATE-RJ as it arrives, not only through assoc.is_rejected: pynetdicom
    # 3.0's associate() checks that the connection is up only after it returned from the
    # connect, and by then, on a loaded machine, its reader thread may already have
    # received the server's rejection and closed the connection. It then reports a failed
    # connection (neither rejected nor established, nothing logged) although the server
    # answered with a rejection, which is what the tests check.
    rejections = []

    def on_pdu(event):
        if isinstance(event.pdu, A_ASSOCIATE_RJ):
            rejections.append(event.pdu)

    kw["evt_handlers"] = [(evt.EVT_PDU_RECV, on_pdu)]
    assoc = ae.associate(a.host, a.port, ae_title=a.aec, **kw)
    if not assoc.is_established:
        if assoc.is_rejected or rejections:
            emit(association="rejected")
        else:
            emit(association="failed", aborted=assoc.is_aborted)
            setup_log.dump()
        return 3
    logging.getLogger("pynetdicom").removeHandler(setup_log)
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
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
