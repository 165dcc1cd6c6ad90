#!/usr/bin/env python3
"""Run a command; print its wall time (s) and peak RSS (KiB) of the whole
process tree it waited for, as `wall=S maxrss_kib=K rc=N`. The command's
stdout goes to $MEASURE_OUT (default: discarded), its stderr to $MEASURE_LOG."""
import os, subprocess, sys, time, resource

t0 = time.monotonic()
p = subprocess.Popen(sys.argv[1:], stdout=open(os.environ.get("MEASURE_OUT", "/dev/null"), "ab"), stderr=open(os.environ.get("MEASURE_LOG", "/dev/null"), "ab"))
rc = p.wait()
wall = time.monotonic() - t0
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"wall={wall:.3f} maxrss_kib={rss} rc={rc}")
sys.exit(0)
