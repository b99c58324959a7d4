#!/usr/bin/env python3
"""A `vw` command line for the PyPI wheel, which ships no vw binary: runs VW's own driver and parser
(pyvw.Workspace with the arguments, the same code path as the vw CLI) on -d and finishes.

  python vw_run.py <vw args...>

Prints 'RESULT {"vw_s": ...}': seconds from Workspace construction to finish() (parse, learn,
save the model / write predictions), i.e. without the Python interpreter start and import.
"""
import json
import sys
import time

t0 = time.perf_counter()
from vowpalwabbit import pyvw  # noqa: E402

t1 = time.perf_counter()
ws = pyvw.Workspace(arg_list=sys.argv[1:], enable_logging=False)
ws.finish()
t2 = time.perf_counter()
print("RESULT " + json.dumps({"vw_s": round(t2 - t1, 3), "import_s": round(t1 - t0, 3)}), flush=True)
