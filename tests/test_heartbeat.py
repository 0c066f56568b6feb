"""The worker's keep-alive heartbeats (activities/core/heartbeat.py): they hold an activity stuck in one long call past
its heartbeat timeout, and keep the details the activity sent, for its next attempt."""

from __future__ import annotations

import concurrent.futures
import time
import uuid
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.worker import Worker

from activities.core.heartbeat import KeepAlive

_ended: list[int] = []  # attempts that ran to their end


@activity.defn(name="test.one_long_call")
def one_long_call(seconds: float) -> dict[str, Any]:
    info = activity.info()
    if info.attempt == 1:
        activity.heartbeat({"servers_done": 3})
        time.sleep(seconds)  # one blocking call, longer than the heartbeat timeout: only the keep-alive beats
        _ended.append(1)
        raise RuntimeError("failed after the call")  # retried: the next attempt reads the progress
    return {"details": list(info.heartbeat_details), "first_ran_to_its_end": 1 in _ended}


@workflow.defn(name="KeepAliveTest", sandboxed=False)
class KeepAliveTest:
    @workflow.run
    async def run(self, seconds: float) -> dict[str, Any]:
        return await workflow.execute_activity(  # type: ignore[no-any-return]
            "test.one_long_call", seconds, start_to_close_timeout=timedelta(seconds=30),
            heartbeat_timeout=timedelta(seconds=2), summary="one long call",
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=100), maximum_attempts=2))


async def test_keep_alive_holds_a_long_call_and_keeps_the_activitys_details(temporal_env):
    queue = f"keep-alive-{uuid.uuid4().hex[:6]}"
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as executor:
        async with Worker(temporal_env.client, task_queue=queue, workflows=[KeepAliveTest],
                          activities=[one_long_call], activity_executor=executor, interceptors=[KeepAlive()]):
            result = await temporal_env.client.execute_workflow(
                KeepAliveTest.run, 5.0, id=f"keep-alive-{uuid.uuid4().hex[:6]}", task_queue=queue,
                result_type=dict)
    # Without the keep-alive the first attempt times out after 2 s and the second starts while it still sleeps;
    # with a bare keep-alive (no details) the progress would be gone.
    assert result == {"details": [{"servers_done": 3}], "first_ran_to_its_end": True}
