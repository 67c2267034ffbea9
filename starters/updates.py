"""The control updates of Tidings' workflows (cancel, reschedule, pause, resume, set_rate), asked
the same way for notifications, digests and broadcasts.

A refused update (its validator said no) is an answer, not an error: it comes back as
`SignalOutcome(accepted=False, reason=…)`. A workflow that is not running is the caller's own
not-found error, since each kind names what may have happened to it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from tidings.models import SignalOutcome


async def ask_update(
    handle: WorkflowHandle[Any, Any], name: str, args: list[Any], not_found: Callable[[], LookupError]
) -> SignalOutcome:
    """Run update `name` and answer whether the workflow accepted it."""
    try:
        outcome: SignalOutcome = await handle.execute_update(name, args=args, result_type=SignalOutcome)
        return outcome
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        reason = cause.message if isinstance(cause, ApplicationError) else str(cause)
        return SignalOutcome(accepted=False, reason=reason)
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            raise not_found() from None
        raise
