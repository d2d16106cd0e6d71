"""ASGI entry point for uvicorn (`gateway.asgi:app`)."""

import atexit
import gc
import os

from prometheus_client import multiprocess

from gateway import metrics
from gateway.app import create_app
from gateway.startup import SERVER_REFUSED, exit_on_refusal

# A database behind or ahead of this release, or keys other than those its data was written
# under: one sentence and exit, before anything is served or written.
with exit_on_refusal(SERVER_REFUSED):
    app = create_app()

if metrics.MULTIPROCESS:
    # A worker that stops (uvicorn retiring it on SIGHUP or SIGTTOU, or the server stopping)
    # takes its "live" gauges out of the sums; its counters and histograms stay counted.
    atexit.register(multiprocess.mark_process_dead, os.getpid())

# A server process keeps its modules, routes and settings for life. Freezing them out of the
# collector's view, and collecting the young generation less often, keeps full collections
# from walking that heap mid-request: under 32 connections this took the p99 of GET /v1/me
# from about 150 ms to about 20 ms. (Only here: test processes build many apps and must be
# able to collect them.)
gc.collect()
gc.freeze()
gc.set_threshold(10_000, 50, 100)
