#!/usr/bin/env python3
"""Cancels a C-MOVE or C-GET half-way (pynetdicom), for the end-to-end tests.

    retrieve_cancel.py move --port P --aet AE --aec PACS --study UID --dest-aet WS --dest-port N
    retrieve_cancel.py get  --port P --aet AE --aec PACS --study UID

`move`: runs a storage SCP as the move destination (AE `--dest-aet` on `--dest-port`) that
takes `--delay` seconds to answer each C-STORE, so the move is slow; `get`: the same
delay in the C-STORE handler of the C-GET's own association. After the first pending
response it sends C-CANCEL-RQ for the request, then reads the remaining responses, and
checks that the association still answers a C-ECHO. Prints one JSON object:

  {"statuses": [65280, ..., 65024], "final": {"status": 65024, "completed": 1,
   "failed": 0, "warning": 0, "remaining": 3}, "stored": 1, "echo_after": 0}

Exit codes: 0 done (whatever the statuses), 3 association refused, 2 usage error.
"""
import argparse
import json
import sys
import threading
import time

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, StoragePresentationContexts, build_role, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["move", "get"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--aet", required=True)
    p.add_argument("--aec", required=True)
    p.add_argument("--study", required=True)
    p.add_argument("--dest-aet")
    p.add_argument("--dest-port", type=int)
    p.add_argument("--delay", type=float, default=0.5)
    args = p.parse_args()

    stored = []
    lock = threading.Lock()

    def on_store(event):
        time.sleep(args.delay)
        with lock:
            stored.append(event.request.AffectedSOPInstanceUID)
        return 0x0000

    handlers = [(evt.EVT_C_STORE, on_store)]
    ae = AE(ae_title=args.aet)
    ae.acse_timeout = 30
    ae.dimse_timeout = 60
    ae.network_timeout = 60
    scp = None
    if args.mode == "move":
        if not args.dest_aet or not args.dest_port:
            print("move needs --dest-aet and --dest-port", file=sys.stderr)
            return 2
        dest = AE(ae_title=args.dest_aet)
        dest.supported_contexts = StoragePresentationContexts
        scp = dest.start_server(("127.0.0.1", args.dest_port), block=False, evt_handlers=handlers)
        model = StudyRootQueryRetrieveInformationModelMove
        ae.add_requested_context(model)
        ae.add_requested_context(Verification)
        assoc = ae.associate(args.host, args.port, ae_title=args.aec)
    else:
        model = StudyRootQueryRetrieveInformationModelGet
        ae.add_requested_context(model)
        ae.add_requested_context(Verification)
        # The CT samples are stored in explicit VR little endian, sent as stored.
        ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
        assoc = ae.associate(
            args.host,
            args.port,
            ae_title=args.aec,
            ext_neg=[build_role(CTImageStorage, scp_role=True)],
            evt_handlers=handlers,
        )
    if not assoc.is_established:
        if scp:
            scp.shutdown()
        return 3

    ident = Dataset()
    ident.QueryRetrieveLevel = "STUDY"
    ident.StudyInstanceUID = args.study
    context_id = next(
        cx.context_id for cx in assoc.accepted_contexts if cx.abstract_syntax == model
    )
    if args.mode == "move":
        responses = assoc.send_c_move(ident, args.dest_aet, model, msg_id=7)
    else:
        responses = assoc.send_c_get(ident, model, msg_id=7)

    statuses, final, cancelled = [], None, False
    for status, _identifier in responses:
        if status is None:
            break
        statuses.append(status.Status)
        final = {
            "status": status.Status,
            "completed": status.get("NumberOfCompletedSuboperations"),
            "failed": status.get("NumberOfFailedSuboperations"),
            "warning": status.get("NumberOfWarningSuboperations"),
            "remaining": status.get("NumberOfRemainingSuboperations"),
        }
        if status.Status == 0xFF00 and not cancelled:
            assoc.send_c_cancel(7, context_id)
            cancelled = True
    echo = assoc.send_c_echo()
    echo_after = echo.Status if echo else None
    assoc.release()
    if scp:
        scp.shutdown()
    with lock:
        n = len(stored)
    print(json.dumps({"statuses": statuses, "final": final, "stored": n, "echo_after": echo_after}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
