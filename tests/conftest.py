import os

# The temporary DVC repositories tests create would each start DVC's usage-analytics daemon.
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
