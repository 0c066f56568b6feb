"""Activity options every part of DrsRecoveryWorkflow shares (workflows.drs_waves, drs_jobs, drs_phases)."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

from workflows.timeouts import HEARTBEAT as HEARTBEAT  # one heartbeat timeout for every long activity

# Short timeouts: when a worker dies mid-call, the call is retried on another worker after this long, not later.
SHORT = timedelta(minutes=1)
RESOLVE = timedelta(minutes=15)  # thousands of servers, and a snapshot lookup each for a point in time
RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), backoff_coefficient=2.0,
                    maximum_interval=timedelta(minutes=1), maximum_attempts=10)
WATCH_SECONDS = 15.0
