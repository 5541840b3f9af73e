"""Session-wide settings for the suite."""

import os

# stages that the tests run through `dvc repro` (each tiny project its own warm process
# server, faceid.forkserver) leave their servers idle for 30 s, not the default 120 s
os.environ.setdefault("FACEID_FORKSERVER_IDLE_S", "30")
