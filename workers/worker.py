"""The Tidings worker: runs NotificationWorkflow, DigestWorkflow and the provider activities.

`build_worker` wires dependencies (store, providers, renderer) into the activity classes, so
tests construct a worker with their own store and local provider servers. `run_worker` is the
process entry point behind `tidings worker`: it stops polling on SIGTERM/SIGINT and lets
running activities finish within the graceful-shutdown timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator

import phonenumbers
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from tidings.activities.broadcast import BroadcastActivities
from tidings.activities.delivery import DeliveryActivities, LinkTracking, Renderer
from tidings.activities.failover.chains import ProviderChains
from tidings.activities.providers.base import Provider
from tidings.activities.providers.registry import build_providers
from tidings.activities.store.base import SubscriberStore
from tidings.activities.store.factory import open_store
from tidings.activities.subscribers import SubscriberActivities
from tidings.activities.templates import TemplateRenderer
from tidings.codec import data_converter_for
from tidings.settings import Settings
from tidings.telemetry.logs import configure_logging
from tidings.telemetry.metrics import install_worker_runtime
from tidings.telemetry.tracing import client_interceptors, shutdown_tracing
from tidings.workflows import worker_policy
from tidings.workflows.broadcast import BroadcastWorkflow
from tidings.workflows.digest import DigestWorkflow
from tidings.workflows.notification import NotificationWorkflow

log = logging.getLogger(__name__)

# Modules shared with the sandbox instead of re-imported for every workflow run. Re-executing
# workflows/notification.py per run cost more CPU than anything else in a notification (see
# bench/notifications.py). It is safe to share: it holds no mutable module state, only constants,
# pure functions and the workflow class, and the sandbox's runtime restrictions still apply.
# phonenumbers validates recipients' numbers while a workflow's input is decoded, inside the
# sandbox: it is shared too, and its metadata is loaded up front (`load_all`), because loading it
# lazily in there imports modules under the sandbox and can leave phonenumbers' lock held forever.
PASSTHROUGH_MODULES = ("tidings", "pydantic", "pydantic_core", "annotated_types", "phonenumbers")


def workflow_runner() -> SandboxedWorkflowRunner:
    """The sandbox the test suite's replayers run the workflows in (see `worker_runner`)."""
    phonenumbers.PhoneMetadata.load_all()
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES)
    )


def worker_runner() -> UnsandboxedWorkflowRunner:
    """What workers run the workflows (notification, digest, broadcast) in: no sandbox.

    The sandbox cost about a third of the worker's CPU per notification (its own setup per run and
    re-entering it for every payload conversion; see bench/notifications.py and the README's
    Benchmarks), and it caused the phonenumbers lock deadlock. Determinism is kept by other means
    instead: tests/test_workflow_determinism.py checks that the workflows' modules call nothing
    nondeterministic, and every workflow the test suite runs is replayed inside this sandbox
    (`workflow_runner`), which refuses such calls at run time.
    """
    return UnsandboxedWorkflowRunner()


async def connect(settings: Settings) -> Client:
    """Connect to Temporal with the data converter every Tidings process uses (pydantic, and the
    payload codec when `codec.enabled`: see tidings/codec.py), and the tracing interceptor when
    `OTEL_*` variables configure tracing (see tidings.telemetry)."""
    t = settings.temporal
    try:
        return await Client.connect(
            t.address,
            namespace=t.namespace,
            tls=t.tls,
            api_key=t.api_key.get_secret_value() if t.api_key else None,
            data_converter=data_converter_for(settings),
            interceptors=client_interceptors(),
        )
    except RuntimeError as exc:  # the SDK reports connection failures as RuntimeError
        raise ConnectionError(
            f"cannot reach Temporal at {t.address} (namespace {t.namespace!r}); "
            "start it with `tidings dev` or set temporal.address"
        ) from exc


def default_renderer(settings: Settings) -> Renderer:
    return TemplateRenderer(settings.templates.directory, settings.templates.default_locale)


def build_worker(
    client: Client,
    settings: Settings,
    store: SubscriberStore,
    *,
    providers: dict[str, Provider] | None = None,
    renderer: Renderer | None = None,
    task_queue: str | None = None,
) -> Worker:
    providers = providers if providers is not None else build_providers(settings, store)
    key = settings.receiver.link_signing_key
    preferences = (settings.api.public_url, settings.api.preference_link_ttl)
    links = (
        LinkTracking(settings.receiver.public_url, key.get_secret_value().encode(), preferences)
        if key
        else None
    )
    delivery = DeliveryActivities(
        providers,
        renderer or default_renderer(settings),
        links,
        store,
        ProviderChains.from_settings(settings),
    )
    subscribers = SubscriberActivities(store, settings)
    broadcasts = BroadcastActivities(store, settings, delivery)
    w = settings.worker
    queue = task_queue or settings.temporal.task_queue
    worker_policy.register(queue, worker_policy.WorkerPolicy.from_settings(settings))
    return Worker(
        client,
        task_queue=queue,
        workflows=[NotificationWorkflow, DigestWorkflow, BroadcastWorkflow],
        activities=[
            delivery.deliver,
            subscribers.prepare_notification,
            subscribers.next_local_time,
            subscribers.deactivate_device,
            subscribers.disable_webhook,
            broadcasts.audience_size,
            broadcasts.plan_pages,
            broadcasts.run_batch,
            broadcasts.outcome_counts,
            broadcasts.cancel_deferred,
        ],
        workflow_runner=worker_runner(),
        max_concurrent_activities=w.max_concurrent_activities,
        max_concurrent_local_activities=w.max_concurrent_local_activities,
        max_concurrent_workflow_tasks=w.max_concurrent_workflow_tasks,
        graceful_shutdown_timeout=w.graceful_shutdown_timeout,
    )


@contextlib.asynccontextmanager
async def running_worker(
    client: Client,
    settings: Settings,
    store: SubscriberStore,
    *,
    providers: dict[str, Provider] | None = None,
    renderer: Renderer | None = None,
    task_queue: str | None = None,
) -> AsyncIterator[Worker]:
    """Run a worker for the duration of a `with` block, closing providers afterwards."""
    providers = providers if providers is not None else build_providers(settings, store)
    worker = build_worker(
        client, settings, store, providers=providers, renderer=renderer, task_queue=task_queue
    )
    try:
        async with worker:
            yield worker
    finally:
        for provider in providers.values():
            await provider.aclose()


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT (or `stop` is set), then shut down gracefully."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    configure_logging(settings.logging.format)
    install_worker_runtime(settings.metrics.prometheus_address)  # before the client connects
    client = await connect(settings)
    store = await open_store(settings.store)  # migrates first unless store.migrate_on_start is off
    try:
        async with running_worker(client, settings, store):
            log.info(
                "worker polling task queue %r on %s", settings.temporal.task_queue, settings.temporal.address
            )
            await stop.wait()
            log.info("shutting down: finishing running activities")
    finally:
        await store.aclose()
        shutdown_tracing()
